// Chunk partials -> per-tensor norms -> total -> clip coefficient. Shared by the CPU path
// and the CUDA finalize kernels; every combine runs in a fixed order.
#pragma once
#include "fusekit/math/norm.h"

namespace fusekit {

// Combines a tensor's chunk partials in its accumulation type (float, or double for
// float64) and rounds the norm to the tensor's dtype, as torch._foreach_norm returns it.
FK_HOST_DEVICE double finish_tensor_norm(NormKind k, double p, DType d, const double* partials, int64_t n) {
  if (d == DType::Float64) {
    double v = n > 0 ? partials[0] : (k == NormKind::NegInf ? INFINITY : 0.0);
    for (int64_t i = 1; i < n; ++i) v = norm_combine_rt(k, v, partials[i]);
    return norm_finish(k, v, p);
  }
  float v = n > 0 ? static_cast<float>(partials[0]) : (k == NormKind::NegInf ? INFINITY : 0.f);
  for (int64_t i = 1; i < n; ++i) v = norm_combine_rt(k, v, static_cast<float>(partials[i]));
  return round_to(d, norm_finish(k, v, static_cast<float>(p)));
}

// The norm of the per-tensor norms (torch: vector_norm(stack(norms))), rounded to dtype d.
FK_HOST_DEVICE double finish_total_norm(NormKind k, double p, DType d, const double* norms, int64_t n) {
  double v = k == NormKind::NegInf ? INFINITY : 0.0;
  for (int64_t i = 0; i < n; ++i) {
    double e = norms[i] < 0 ? -norms[i] : norms[i];
    if (k == NormKind::L2) e = e * e;
    else if (k == NormKind::P) e = pow(e, p);
    v = norm_combine_rt(k, v, e);
  }
  return round_to(d, norm_finish(k, v, p));
}

}  // namespace fusekit
