// The CPU optimizer loop, compiled once per ISA (FK_ISA = scalar | avx2 | avx512) and chosen
// at run time. The loop body is the shared functor (csrc/include/fusekit/math/), which the
// compiler vectorizes; all tensors of a step are one parallel region over byte-sized chunks.
#include "cpu/optim_job.h"
#include "cpu/thread_pool.h"

namespace fusekit::cpu::FK_ISA {
namespace {

template <class Rule, int V, class S, bool Unscale>
void run_chunk(const typename Rule::template Coeffs<compute_t<S>>& c, S* const* base, int64_t n,
               compute_t<S> scale) {
  using T = compute_t<S>;
  constexpr int K = Rule::slots(V);
  S* p[K];
  for (int k = 0; k < K; ++k) p[k] = base[k];
  const auto coeffs = c;  // a local copy: the compiler sees it cannot alias the tensors
#pragma GCC ivdep
  for (int64_t i = 0; i < n; ++i) {
    T x[kMaxSlots];
#pragma GCC unroll 5
    for (int k = 0; k < K; ++k) x[k] = load(p[k], i);
    if constexpr (Unscale) {
      x[kGrad] = x[kGrad] / scale;
      store(p[kGrad], i, x[kGrad]);
    }
    Rule::template apply<V>(coeffs, x);
    store(p[kParam], i, x[kParam]);
#pragma GCC unroll 5
    for (int k = kState0; k < K; ++k) store(p[k], i, x[k]);
  }
}

template <class Rule, int V, class S>
void run_typed(const CpuJob& job) {
  using T = compute_t<S>;
  using Coeffs = typename Rule::template Coeffs<T>;
  const Coeffs* coeffs = static_cast<const Coeffs*>(job.coeffs);
  const T scale = job.grad_scale ? T(*job.grad_scale) : T(1);
  auto task = [&](int64_t i) {
    const Chunk& ch = job.chunks[i];
    S* base[kMaxSlots];
    for (int k = 0; k < job.nslots; ++k)
      base[k] = reinterpret_cast<S*>(job.ptrs[k * job.count + ch.tensor]) + ch.start;
    if (job.grad_scale) run_chunk<Rule, V, S, true>(coeffs[ch.tensor], base, ch.len, scale);
    else run_chunk<Rule, V, S, false>(coeffs[ch.tensor], base, ch.len, scale);
  };
  parallel_for(job.num_threads, job.nchunks, task);
}

template <class Rule, int V>
void run_variant(const CpuJob& job) {
  if constexpr (V < Rule::kVariants) {
    if (job.variant != V) return run_variant<Rule, V + 1>(job);
    dispatch_dtype(job.dtype, [&](auto s) { run_typed<Rule, V, decltype(s)>(job); });
  }
}

}  // namespace

template <class Rule> void run_job(const CpuJob& job) { run_variant<Rule, 0>(job); }

template void run_job<SGDRule>(const CpuJob&);
template void run_job<AdamRule>(const CpuJob&);
template void run_job<NAdamRule>(const CpuJob&);
template void run_job<RMSpropRule>(const CpuJob&);
template void run_job<AdagradRule>(const CpuJob&);

}  // namespace fusekit::cpu::FK_ISA
