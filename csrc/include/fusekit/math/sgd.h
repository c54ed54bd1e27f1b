// SGD with momentum / dampening / Nesterov, torch.optim.SGD's for-loop semantics:
//   g = (maximize ? -g : g) + wd * p
//   buf = first ? g : momentum * buf + (1 - dampening) * g
//   g = nesterov ? g + momentum * buf : buf;   p -= lr * g
// DESIGN.md §3 (SGD, momentum v <- gamma v + g, Nesterov) are the dampening = 0 cases.
#pragma once
#include "fusekit/math/common.h"

namespace fusekit {

struct SGDHyper {
  double momentum = 0, dampening = 0, weight_decay = 0;
  bool nesterov = false, maximize = false;
};

template <class T> struct SGDCoeffs {
  T neg_lr, momentum, one_minus_dampening, weight_decay;
  bool first, nesterov, maximize, use_wd;
};

struct SGDRule {
  using Hyper = SGDHyper;
  template <class T> using Coeffs = SGDCoeffs<T>;
  static constexpr int kVariants = 2;  // 0: no momentum (p, g); 1: momentum (p, g, buf)
  static int variant(const Hyper& h) { return h.momentum != 0 ? 1 : 0; }
  static constexpr int slots(int v) { return v ? 3 : 2; }

  FK_HOST_DEVICE static void advance(const Hyper&, StepState&) {}

  template <class T> FK_HOST_DEVICE static Coeffs<T> coeffs(const Hyper& h, double lr, const StepState& s) {
    return {T(-lr), T(h.momentum), T(1.0 - h.dampening), T(h.weight_decay),
            s.first, h.nesterov, h.maximize, h.weight_decay != 0};
  }

  template <int V, class T> FK_HOST_DEVICE static void apply(const Coeffs<T>& c, T* x) {
    T g = c.maximize ? -x[kGrad] : x[kGrad];
    if (c.use_wd) g = g + c.weight_decay * x[kParam];
    if constexpr (V == 1) {
      const T buf = c.first ? g : x[kState0] * c.momentum + c.one_minus_dampening * g;
      x[kState0] = buf;
      g = c.nesterov ? g + c.momentum * buf : buf;
    }
    x[kParam] = x[kParam] + c.neg_lr * g;
  }
};

}  // namespace fusekit
