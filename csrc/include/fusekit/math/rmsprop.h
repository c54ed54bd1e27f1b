// RMSprop, torch.optim.RMSprop's for-loop semantics:
//   g = (maximize ? -g : g) + wd*p;  sq = alpha*sq + (1-alpha)*g^2
//   centered: ga = lerp(ga, g, 1-alpha), avg = sqrt(sq - ga^2) + eps; else avg = sqrt(sq) + eps
//   momentum: buf = momentum*buf + g/avg, p -= lr*buf;  else p -= lr*g/avg
// Source form (DESIGN.md §3) via options: eps_in_sqrt -> avg = sqrt(sq + eps);
// lr_in_momentum -> buf = momentum*buf + lr*g/avg, p -= buf; square_avg starts at 1 (Python).
#pragma once
#include "fusekit/math/common.h"

namespace fusekit {

struct RMSpropHyper {
  double alpha = 0.99, eps = 1e-8, weight_decay = 0, momentum = 0;
  bool centered = false, maximize = false, eps_in_sqrt = false, lr_in_momentum = false;
};

template <class T> struct RMSpropCoeffs {
  T alpha, one_minus_alpha, eps, lr, neg_lr, momentum, weight_decay;
  bool maximize, use_wd, eps_in_sqrt, lr_in_momentum;
};

struct RMSpropRule {
  using Hyper = RMSpropHyper;
  template <class T> using Coeffs = RMSpropCoeffs<T>;
  // bit 0: momentum buffer, bit 1: centered grad_avg. Slots: p, g, square_avg, [buf], [grad_avg]
  static constexpr int kVariants = 4;
  static int variant(const Hyper& h) { return (h.momentum > 0 ? 1 : 0) | (h.centered ? 2 : 0); }
  static constexpr int slots(int v) { return 3 + (v & 1) + ((v >> 1) & 1); }

  FK_HOST_DEVICE static void advance(const Hyper&, StepState& s) { s.step += 1.f; }

  template <class T> FK_HOST_DEVICE static Coeffs<T> coeffs(const Hyper& h, double lr, const StepState&) {
    return {T(h.alpha), T(1.0 - h.alpha), T(h.eps), T(lr), T(-lr), T(h.momentum), T(h.weight_decay),
            h.maximize, h.weight_decay != 0, h.eps_in_sqrt, h.lr_in_momentum};
  }

  template <int V, class T> FK_HOST_DEVICE static void apply(const Coeffs<T>& c, T* x) {
    constexpr bool kMomentum = V & 1, kCentered = V & 2;
    constexpr int kGradAvg = kState0 + 1 + (kMomentum ? 1 : 0);
    T g = c.maximize ? -x[kGrad] : x[kGrad];
    if (c.use_wd) g = g + c.weight_decay * x[kParam];
    const T sq = x[kState0] * c.alpha + c.one_minus_alpha * g * g;
    x[kState0] = sq;
    T var = sq;
    if constexpr (kCentered) {
      const T ga = lerp(x[kGradAvg], g, c.one_minus_alpha);
      x[kGradAvg] = ga;
      var = sq + T(-1) * ga * ga;
    }
    const T avg = c.eps_in_sqrt ? fk_sqrt(var + c.eps) : fk_sqrt(var) + c.eps;
    if constexpr (kMomentum) {
      const T buf = c.lr_in_momentum ? x[kState1] * c.momentum + c.lr * g / avg
                                     : x[kState1] * c.momentum + g / avg;
      x[kState1] = buf;
      x[kParam] = c.lr_in_momentum ? x[kParam] - buf : x[kParam] + c.neg_lr * buf;
    } else {
      x[kParam] = x[kParam] + c.neg_lr * g / avg;
    }
  }
};

}  // namespace fusekit
