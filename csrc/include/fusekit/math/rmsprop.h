// RMSprop, torch.optim.RMSprop's for-loop semantics:
//   g = (maximize ? -g : g) + wd*p;  sq = alpha*sq + (1-alpha)*g^2
//   centered: ga = lerp(ga, g, 1-alpha), avg = sqrt(sq - ga^2) + eps; else avg = sqrt(sq) + eps
//   momentum: buf = momentum*buf + g/avg, p -= lr*buf;  else p -= lr*g/avg
// Source form (architecture.md §3) via options: eps_in_sqrt -> avg = sqrt(sq + eps);
// lr_in_momentum -> buf = momentum*buf + lr*g/avg, p -= buf; square_avg starts at 1 (Python).
#pragma once
#include "fusekit/math/common.h"

namespace fusekit {

struct RMSpropHyper {
  double alpha = 0.99, eps = 1e-8, weight_decay = 0, momentum = 0;
  bool centered = false, maximize = false, eps_in_sqrt = false, lr_in_momentum = false;
};

template <class T> struct RMSpropCoeffs {
  // eps_in, eps_out: (eps, 0) or (0, eps); buf_lr, neg_lr_buf: (1, -lr) or (lr, -1).
  // Adding 0 and multiplying by 1 are exact, so both forms share one formula.
  T sign, alpha, one_minus_alpha, eps_in, eps_out, neg_lr, buf_lr, neg_lr_buf, momentum, weight_decay;
};

struct RMSpropRule {
  using Hyper = RMSpropHyper;
  static const char* name(const Hyper&) { return "RMSprop"; }  // torch's class name, for messages
  template <class T> using Coeffs = RMSpropCoeffs<T>;
  // bit 0: momentum buffer, bit 1: centered grad_avg, bit 2: weight decay,
  // bit 3: centered with lerp weight 1-alpha >= 0.5. Slots: p, g, square_avg, [buf], [grad_avg]
  static constexpr int kVariants = 16;
  static int variant(const Hyper& h) {
    return (h.momentum > 0 ? 1 : 0) | (h.centered ? 2 : 0) | (h.weight_decay != 0 ? 4 : 0) |
           (h.centered && lerp_large(1.0 - h.alpha) ? 8 : 0);
  }
  static constexpr int slots(int v) { return 3 + (v & 1) + ((v >> 1) & 1); }
  // bit 3 (large lerp weight) is set only with centered (bit 1).
  static constexpr bool reachable(int v) { return (v & 8) == 0 || (v & 2) != 0; }

  FK_HOST_DEVICE static void advance(const Hyper&, StepState& s) { s.step += 1.f; }

  template <class T> FK_HOST_DEVICE static Coeffs<T> coeffs(const Hyper& h, double lr, const StepState&) {
    return {T(h.maximize ? -1.0 : 1.0), T(h.alpha), T(1.0 - h.alpha),
            T(h.eps_in_sqrt ? h.eps : 0.0), T(h.eps_in_sqrt ? 0.0 : h.eps), T(-lr),
            T(h.lr_in_momentum ? lr : 1.0), T(h.lr_in_momentum ? -1.0 : -lr), T(h.momentum), T(h.weight_decay)};
  }

  template <int V, class T> FK_HOST_DEVICE static void apply(const Coeffs<T>& c, T* x) {
    constexpr bool kMomentum = (V & 1) != 0, kCentered = (V & 2) != 0;
    constexpr int kGradAvg = kState0 + 1 + (kMomentum ? 1 : 0);
    T g = c.sign * x[kGrad];
    if constexpr ((V & 4) != 0) g = fk_fma(x[kParam], c.weight_decay, g);  // grad.add(param, alpha=wd)
    const T sq = x[kState0] * c.alpha + c.one_minus_alpha * g * g;
    x[kState0] = sq;
    T var = sq;
    if constexpr (kCentered) {
      const T ga = lerp<(V & 8) != 0>(x[kGradAvg], g, c.one_minus_alpha);
      x[kGradAvg] = ga;
      var = sq + T(-1) * ga * ga;
    }
    const T avg = fk_sqrt(var + c.eps_in) + c.eps_out;
    if constexpr (kMomentum) {
      const T buf = x[kState1] * c.momentum + c.buf_lr * g / avg;
      x[kState1] = buf;
      x[kParam] = fk_fma(buf, c.neg_lr_buf, x[kParam]);  // param.add_(buf, alpha=-lr)
    } else {
      x[kParam] = x[kParam] + c.neg_lr * g / avg;
    }
  }
};

}  // namespace fusekit
