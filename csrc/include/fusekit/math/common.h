// Scalar helpers shared by every update rule: torch's lerp, NaN-propagating max, sqrt,
// and the per-tensor scalar state (step, mu_product) that optimizers keep as float32.
#pragma once
#include <cmath>
#include <cstdint>

#include "fusekit/macros.h"

namespace fusekit {

// Per-tensor scalar state, stored by torch as 0-d float32 tensors.
struct StepState {
  float step = 0.f;
  float mu_product = 1.f;  // NAdam only
  bool first = false;      // SGD: momentum buffer not yet initialised
};

// a * b + c with one rounding, on every ISA and on the GPU. Contraction stays off in the
// build (-ffp-contract=off, --fmad=false), so an fma happens only where the math says so:
// where torch's CPU kernels fuse too (`x.add_(y, alpha=a)` is vec::fmadd(y, a, x); lerp is
// vec::fmadd(w, b - a, a)), which also saves the GPU an instruction per use. Without FMA
// hardware (the scalar ISA build) this is libm's correctly rounded fmaf: same bits.
FK_HOST_DEVICE float fk_fma(float a, float b, float c) {
#if defined(__CUDA_ARCH__)
  return __fmaf_rn(a, b, c);
#else
  return __builtin_fmaf(a, b, c);
#endif
}
FK_HOST_DEVICE double fk_fma(double a, double b, double c) {
#if defined(__CUDA_ARCH__)
  return __fma_rn(a, b, c);
#else
  return __builtin_fma(a, b, c);
#endif
}

// at::lerp as torch's vectorized CPU kernel computes it, split on |w| < 0.5:
// fma(w, b - a, a), or fma(w - 1, b - a, b) (w - 1 is exact for w >= 0.5). The split is a
// compile-time variant bit (kLargeWeight), since the weight is a hyper-parameter.
template <bool kLargeWeight, class T> FK_HOST_DEVICE T lerp(T a, T b, T w) {
  if constexpr (kLargeWeight) return fk_fma(w - T(1), b - a, b);
  else return fk_fma(w, b - a, a);
}

// x^t for the bias corrections (t = the float32 step count): square-and-multiply when t is
// a whole number below 2^31, so the host and the GPU (capturable steps compute coefficients
// on the device) get the same bits from the same IEEE multiplies, and no FP64 pow() runs on
// the GPU. Relative error <= ~t ulp of double (~1e-10 at t = 1e6): far below the float32
// coefficients' precision. Other t: pow().
FK_HOST_DEVICE double pow_step(double x, double t) {
  if (!(t >= 0.0 && t < 2147483648.0) || t != static_cast<double>(static_cast<int64_t>(t))) return pow(x, t);
  uint32_t n = static_cast<uint32_t>(t);
  double r = 1.0;
  while (n != 0) {
    if (n & 1u) r = r * x;
    x = x * x;
    n >>= 1;
  }
  return r;
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
