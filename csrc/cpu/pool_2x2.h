// The 2x2 / stride-2 max-pool forward and backward over rows, shared by the pooling kernel
// (pool_isa.cpp) and the fused conv+ReLU+pool block (conv_gemm_isa.cpp, pool_isa.cpp). Included
// only by per-ISA files, so it lives in the ISA's namespace. Same tie/NaN rule as max_window:
// the first maximum, the last NaN.
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <utility>

#include "cpu/simd.h"

#include "fusekit/dtype.h"
#include "fusekit/math/pool.h"

namespace fusekit::cpu::FK_ISA {

template <int W> struct BytesOf;  // W bytes as a vector (GCC drops vector_size on a dependent size)
template <> struct BytesOf<2> { typedef uint8_t type __attribute__((vector_size(2))); };
template <> struct BytesOf<4> { typedef uint8_t type __attribute__((vector_size(4))); };
template <> struct BytesOf<8> { typedef uint8_t type __attribute__((vector_size(8))); };
template <> struct BytesOf<16> { typedef uint8_t type __attribute__((vector_size(16))); };

// Lane masks picking the even / odd lanes of two vectors a, b: a0 a2 .. b0 b2 .. / a1 a3 ..
template <class M, size_t... L> constexpr M deinterleave_mask(bool odd, std::index_sequence<L...>) {
  return M{static_cast<typename std::remove_reference_t<decltype(M{}[0])>>(2 * L + (odd ? 1 : 0))...};
}

// One row of 2x2 maxima with window codes, float or double, n outputs: the two input rows
// split into even and odd columns, a short last vector (pooled rows of 12 are common) with
// masked loads and stores. f maps a vector (relu + bias in the fused block).
template <class A, class Code, class F>
void max2x2_fwd_vec(const A* r0, const A* r1, A* out, uint8_t* codes, int64_t n, F f) {
  using V = Vec<A>;
  constexpr int W = kW<A>;
  typedef Code VC __attribute__((vector_size(kVB)));
  static_assert(sizeof(VC) == sizeof(V));
  constexpr VC even = deinterleave_mask<VC>(false, std::make_index_sequence<W>{});
  constexpr VC odd = deinterleave_mask<VC>(true, std::make_index_sequence<W>{});
  const auto window = [&](V a0, V a1, V b0, V b1, V& best, VC& code) {
    best = f(__builtin_shuffle(a0, a1, even));
    code = VC{};
    const V c[3] = {f(__builtin_shuffle(a0, a1, odd)), f(__builtin_shuffle(b0, b1, even)),
                    f(__builtin_shuffle(b0, b1, odd))};
    for (int k = 0; k < 3; ++k) max_step(c[k], VC{} + (k + 1), best, code);  // lane-wise, as in max_window
  };
  int64_t ox = 0;
  for (; ox + W <= n; ox += W) {
    V best;
    VC code;
    window(loadv(r0 + 2 * ox), loadv(r0 + 2 * ox + W), loadv(r1 + 2 * ox), loadv(r1 + 2 * ox + W), best, code);
    storev(out + ox, best);
    const typename BytesOf<W>::type narrow = __builtin_convertvector(code, typename BytesOf<W>::type);
    std::memcpy(codes + ox, &narrow, W);
  }
  if (ox == n) return;
  const int k = static_cast<int>(n - ox), rest = 2 * k;  // outputs and input columns left
  const Lanes<A> first = make_lanes<A>(0, std::min(rest, W)), second = make_lanes<A>(0, rest - W);
  V best;
  VC code;
  window(load_lanes(r0 + 2 * ox, first), load_lanes(r0 + 2 * ox + W, second), load_lanes(r1 + 2 * ox, first),
         load_lanes(r1 + 2 * ox + W, second), best, code);
  store_lanes(out + ox, best, make_lanes<A>(0, k));
  for (int i = 0; i < k; ++i) codes[ox + i] = static_cast<uint8_t>(code[i]);
}

// out[oy][ox] = max over the window of f(in element), rows of in ld elements apart. idx gets
// the flat index 2*oy*ld + ... (I = int64_t) or the window code dy * 2 + dx (I = uint8_t).
// T is the input's storage type (the tensor's, or the compute type of a scratch buffer); f
// takes scalars and, on the vector path (window codes, float/double), vectors.
template <class T, class S, class I, class F>
void max2x2_rows(const T* __restrict in, int64_t ld, S* __restrict out, I* __restrict idx, int64_t oh, int64_t ow,
                 F f) {
  using A = compute_t<S>;
  // Codes computed in lanes as wide as the values, then narrowed in a loop of their own: one
  // loop with byte stores vectorizes 64 outputs at a time and leaves rows of 16 scalar.
  using Code = std::conditional_t<sizeof(I) == 1, std::conditional_t<sizeof(A) == 8, int64_t, int32_t>, int64_t>;
  if constexpr (sizeof(I) == 1 && std::is_same_v<T, A> && std::is_same_v<S, A> && kVB >= 32) {
    for (int64_t oy = 0; oy < oh; ++oy)
      max2x2_fwd_vec<A, Code>(in + 2 * oy * ld, in + (2 * oy + 1) * ld, out + oy * ow, idx + oy * ow, ow, f);
    return;
  }
  constexpr int64_t kRun = 256;
  Code codes[kRun];
  for (int64_t oy = 0; oy < oh; ++oy)
    for (int64_t x0 = 0; x0 < ow; x0 += kRun) {
      const int64_t x1 = std::min(ow, x0 + kRun), base = 2 * oy * ld;
      const T* r0 = in + base;
      const T* r1 = r0 + ld;
      S* o = out + oy * ow;
      I* ix = idx + oy * ow;
#pragma GCC ivdep
      for (int64_t ox = x0; ox < x1; ++ox) {
        A best = f(load(r0, 2 * ox));
        Code code = 0;
        max_step(f(load(r0, 2 * ox + 1)), Code(1), best, code);
        max_step(f(load(r1, 2 * ox)), Code(2), best, code);
        max_step(f(load(r1, 2 * ox + 1)), Code(3), best, code);
        store(o, ox, best);
        if constexpr (sizeof(I) == 1) codes[ox - x0] = code;
        else ix[ox] = base + 2 * ox + (code >> 1) * ld + (code & 1);
      }
      if constexpr (sizeof(I) == 1)
        for (int64_t ox = x0; ox < x1; ++ox) ix[ox] = static_cast<I>(codes[ox - x0]);
    }
}

// The window code of a recorded value (flat index: relative to the window's first element).
template <class I> inline int64_t window_code(I v, int64_t first, int64_t w) {
  if constexpr (sizeof(I) == 1) {
    (void)first, (void)w;
    return v;
  } else {
    const int64_t off = v - first;
    return off >= w ? 2 + (off - w) : off;
  }
}

// Lane masks interleaving two vectors: lo = a0 b0 a1 b1 .., hi = the same from the upper halves.
template <class M, size_t... L> constexpr M interleave_mask(bool hi, std::index_sequence<L...>) {
  constexpr int64_t W = sizeof...(L);
  return M{static_cast<typename std::remove_reference_t<decltype(M{}[0])>>((L % 2 ? W : 0) + (hi ? W / 2 : 0) + L / 2)...};
}

// Window codes as lanes as wide as the values: straight from the uint8 codes (no round trip
// through memory: a vector load of codes just stored one by one stalls on store forwarding,
// ~10 ns a row), or from a buffer of decoded int64 indices.
template <class A, class Code> struct CodeLanes {
  typedef Code VC __attribute__((vector_size(kVB)));
  static constexpr int W = kW<A>;
  const uint8_t* bytes = nullptr;  // readable up to `readable` bytes
  int64_t readable = 0;
  const Code* decoded = nullptr;   // or readable up to n rounded up to W

  VC at(int64_t ox) const {
    if (decoded) {
      VC c;
      std::memcpy(&c, decoded + ox, sizeof c);
      return c;
    }
    typename BytesOf<W>::type b{};
    if (ox + W <= readable) std::memcpy(&b, bytes + ox, W);
    else for (int64_t i = 0; ox + i < readable && i < W; ++i) b[i] = bytes[ox + i];  // a plane's last row
    return __builtin_convertvector(b, VC);
  }
};

// 2x2 backward of outputs [0, n) of one row, float or double: the four gradient rows' lanes
// selected by code, then interleaved into the two input rows; a short last vector (rows of 12
// are common) with masked loads and stores. GCC's own vectorization of the scalar loop needs
// 32 outputs at a time.
template <class A, class Code>
void max2x2_bwd_vec(const A* g, const CodeLanes<A, Code>& codes, A* r0, A* r1, int64_t n) {
  using V = Vec<A>;
  constexpr int W = kW<A>;
  using VC = typename CodeLanes<A, Code>::VC;
  static_assert(sizeof(VC) == sizeof(V));
  constexpr VC lo = interleave_mask<VC>(false, std::make_index_sequence<W>{});
  constexpr VC hi = interleave_mask<VC>(true, std::make_index_sequence<W>{});
  const V zero = V{};
  const auto split = [&](const V v, int64_t ox, V& a0, V& a1, V& a2, V& a3) {
    const VC c = codes.at(ox);
    a0 = c == 0 ? v : zero, a1 = c == 1 ? v : zero, a2 = c == 2 ? v : zero, a3 = c == 3 ? v : zero;
  };
  int64_t ox = 0;
  for (; ox + W <= n; ox += W) {
    V a0, a1, a2, a3;
    split(loadv(g + ox), ox, a0, a1, a2, a3);
    storev(r0 + 2 * ox, __builtin_shuffle(a0, a1, lo));
    storev(r0 + 2 * ox + W, __builtin_shuffle(a0, a1, hi));
    storev(r1 + 2 * ox, __builtin_shuffle(a2, a3, lo));
    storev(r1 + 2 * ox + W, __builtin_shuffle(a2, a3, hi));
  }
  if (ox == n) return;
  const int rest = static_cast<int>(2 * (n - ox));  // input columns left, < 2W
  const Lanes<A> first = make_lanes<A>(0, std::min(rest, W)), second = make_lanes<A>(0, rest - W);
  V a0, a1, a2, a3;
  split(load_lanes(g + ox, make_lanes<A>(0, static_cast<int>(n - ox))), ox, a0, a1, a2, a3);
  store_lanes(r0 + 2 * ox, __builtin_shuffle(a0, a1, lo), first);
  store_lanes(r0 + 2 * ox + W, __builtin_shuffle(a0, a1, hi), second);
  store_lanes(r1 + 2 * ox, __builtin_shuffle(a2, a3, lo), first);
  store_lanes(r1 + 2 * ox + W, __builtin_shuffle(a2, a3, hi), second);
}

// Backward: every input of a 2x2 tile gets its window's gradient or 0, written in one pass.
// int64 indices are first decoded into window codes.
template <class S, class I>
void max2x2_bwd_plane(const S* __restrict gout, const I* __restrict idx, S* __restrict gin, int64_t h, int64_t w,
                      int64_t oh, int64_t ow) {
  using A = compute_t<S>;
  using Code = std::conditional_t<sizeof(A) == 8, int64_t, int32_t>;
  constexpr int64_t kRun = 256;
  Code codes[kRun];
  for (int64_t oy = 0; oy < oh; ++oy) {
    const int64_t base = 2 * oy * w;
    S* r0 = gin + base;
    S* r1 = r0 + w;
    const S* g = gout + oy * ow;
    const I* ix = idx + oy * ow;
    for (int64_t x0 = 0; x0 < ow; x0 += kRun) {
      const int64_t x1 = std::min(ow, x0 + kRun);
      if constexpr (std::is_same_v<S, A> && kVB >= 32) {
        CodeLanes<A, Code> lanes;
        if constexpr (sizeof(I) == 1) {
          lanes.bytes = ix + x0;
          lanes.readable = (oh - oy) * ow - x0;  // up to the plane's end
        } else {
          for (int64_t ox = x0; ox < x1; ++ox) codes[ox - x0] = static_cast<Code>(window_code<I>(ix[ox], base + 2 * ox, w));
          for (int64_t ox = x1 - x0; ox % kW<A>; ++ox) codes[ox] = 0;  // the last vector's unused lanes
          lanes.decoded = codes;
        }
        max2x2_bwd_vec<A, Code>(g + x0, lanes, r0 + 2 * x0, r1 + 2 * x0, x1 - x0);
        continue;
      }
#pragma GCC ivdep
      for (int64_t ox = x0; ox < x1; ++ox) {
        const A v = load(g, ox);
        const Code code = static_cast<Code>(window_code<I>(ix[ox], base + 2 * ox, w));
        store(r0, 2 * ox, code == 0 ? v : A(0));
        store(r0, 2 * ox + 1, code == 1 ? v : A(0));
        store(r1, 2 * ox, code == 2 ? v : A(0));
        store(r1, 2 * ox + 1, code == 3 ? v : A(0));
      }
    }
    for (int64_t x = 2 * ow; x < w; ++x) {  // odd width: the last column is in no window
      store(r0, x, A(0));
      store(r1, x, A(0));
    }
  }
  for (int64_t e = 2 * oh * w; e < h * w; ++e) store(gin, e, A(0));
}

}  // namespace fusekit::cpu::FK_ISA
