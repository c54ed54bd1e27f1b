// The per-element body of every multi-tensor step, run by the CPU loop
// (csrc/cpu/optim_step_isa.cpp) and the CUDA kernel (csrc/cuda/optim_kernel.cuh) alike:
// unscale the gradient (AMP), keep it for the write-back, clip it, apply the rule.
// The callers only move values between memory and x[] (the CPU per element, the GPU
// through 16-byte vectors); everything that decides a rounding happens here.
#pragma once
#include "fusekit/dtype.h"
#include "fusekit/math/common.h"

namespace fusekit {

// x[0..slots) holds the loaded values in the compute type. On return x[kParam] and the
// state slots hold the new values, and x[kGrad] the unscaled gradient, which the caller
// stores back iff Unscale (as torch's fused kernels leave grads unscaled). scale is the
// float32 GradScaler scale, widened here (exactly) for float64; clip is the clip
// coefficient in the compute type, 1 when no clipping happens inside the step
// (multiplying by 1 is exact).
template <class Rule, int V, bool Unscale, class T>
FK_HOST_DEVICE void step_elem(const typename Rule::template Coeffs<T>& c, T* x, float scale, T clip) {
  if constexpr (Rule::slots(V) > 1) {
    T g = x[kGrad];
    if constexpr (Unscale) g = g / T(scale);
    x[kGrad] = g * clip;
    Rule::template apply<V>(c, x);
    x[kGrad] = g;
  } else {
    Rule::template apply<V>(c, x);  // one-slot ops (grad scale/clamp): no gradient slot
  }
}

// Which slots an element step writes back: the parameter and state always, the gradient
// only when it was unscaled.
template <class Rule, int V, bool Unscale> FK_HOST_DEVICE constexpr bool writes_slot(int k) {
  return Rule::slots(V) == 1 || k != kGrad || Unscale;
}

}  // namespace fusekit
