// Chunk partials -> per-tensor norms -> total -> clip coefficient. Shared by the CPU path
// and the CUDA finalize kernels; every combine runs in a fixed order.
#pragma once
#include "fusekit/math/norm.h"

namespace fusekit {

// A tensor's norm from its tree value v (computed in the accumulation type: float, or
// double for float64), rounded to the tensor's dtype as torch._foreach_norm returns it.
FK_HOST_DEVICE double tensor_norm_from_tree(NormKind k, double p, DType d, double v) {
  if (d == DType::Float64) return norm_finish(k, v, p);
  return round_to(d, norm_finish(k, static_cast<float>(v), static_cast<float>(p)));
}

// A tensor norm's term in the total (torch: vector_norm(stack(norms))), in double.
FK_HOST_DEVICE double total_term(NormKind k, double p, double norm) {
  const double e = norm < 0 ? -norm : norm;
  if (k == NormKind::L2) return e * e;
  if (k == NormKind::P) return pow(e, p);
  return e;
}

// Combines a tensor's chunk partials (the top of its block tree) and finishes the norm.
// `partials` is scratch: it is overwritten.
FK_HOST_DEVICE double finish_tensor_norm(NormKind k, double p, DType d, double* partials, int64_t n) {
  if (d == DType::Float64) return tensor_norm_from_tree(k, p, d, tree_combine_rt<double>(k, partials, n));
  return tensor_norm_from_tree(k, p, d, tree_combine_rt<float>(k, partials, n));  // float math, double storage
}

// The norm of the per-tensor norms, rounded to dtype d. `norms` is scratch.
FK_HOST_DEVICE double finish_total_norm(NormKind k, double p, DType d, double* norms, int64_t n) {
  for (int64_t i = 0; i < n; ++i) norms[i] = total_term(k, p, norms[i]);
  return round_to(d, norm_finish(k, tree_combine_rt<double>(k, norms, n), p));
}

}  // namespace fusekit
