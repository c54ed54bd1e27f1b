// NAdam, torch.optim.NAdam's for-loop semantics (momentum-decay schedule):
//   mu_t = b1 * (1 - 0.5 * 0.96^(t * momentum_decay)),  mu_product *= mu_t   (float32 state)
//   m = lerp(m, g, 1-b1);  v = b2*v + (1-b2)*g^2;  denom = sqrt(v / (1-b2^t)) + eps
//   p += -lr (1-mu_t) / (1-mu_product) * g / denom  -  lr mu_{t+1} / (1-mu_product mu_{t+1}) * m / denom
// folded (architecture.md §3): p -= lr * sqrt(1-b2^t)/(1-b1^t) * (b1*m + (1-b1)*g) / (sqrt(v) + eps)
#pragma once
#include "fusekit/math/adam.h"

namespace fusekit {

struct NAdamHyper {
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0, momentum_decay = 4e-3;
  bool decoupled = false, maximize = false, folded = false;
};

template <class T> struct NAdamCoeffs {
  T sign, one_minus_beta1, beta2, one_minus_beta2, bc2, eps, coef_g, coef_m, decay, weight_decay;
};

struct NAdamRule {
  using Hyper = NAdamHyper;
  static const char* name(const Hyper&) { return "NAdam"; }  // torch's class name, for messages
  template <class T> using Coeffs = NAdamCoeffs<T>;
  // bit 0: folded; bits 1-2: WeightDecay mode; bit 3: lerp weight >= 0.5
  static constexpr int kVariants = 16;
  static int variant(const Hyper& h) {
    const int wd = h.weight_decay == 0 ? kNoDecay : (h.decoupled ? kDecoupled : kL2);
    return (h.folded ? 1 : 0) | (wd << 1) | (lerp_large(1.0 - h.beta1) ? 8 : 0);
  }
  static constexpr int slots(int) { return 4; }
  static constexpr bool reachable(int v) { return ((v >> 1) & 3) != 3; }  // no WeightDecay mode 3

  FK_HOST_DEVICE static double mu(const Hyper& h, double t) {
    return h.beta1 * (1.0 - 0.5 * pow(0.96, t * h.momentum_decay));
  }
  // torch multiplies the float32 mu_product tensor by the Python float mu.
  FK_HOST_DEVICE static void advance(const Hyper& h, StepState& s) {
    s.step += 1.f;
    s.mu_product = s.mu_product * static_cast<float>(mu(h, s.step));
  }

  template <class T> FK_HOST_DEVICE static Coeffs<T> coeffs(const Hyper& h, double lr, const StepState& s) {
    const double t = s.step;
    const double bc2 = 1.0 - pow_step(h.beta2, t);
    double coef_g, coef_m;
    if (h.folded) {  // (1-b1) and b1 folded into the coefficients
      const double b = sqrt(bc2) / (1.0 - pow_step(h.beta1, t));
      coef_g = -lr * b * (1.0 - h.beta1);
      coef_m = -lr * b * h.beta1;
    } else {
      const double mu_t = mu(h, t), mu_next = mu(h, t + 1.0);
      const double mp = s.mu_product;
      coef_g = -lr * (1.0 - mu_t) / (1.0 - mp);
      coef_m = -lr * mu_next / (1.0 - mp * mu_next);
    }
    return {T(h.maximize ? -1.0 : 1.0), T(1.0 - h.beta1), T(h.beta2), T(1.0 - h.beta2), T(bc2), T(h.eps),
            T(coef_g), T(coef_m), T(1.0 - lr * h.weight_decay), T(h.weight_decay)};
  }

  template <int V, class T> FK_HOST_DEVICE static void apply(const Coeffs<T>& c, T* x) {
    T p, g, m, v;
    adam_moments<(V >> 1) & 3, (V & 8) != 0>(c, x, p, g, m, v);
    if constexpr ((V & 1) != 0) {
      x[kParam] = p + (c.coef_g * g + c.coef_m * m) / (fk_sqrt(v) + c.eps);
    } else {
      const T denom = fk_sqrt(v / c.bc2) + c.eps;
      p = p + c.coef_g * g / denom;
      x[kParam] = p + c.coef_m * m / denom;
    }
    x[kState0] = m;
    x[kState1] = v;
  }
};

}  // namespace fusekit
