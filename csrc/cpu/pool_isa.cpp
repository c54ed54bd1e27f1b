// The 2x2 / stride-2 max-pool forward (pool_2x2.h) and backward (the common case), compiled once
// per ISA: branch-free row loops, which vectorize (the generic loop in pool_elems.h runs at
// one unpredictable branch per element on random data).
#include <algorithm>
#include <cstring>
#include <type_traits>
#include <utility>

#include "cpu/pool_2x2.h"
#include "cpu/pool_kernels.h"
#include "cpu/simd.h"
#include "cpu/thread_pool.h"
#include "fusekit/math/pool.h"

namespace fusekit::cpu::FK_ISA {
namespace {

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

// 2x2 backward of outputs [0, n) of one row (n a multiple of the vector width), float or double:
// the four gradient rows' lanes selected by code, then interleaved into the two input rows.
// GCC's own vectorization of the scalar loop needs 32 outputs at a time; pooled rows of 16 are common.
template <class A, class Code>
void max2x2_bwd_vec(const A* g, const Code* codes, A* r0, A* r1, int64_t n) {
  using V = Vec<A>;
  constexpr int W = kW<A>;
  typedef Code VC __attribute__((vector_size(kVB)));
  static_assert(sizeof(VC) == sizeof(V));
  constexpr VC lo = interleave_mask<VC>(false, std::make_index_sequence<W>{});
  constexpr VC hi = interleave_mask<VC>(true, std::make_index_sequence<W>{});
  const V zero = V{};
  for (int64_t ox = 0; ox < n; ox += W) {
    const V v = loadv(g + ox);
    VC c;
    std::memcpy(&c, codes + ox, sizeof c);
    const V a0 = c == 0 ? v : zero, a1 = c == 1 ? v : zero, a2 = c == 2 ? v : zero, a3 = c == 3 ? v : zero;
    storev(r0 + 2 * ox, __builtin_shuffle(a0, a1, lo));
    storev(r0 + 2 * ox + W, __builtin_shuffle(a0, a1, hi));
    storev(r1 + 2 * ox, __builtin_shuffle(a2, a3, lo));
    storev(r1 + 2 * ox + W, __builtin_shuffle(a2, a3, hi));
  }
}

// Backward: every input of a 2x2 tile gets its window's gradient or 0, written in one pass.
// The window codes are first decoded into lanes as wide as the values (see the forward).
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
      for (int64_t ox = x0; ox < x1; ++ox) codes[ox - x0] = static_cast<Code>(window_code<I>(ix[ox], base + 2 * ox, w));
      int64_t ox = x0;
      if constexpr (std::is_same_v<S, A> && kVB >= 32) {
        const int64_t n = (x1 - x0) / kW<A> * kW<A>;
        max2x2_bwd_vec<A, Code>(g + x0, codes, r0 + 2 * x0, r1 + 2 * x0, n);
        ox += n;
      }
#pragma GCC ivdep
      for (; ox < x1; ++ox) {
        const A v = load(g, ox);
        const Code code = codes[ox - x0];
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

// Runs plane(S{}, p, in_offset, out_offset) for every (image, channel) plane p.
template <class F> void for_each_plane(const PoolArgs& a, F plane) {
  const Pool2dParams& q = a.q;
  const int64_t in_sz = q.h * q.w, out_sz = q.oh * q.ow;
  dispatch_dtype(a.dtype, [&](auto s) {
    auto task = [&](int64_t p) { plane(s, p * in_sz, p * out_sz); };
    parallel_for(q.n * q.c * (in_sz + out_sz) < 16384 ? 1 : a.num_threads, q.n * q.c, task);
  });
}

}  // namespace

void max_pool_2x2_backward(const PoolArgs& a) {
  const Pool2dParams q = a.q;
  for_each_plane(a, [&](auto s, int64_t i, int64_t o) {
    using S = decltype(s);
    const S* g = reinterpret_cast<const S*>(a.grad_out) + o;
    S* gin = reinterpret_cast<S*>(a.grad_in) + i;
    if (a.window_codes) max2x2_bwd_plane(g, reinterpret_cast<const uint8_t*>(a.window_codes) + o, gin, q.h, q.w, q.oh, q.ow);
    else max2x2_bwd_plane(g, reinterpret_cast<const int64_t*>(a.indices) + o, gin, q.h, q.w, q.oh, q.ow);
  });
}

void max_pool_2x2(const PoolArgs& a) {
  const Pool2dParams q = a.q;
  for_each_plane(a, [&](auto s, int64_t i, int64_t o) {
    using S = decltype(s);
    const S* in = reinterpret_cast<const S*>(a.in) + i;
    S* out = reinterpret_cast<S*>(a.out) + o;
    const auto same = [](auto v) { return v; };
    if (a.window_codes) max2x2_rows(in, q.w, out, reinterpret_cast<uint8_t*>(a.window_codes) + o, q.oh, q.ow, same);
    else max2x2_rows(in, q.w, out, reinterpret_cast<int64_t*>(a.indices) + o, q.oh, q.ow, same);
  });
}

}  // namespace fusekit::cpu::FK_ISA
