// The CPU optimizer loop, compiled once per ISA (FK_ISA = scalar | avx2 | avx512) and chosen
// at run time. The loop body is the shared functor (csrc/include/fusekit/math/), which the
// compiler vectorizes; all tensors of a step are one parallel region over byte-sized chunks.
#include "cpu/optim_job.h"
#include "cpu/thread_pool.h"
#include "fusekit/optim_step.h"
#include "fusekit/step_elem.h"

namespace fusekit::cpu::FK_ISA {
namespace {

template <class Rule, int V, class S, bool Unscale>
void run_chunk(const typename Rule::template Coeffs<compute_t<S>>& c, S* const* base, int64_t n, float scale,
               compute_t<S> clip) {
  using T = compute_t<S>;
  constexpr int K = Rule::slots(V);
  // Separate pointer variables, not an array, and a local copy of the coefficients: GCC
  // vectorizes only loads through pointers it sees are loop-invariant.
  S* const p0 = base[0];
  S* const p1 = K > 1 ? base[1] : nullptr;
  S* const p2 = K > 2 ? base[2] : nullptr;
  S* const p3 = K > 3 ? base[3] : nullptr;
  S* const p4 = K > 4 ? base[4] : nullptr;
  const auto coeffs = c;
#pragma GCC ivdep
  for (int64_t i = 0; i < n; ++i) {
    T x[kMaxSlots];
    x[0] = load(p0, i);
    if constexpr (K > 1) x[1] = load(p1, i);
    if constexpr (K > 2) x[2] = load(p2, i);
    if constexpr (K > 3) x[3] = load(p3, i);
    if constexpr (K > 4) x[4] = load(p4, i);
    step_elem<Rule, V, Unscale>(coeffs, x, scale, clip);
    store(p0, i, x[0]);
    if constexpr (K > 1 && writes_slot<Rule, V, Unscale>(1)) store(p1, i, x[1]);
    if constexpr (K > 2) store(p2, i, x[2]);
    if constexpr (K > 3) store(p3, i, x[3]);
    if constexpr (K > 4) store(p4, i, x[4]);
  }
}

template <class Rule, int V, class S>
void run_typed(const CpuJob& job) {
  using T = compute_t<S>;
  using Coeffs = typename Rule::template Coeffs<T>;
  const Coeffs* coeffs = static_cast<const Coeffs*>(job.coeffs);
  const float scale = job.grad_scale ? *job.grad_scale : 1.f;
  const T clip = job.clip_coef ? T(*job.clip_coef) : T(1);
  auto task = [&](int64_t i) {
    const Chunk& ch = job.chunks[i];
    S* base[kMaxSlots];
    for (int k = 0; k < job.nslots; ++k)
      base[k] = reinterpret_cast<S*>(job.ptrs[k * job.count + ch.tensor]) + ch.start;
    if constexpr (Rule::slots(V) > 1) {  // one-slot ops have no gradient to unscale
      if (job.grad_scale) return run_chunk<Rule, V, S, true>(coeffs[ch.tensor], base, ch.len, scale, clip);
    }
    run_chunk<Rule, V, S, false>(coeffs[ch.tensor], base, ch.len, scale, clip);
  };
  parallel_for(job.num_threads, job.nchunks, task);
}

template <class Rule, int V>
void run_variant(const CpuJob& job) {
  if constexpr (V < Rule::kVariants) {
    if (job.variant != V) return run_variant<Rule, V + 1>(job);
    if constexpr (Rule::reachable(V)) dispatch_dtype(job.dtype, [&](auto s) { run_typed<Rule, V, decltype(s)>(job); });
  }
}

}  // namespace

template <class Rule> void run_job(const CpuJob& job) { run_variant<Rule, 0>(job); }

#define FK_INSTANTIATE(Rule) template void run_job<Rule>(const CpuJob&);
FK_FOR_EACH_RULE(FK_INSTANTIATE)
#undef FK_INSTANTIATE

}  // namespace fusekit::cpu::FK_ISA
