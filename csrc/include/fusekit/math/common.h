// Scalar helpers shared by every update rule: torch's lerp, NaN-propagating max, sqrt,
// and the per-tensor scalar state (step, mu_product) that optimizers keep as float32.
#pragma once
#include <cmath>

#include "fusekit/macros.h"

namespace fusekit {

// Per-tensor scalar state, stored by torch as 0-d float32 tensors.
struct StepState {
  float step = 0.f;
  float mu_product = 1.f;  // NAdam only
  bool first = false;      // SGD: momentum buffer not yet initialised
};

// at::lerp with torch's formula split on |w| < 0.5; the split is a compile-time variant
// bit (kLargeWeight), since the weight is a hyper-parameter.
template <bool kLargeWeight, class T> FK_HOST_DEVICE T lerp(T a, T b, T w) {
  if constexpr (kLargeWeight) return b - (b - a) * (T(1) - w);
  else return a + w * (b - a);
}
inline bool lerp_large(double w) { return !(w < 0.5 && w > -0.5); }

// torch.maximum: NaN wins.
template <class T> FK_HOST_DEVICE T max_nan(T a, T b) { return (a != a || a > b) ? a : b; }

FK_HOST_DEVICE float fk_sqrt(float x) { return sqrtf(x); }
FK_HOST_DEVICE double fk_sqrt(double x) { return sqrt(x); }

// Options that change the shape of the math are compile-time "variant" bits (see each
// rule's variant()): GCC does not vectorize selects on a loop-invariant bool. Options that
// can be expressed exactly as coefficients (maximize as a sign of 1 or -1, folded bias
// correction as a divisor of 1) are coefficients.
enum WeightDecay : int { kNoDecay = 0, kL2 = 1, kDecoupled = 2 };

// Slot layout of the tensors an update rule reads: 0 param, 1 grad, 2.. state tensors.
enum Slot : int { kParam = 0, kGrad = 1, kState0 = 2, kState1 = 3, kState2 = 4 };
constexpr int kMaxSlots = 5;

}  // namespace fusekit
