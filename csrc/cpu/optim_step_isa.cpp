// The CPU optimizer loop, compiled once per ISA (FK_ISA = scalar | avx2 | avx512) and chosen
// at run time. The loop body is the shared functor (csrc/include/fusekit/math/), which the
// compiler vectorizes; all tensors of a step are one parallel region over byte-sized chunks.
// State slots are stored like the parameters, as bfloat16, or as 8-bit blockwise codes
// (StateFormat); 16-bit parameters may have a float32 master copy. Whatever the storage, the
// element step is the same step_elem() in the compute type, in one pass over memory.
// GCC 12 reports its own intrinsics' _mm512_undefined_* operands (quant8_simd.h) as maybe
// uninitialized once inlined at -O3; the pragma must precede immintrin.h's first inclusion.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>
#include <type_traits>

#include "cpu/optim_job.h"
#include "cpu/quant8_simd.h"
#include "cpu/thread_pool.h"
#include "fusekit/math/quant8.h"
#include "fusekit/optim_step.h"
#include "fusekit/step_elem.h"

namespace fusekit::cpu::FK_ISA {
namespace {

// The parameter slot: read from the master copy where there is one (the parameter is then
// only written, rounded from it), else from the parameter itself.
template <bool kMaster, class S>
inline compute_t<S> load_param(const S* p, const float* master, int64_t i) {
  if constexpr (kMaster) return master[i];
  else return load(p, i);
}

template <bool kMaster, class S>
inline void store_param(S* p, float* master, int64_t i, compute_t<S> v) {
  if constexpr (kMaster) master[i] = v;
  store(p, i, v);
}

// Parameter and gradient stored as S, state slots as Q (S itself, float or BFloat16).
template <class Rule, int V, class S, class Q, bool Unscale, bool kMaster>
void run_chunk(const typename Rule::template Coeffs<compute_t<S>>& c, S* const p0, S* const p1, Q* const* st,
               float* const master, int64_t n, float scale, compute_t<S> clip) {
  using T = compute_t<S>;
  constexpr int K = Rule::slots(V);
  // Separate pointer variables, not an array, and a local copy of the coefficients: GCC
  // vectorizes only loads through pointers it sees are loop-invariant.
  Q* const p2 = K > 2 ? st[0] : nullptr;
  Q* const p3 = K > 3 ? st[1] : nullptr;
  Q* const p4 = K > 4 ? st[2] : nullptr;
  const auto coeffs = c;
#pragma GCC ivdep
  for (int64_t i = 0; i < n; ++i) {
    T x[kMaxSlots];
    x[0] = load_param<kMaster>(p0, master, i);
    if constexpr (K > 1) x[1] = load(p1, i);
    if constexpr (K > 2) x[2] = load(p2, i);
    if constexpr (K > 3) x[3] = load(p3, i);
    if constexpr (K > 4) x[4] = load(p4, i);
    step_elem<Rule, V, Unscale>(coeffs, x, scale, clip);
    store_param<kMaster>(p0, master, i, x[0]);
    if constexpr (K > 1 && writes_slot<Rule, V, Unscale>(1)) store(p1, i, x[1]);
    if constexpr (K > 2) store(p2, i, x[2]);
    if constexpr (K > 3) store(p3, i, x[3]);
    if constexpr (K > 4) store(p4, i, x[4]);
  }
}

// 8-bit blockwise state (bitsandbytes' algorithm, docs/lowp_state_notes.md): per block of
// kQuantBlock elements, decode each state with the block's old absmax, step every element
// (the parameter update uses the unrounded float32 states), then take the new absmax and
// encode: slot 2 on the signed map (keeping its sign), slot 3 on the unsigned one. The block
// stays in L1 between the three passes, so memory is still read and written once.
template <class Rule, int V, class S, bool Unscale, bool kMaster>
void run_block8(const typename Rule::template Coeffs<float>& c, S* const p0, S* const p1, uint8_t* const* codes,
                float* const* absmax, float* const master, int64_t n, float scale, float clip) {
  constexpr int NS = Rule::slots(V) - 2;
  static_assert(NS >= 1 && NS <= 2, "8-bit state: one or two state slots");
  alignas(64) float s0[kQuantBlock], s1[kQuantBlock];
  float* const st[2] = {s0, s1};
  for (int64_t b0 = 0, blk = 0; b0 < n; b0 += kQuantBlock, ++blk) {
    const int64_t len = std::min<int64_t>(kQuantBlock, n - b0);
    dequant_block<true>(codes[0] + b0, absmax[0][blk], len, s0);
    if constexpr (NS > 1) dequant_block<false>(codes[1] + b0, absmax[1][blk], len, s1);
    run_chunk<Rule, V, S, float, Unscale, kMaster>(c, p0 + b0, p1 + b0, st, kMaster ? master + b0 : nullptr, len,
                                                   scale, clip);
    absmax[0][blk] = encode_block<true>(s0, len, codes[0] + b0);
    if constexpr (NS > 1) absmax[1][blk] = encode_block<false>(s1, len, codes[1] + b0);
  }
}

template <class T> T* slot_ptr(const CpuJob& job, int k, const Chunk& ch) {
  return reinterpret_cast<T*>(job.ptrs[k * job.count + ch.tensor]) + ch.start;
}

template <class Rule, int V, class S, class Q, bool kMaster>
void run_typed(const CpuJob& job) {
  using T = compute_t<S>;
  using Coeffs = typename Rule::template Coeffs<T>;
  const Coeffs* coeffs = static_cast<const Coeffs*>(job.coeffs);
  const float scale = job.grad_scale ? *job.grad_scale : 1.f;
  const T clip = job.clip_coef ? T(*job.clip_coef) : T(1);
  constexpr int K = Rule::slots(V);
  auto task = [&](int64_t i) {
    const Chunk& ch = job.chunks[i];
    S* const p = slot_ptr<S>(job, 0, ch);
    S* const g = K > 1 ? slot_ptr<S>(job, 1, ch) : nullptr;
    float* const master = kMaster ? reinterpret_cast<float*>(job.master[ch.tensor]) + ch.start : nullptr;
    if constexpr (std::is_same_v<Q, uint8_t>) {
      if constexpr (K >= 3 && K <= 4) {
        uint8_t* codes[2];
        float* amax[2];
        for (int k = 0; k < K - 2; ++k) {
          codes[k] = slot_ptr<uint8_t>(job, k + 2, ch);
          amax[k] = reinterpret_cast<float*>(job.absmax[k * job.count + ch.tensor]) + ch.start / kQuantBlock;
        }
        if (job.grad_scale) return run_block8<Rule, V, S, true, kMaster>(coeffs[ch.tensor], p, g, codes, amax, master,
                                                                          ch.len, scale, clip);
        return run_block8<Rule, V, S, false, kMaster>(coeffs[ch.tensor], p, g, codes, amax, master, ch.len, scale,
                                                      clip);
      }
    } else {
      Q* st[3] = {};
      for (int k = 2; k < K; ++k) st[k - 2] = slot_ptr<Q>(job, k, ch);
      if constexpr (K > 1) {  // one-slot ops have no gradient to unscale
        if (job.grad_scale)
          return run_chunk<Rule, V, S, Q, true, kMaster>(coeffs[ch.tensor], p, g, st, master, ch.len, scale, clip);
      }
      run_chunk<Rule, V, S, Q, false, kMaster>(coeffs[ch.tensor], p, g, st, master, ch.len, scale, clip);
    }
  };
  parallel_for(job.num_threads, job.nchunks, task);
}

// Storage of the state slots and whether a master copy exists: low-precision state and
// master weights are for float32 / 16-bit parameters only (optim_step.cpp checks).
template <class Rule, int V, class S>
void run_storage(const CpuJob& job) {
  if constexpr (std::is_same_v<S, double>) {
    return run_typed<Rule, V, S, S, false>(job);
  } else if constexpr (Rule::slots(V) < 3) {  // no state: only master weights can differ
    if constexpr (!std::is_same_v<S, float>)
      if (job.master) return run_typed<Rule, V, S, S, true>(job);
    return run_typed<Rule, V, S, S, false>(job);
  } else {
    const auto go = [&](auto q) {
      using Q = decltype(q);
      if constexpr (!std::is_same_v<S, float>)
        if (job.master) return run_typed<Rule, V, S, Q, true>(job);
      return run_typed<Rule, V, S, Q, false>(job);
    };
    switch (job.state_format) {
      case StateFormat::Float32: return go(float{});
      case StateFormat::BFloat16: return go(BFloat16{});
      case StateFormat::Block8:
        if constexpr (Rule::slots(V) <= 4) return go(uint8_t{});
        return;  // rejected by optim_step.cpp
      default: return go(S{});
    }
  }
}

template <class Rule, int V>
void run_variant(const CpuJob& job) {
  if constexpr (V < Rule::kVariants) {
    if (job.variant != V) return run_variant<Rule, V + 1>(job);
    if constexpr (Rule::reachable(V)) dispatch_dtype(job.dtype, [&](auto s) { run_storage<Rule, V, decltype(s)>(job); });
  }
}

}  // namespace

template <class Rule> void run_job(const CpuJob& job) { run_variant<Rule, 0>(job); }

int64_t quant8_mismatches(int64_t stride) {
  // Every stride-th float32 in [-1, 1], every map entry and midpoint with its 4 float
  // neighbours each side, and NaNs of both signs, in blocks led by the absmax, against
  // quant8.h's scalar functions.
  std::vector<float> xs;
  const auto near = [&](float v) {
    float w = v;
    for (int k = 0; k < 4; ++k) w = std::nextafter(w, 2.0f);
    for (int k = 0; k < 9; ++k, w = std::nextafter(w, -2.0f))
      if (w >= -1.0f && w <= 1.0f) xs.push_back(w), xs.push_back(-w);
  };
  for (int j = 0; j < 256; ++j)
    for (float v : {DynMap<true>::code()[j], DynMap<false>::code()[j], DynMap<true>::bound()[j + 1],
                    DynMap<false>::bound()[j + 1]})
      if (std::isfinite(v)) near(v);
  for (int64_t m = 0; m <= 0x3F800000; m += stride) {
    uint32_t u = static_cast<uint32_t>(m);
    float f;
    std::memcpy(&f, &u, 4);
    xs.push_back(f);
    xs.push_back(-f);
  }
  xs.push_back(std::nanf(""));
  xs.push_back(-std::nanf(""));
  const auto same_bits = [](float x, float y) { return std::memcmp(&x, &y, 4) == 0; };
  int64_t bad = 0;
  alignas(64) float block[kQuantBlock], back[kQuantBlock];
  uint8_t got[kQuantBlock];
  const int64_t per = kQuantBlock - 1;
  // absmax 1 (the encoder sees each value itself) and two others (x = s / absmax is then
  // rounded, and the AVX-512 encoder multiplies by 1 / absmax)
  for (float lead : {1.0f, -1.0f, 3.0f, -0.7f}) {
    const float am = lead < 0.f ? -lead : lead;
    for (size_t i0 = 0; i0 < xs.size(); i0 += per) {
      const int64_t len = std::min<int64_t>(per, static_cast<int64_t>(xs.size() - i0));
      block[0] = lead;
      for (int64_t k = 0; k < len; ++k) block[k + 1] = xs[i0 + k] * am;
      if (encode_block<true>(block, len + 1, got) != am) ++bad;
      for (int64_t k = 0; k <= len; ++k) bad += got[k] != quant8_keep_sign(block[k] / am);
      dequant_block<true>(got, 0.5f, len + 1, back);
      for (int64_t k = 0; k <= len; ++k) bad += !same_bits(back[k], dequant8<true>(got[k], 0.5f));
      if (lead < 0.f) continue;
      for (int64_t k = 1; k <= len; ++k) block[k] = block[k] < 0.f ? -block[k] : block[k];  // the unsigned map's states
      if (encode_block<false>(block, len + 1, got) != am) ++bad;
      for (int64_t k = 0; k <= len; ++k) bad += got[k] != quant8<false>(block[k] / am);
      dequant_block<false>(got, 0.5f, len + 1, back);
      for (int64_t k = 0; k <= len; ++k) bad += !same_bits(back[k], dequant8<false>(got[k], 0.5f));
    }
  }
  return bad;
}

#define FK_INSTANTIATE(Rule) template void run_job<Rule>(const CpuJob&);
FK_FOR_EACH_RULE(FK_INSTANTIATE)
#undef FK_INSTANTIATE

}  // namespace fusekit::cpu::FK_ISA
