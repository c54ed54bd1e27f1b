// Chunk reductions for the multi-tensor norm, compiled once per ISA like the optimizer
// loop; the lane structure in math/norm.h keeps every ISA bit-identical.
#include "cpu/norm_job.h"
#include "cpu/thread_pool.h"

namespace fusekit::cpu::FK_ISA {
namespace {

template <NormKind K> void run_kind(const NormJob& job) {
  auto task = [&](int64_t i) {
    const Chunk& ch = job.chunks[i];
    const DType d = static_cast<DType>(job.dtypes[ch.tensor]);
    job.partials[i] = dispatch_dtype(d, [&](auto s) -> double {
      using S = decltype(s);
      const S* x = reinterpret_cast<const S*>(job.ptrs[ch.tensor]) + ch.start;
      return norm_chunk<K, S>(x, ch.len, static_cast<compute_t<S>>(job.p));
    });
  };
  parallel_for(job.num_threads, job.nchunks, task);
}

}  // namespace

void norm_partials(const NormJob& job) {
  switch (job.kind) {
    case NormKind::L1: return run_kind<NormKind::L1>(job);
    case NormKind::L2: return run_kind<NormKind::L2>(job);
    case NormKind::Inf: return run_kind<NormKind::Inf>(job);
    case NormKind::NegInf: return run_kind<NormKind::NegInf>(job);
    default: return run_kind<NormKind::P>(job);
  }
}

}  // namespace fusekit::cpu::FK_ISA
