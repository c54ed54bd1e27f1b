// Adam / AdamW (torch.optim.Adam's for-loop semantics, decoupled = AdamW):
//   g = maximize ? -g : g;  decoupled ? p *= 1 - lr*wd : g += wd*p
//   m = lerp(m, g, 1-b1);   v = b2*v + (1-b2)*g^2;   vmax = max(vmax, v) if amsgrad
//   p += -(lr / (1-b1^t)) * m / (sqrt(v) / sqrt(1-b2^t) + eps)
// folded (architecture.md §3, Kingma & Ba §2): p -= lr * sqrt(1-b2^t)/(1-b1^t) * m / (sqrt(v) + eps)
#pragma once
#include "fusekit/math/common.h"

namespace fusekit {

struct AdamHyper {
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0;
  bool amsgrad = false, maximize = false, decoupled = false, folded = false;
};

template <class T> struct AdamCoeffs {
  T sign, one_minus_beta1, beta2, one_minus_beta2, bc2_sqrt, eps, neg_step, decay, weight_decay;
};

// The part Adam and NAdam share: maximize, L2 or decoupled weight decay, and the two
// moment updates m = lerp(m, g, 1-b1), v = b2*v + (1-b2)*g^2. Updates p and g in place.
template <int kWd, bool kLargeWeight, class C, class T>
FK_HOST_DEVICE void adam_moments(const C& c, const T* x, T& p, T& g, T& m, T& v) {
  p = x[kParam];
  g = c.sign * x[kGrad];
  if constexpr (kWd == kDecoupled) p = p * c.decay;
  if constexpr (kWd == kL2) g = fk_fma(p, c.weight_decay, g);  // grad.add(param, alpha=wd)
  m = lerp<kLargeWeight>(x[kState0], g, c.one_minus_beta1);
  v = x[kState1] * c.beta2 + c.one_minus_beta2 * g * g;
}

struct AdamRule {
  using Hyper = AdamHyper;
  static const char* name(const Hyper& h) { return h.decoupled ? "AdamW" : "Adam"; }  // torch's class name, for messages
  template <class T> using Coeffs = AdamCoeffs<T>;
  // bit 0: amsgrad (adds max_exp_avg_sq); bits 1-2: WeightDecay mode; bit 3: lerp weight >= 0.5
  static constexpr int kVariants = 16;
  static int variant(const Hyper& h) {
    const int wd = h.weight_decay == 0 ? kNoDecay : (h.decoupled ? kDecoupled : kL2);
    return (h.amsgrad ? 1 : 0) | (wd << 1) | (lerp_large(1.0 - h.beta1) ? 8 : 0);
  }
  static constexpr int slots(int v) { return (v & 1) ? 5 : 4; }
  static constexpr bool reachable(int v) { return ((v >> 1) & 3) != 3; }  // no WeightDecay mode 3

  FK_HOST_DEVICE static void advance(const Hyper&, StepState& s) { s.step += 1.f; }

  // The scalar math is done in double, as torch does it in Python floats. Folded: the
  // bias correction moves into the step size and sqrt(v) is divided by exactly 1.
  template <class T> FK_HOST_DEVICE static Coeffs<T> coeffs(const Hyper& h, double lr, const StepState& s) {
    const double t = s.step;
    const double bc1 = 1.0 - pow_step(h.beta1, t);
    const double bc2_sqrt = sqrt(1.0 - pow_step(h.beta2, t));
    const double step_size = h.folded ? lr * bc2_sqrt / bc1 : lr / bc1;
    return {T(h.maximize ? -1.0 : 1.0), T(1.0 - h.beta1), T(h.beta2), T(1.0 - h.beta2),
            T(h.folded ? 1.0 : bc2_sqrt), T(h.eps), T(-step_size), T(1.0 - lr * h.weight_decay),
            T(h.weight_decay)};
  }

  template <int V, class T> FK_HOST_DEVICE static void apply(const Coeffs<T>& c, T* x) {
    T p, g, m, v;
    adam_moments<(V >> 1) & 3, (V & 8) != 0>(c, x, p, g, m, v);
    T vv = v;
    if constexpr ((V & 1) != 0) {
      vv = max_nan(x[kState2], v);
      x[kState2] = vv;
    }
    const T denom = fk_sqrt(vv) / c.bc2_sqrt + c.eps;
    x[kParam] = p + c.neg_step * m / denom;
    x[kState0] = m;
    x[kState1] = v;
  }
};

}  // namespace fusekit
