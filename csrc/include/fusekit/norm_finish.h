// Chunk partials -> per-tensor norms -> total -> clip coefficient. Shared by the CPU path
// and the CUDA finalize kernels; every combine runs in a fixed order.
#pragma once
#include "fusekit/math/norm.h"

namespace fusekit {

// Combines a tensor's chunk partials (a tree, in its accumulation type: float, or double
// for float64) and rounds the norm to the tensor's dtype, as torch._foreach_norm returns it.
// `partials` is scratch: it is overwritten.
FK_HOST_DEVICE double finish_tensor_norm(NormKind k, double p, DType d, double* partials, int64_t n) {
  if (d == DType::Float64) return norm_finish(k, tree_combine_rt<double>(k, partials, n), p);
  for (int64_t i = 0; i < n; ++i) partials[i] = static_cast<float>(partials[i]);
  const float v = tree_combine_rt<float>(k, partials, n);
  return round_to(d, norm_finish(k, v, static_cast<float>(p)));
}

// The norm of the per-tensor norms (torch: vector_norm(stack(norms))), rounded to dtype d.
// `norms` is scratch.
FK_HOST_DEVICE double finish_total_norm(NormKind k, double p, DType d, double* norms, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    double e = norms[i] < 0 ? -norms[i] : norms[i];
    if (k == NormKind::L2) e = e * e;
    else if (k == NormKind::P) e = pow(e, p);
    norms[i] = e;
  }
  return round_to(d, norm_finish(k, tree_combine_rt<double>(k, norms, n), p));
}

}  // namespace fusekit
