// Host driver of the multi-tensor norm: validates, reduces chunks in parallel (per-ISA
// kernels), then combines in a fixed order (norm_finish.h) and derives the clip coefficient.
#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <vector>

#include "cpu/norm_job.h"
#include "cpu/optim_job.h"
#include "fusekit/buffers.h"
#include "fusekit/norm_args.h"
#include "fusekit/norm_finish.h"
#include "fusekit/norm_tail.h"
#include "fusekit/optim_step.h"

namespace fusekit {

int64_t norm_chunk_count(const std::vector<int64_t>& numels) {
  int64_t n = 0;
  for (int64_t e : numels) n += (e + kNormChunkElems - 1) / kNormChunkElems;
  return std::max<int64_t>(n, static_cast<int64_t>(numels.size()));  // also scratch for the total
}

// tensors *= coef (the second pass of clip_grad_norm_), one optimizer-style call per dtype.
static void scale_in_place(const NormArgs& a, double coef) {
  for (int d = 0; d < 4; ++d) {
    StepArgs s;
    s.num_threads = a.num_threads;
    s.dtype = static_cast<DType>(d);
    s.nslots = 1;
    s.lr = coef;
    for (int64_t i = 0; i < a.count; ++i)
      if (a.dtypes[i] == d) {
        s.ptrs.push_back(a.ptrs[i]);
        s.numels.push_back(a.numels[i]);
        s.nbytes.push_back(a.nbytes[i]);
      }
    s.count = static_cast<int64_t>(s.numels.size());
    if (s.count > 0) optimizer_step<GradOpRule>(s, GradOpHyper{});
  }
}

static void check_norm_args(const NormArgs& a) {
  if (static_cast<int64_t>(a.ptrs.size()) != a.count || static_cast<int64_t>(a.numels.size()) != a.count ||
      static_cast<int64_t>(a.dtypes.size()) != a.count || static_cast<int64_t>(a.nbytes.size()) != a.count)
    throw std::invalid_argument("ptrs, numels, nbytes and dtypes must each have one entry per tensor");
  if (!(a.norm_type > 0) && !std::isinf(a.norm_type))
    throw std::invalid_argument("norm_type must be positive, inf or -inf");
  if (a.total_out == 0) throw std::invalid_argument("total_out is required");
  for (int64_t i = 0; i < a.count; ++i) {
    if (a.dtypes[i] < 0 || a.dtypes[i] > 3) throw std::invalid_argument("unknown dtype code");
    if (a.numels[i] < 0) throw std::invalid_argument("negative numel");
  }
  if (a.history_norms && (a.history_len < 1 || !a.history_thresholds || !a.history_count))
    throw std::invalid_argument("a grad-norm history needs both rings, a count and a positive length");
  for (int64_t i = 0; i < a.count; ++i) {
    check_buffer("norm input", a.ptrs[i], a.nbytes[i], extent_bytes({a.numels[i]}, dtype_size(static_cast<DType>(a.dtypes[i]))));
  }
}

NormResult tensor_norms(const NormArgs& a) {
  check_norm_args(a);
  if (a.device >= 0) {
#ifdef FK_WITH_CUDA
    if (a.norms_out == 0 || (a.workspace == 0 && norm_chunk_count(a.numels) > 0))
      throw std::invalid_argument("CUDA norms need norms_out and a workspace");
    cuda::tensor_norms(a);
    return {NAN, NAN};
#else
    throw std::runtime_error("fusekit was built without CUDA kernels");
#endif
  }
  const NormKind kind = norm_kind(a.norm_type);
  const std::vector<Chunk> chunks = build_chunks(a.numels.data(), a.count, kNormChunkElems);
  std::vector<double> partials(chunks.size());
  int64_t total_elems = 0;
  for (int64_t n : a.numels) total_elems += n;
  const cpu::NormJob job{kind, a.norm_type, a.ptrs.data(), a.dtypes.data(), chunks.data(),
                         static_cast<int64_t>(chunks.size()), partials.data(),
                         total_elems < 32 * 1024 ? 1 : a.num_threads};
  switch (cpu::detect_isa()) {
#ifdef FK_HAVE_ISA_AVX512
    case cpu::Isa::Avx512: cpu::avx512::norm_partials(job); break;
#endif
#ifdef FK_HAVE_ISA_AVX2
    case cpu::Isa::Avx2: cpu::avx2::norm_partials(job); break;
#endif
    default: cpu::scalar::norm_partials(job); break;
  }
  std::vector<double> norms(a.count);
  for (int64_t t = 0, c = 0; t < a.count; ++t) {
    const int64_t n = (a.numels[t] + kNormChunkElems - 1) / kNormChunkElems;
    norms[t] = finish_tensor_norm(kind, a.norm_type, static_cast<DType>(a.dtypes[t]), partials.data() + c, n);
    c += n;
  }
  if (a.norms_out) std::copy(norms.begin(), norms.end(), reinterpret_cast<double*>(a.norms_out));
  const double total = finish_total_norm(kind, a.norm_type, a.total_dtype, norms.data(), a.count);  // scratch
  *reinterpret_cast<double*>(a.total_out) = total;
  const double coef = norm_tail(norm_tail_of(a), total);
  if (a.clip && !(coef >= 1.0)) scale_in_place(a, coef);  // a coefficient of 1 needs no pass
  return {total, coef};
}

void finish_norm(int device, uintptr_t stream, uintptr_t total, const NormArgs& a) {
  if (total == 0) throw std::invalid_argument("finish_norm needs the total");
  if (a.history_norms && (a.history_len < 1 || !a.history_thresholds || !a.history_count))
    throw std::invalid_argument("a grad-norm history needs both rings, a count and a positive length");
  if (device >= 0) {
#ifdef FK_WITH_CUDA
    return cuda::finish_norm(stream, reinterpret_cast<const double*>(total), norm_tail_of(a));
#else
    throw std::runtime_error("fusekit was built without CUDA kernels");
#endif
  }
  (void)stream;
  norm_tail(norm_tail_of(a), *reinterpret_cast<const double*>(total));
}

}  // namespace fusekit
