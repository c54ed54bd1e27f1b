// Element-wise gradient ops of clipping: scale by the clip coefficient (clip_grad_norm_,
// clip_grads_with_norm_) and clamp to [-v, v] (clip_grad_value_). Run by the optimizer
// machinery as a one-slot rule; the call's scalar ("lr") is the scale factor, so on CUDA it
// can be read from device memory (StepArgs::lr_ptr) without a host sync.
#pragma once
#include "fusekit/math/common.h"

namespace fusekit {

struct GradOpHyper {
  double clip_value = 0;
  bool clamp = false;
};

template <class T> struct GradOpCoeffs {
  T factor, lo, hi;
};

struct GradOpRule {
  using Hyper = GradOpHyper;
  static const char* name(const Hyper&) { return "grad op"; }  // torch's class name, for messages
  template <class T> using Coeffs = GradOpCoeffs<T>;
  static constexpr int kVariants = 2;  // 0: scale, 1: clamp
  static int variant(const Hyper& h) { return h.clamp ? 1 : 0; }
  static constexpr int slots(int) { return 1; }
  static constexpr bool reachable(int) { return true; }

  FK_HOST_DEVICE static void advance(const Hyper&, StepState&) {}

  template <class T> FK_HOST_DEVICE static Coeffs<T> coeffs(const Hyper& h, double factor, const StepState&) {
    return {T(factor), T(-h.clip_value), T(h.clip_value)};
  }

  // torch.clamp keeps NaN: both comparisons are false for it.
  template <int V, class T> FK_HOST_DEVICE static void apply(const Coeffs<T>& c, T* x) {
    if constexpr (V == 1) x[0] = x[0] < c.lo ? c.lo : (x[0] > c.hi ? c.hi : x[0]);
    else x[0] = x[0] * c.factor;
  }
};

}  // namespace fusekit
