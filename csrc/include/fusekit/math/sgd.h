// SGD with momentum / dampening / Nesterov, torch.optim.SGD's for-loop semantics:
//   g = (maximize ? -g : g) + wd * p
//   buf = first ? g : momentum * buf + (1 - dampening) * g
//   g = nesterov ? g + momentum * buf : buf;   p -= lr * g
// (every `a + s * b` of the form x.add_(y, alpha=s) rounds once, as torch's fmadd)
// architecture.md §3 (SGD, momentum v <- gamma v + g, Nesterov) are the dampening = 0 cases.
#pragma once
#include "fusekit/math/common.h"

namespace fusekit {

struct SGDHyper {
  double momentum = 0, dampening = 0, weight_decay = 0;
  bool nesterov = false, maximize = false;
};

template <class T> struct SGDCoeffs {
  T sign, neg_lr, momentum, buf_decay, grad_weight, weight_decay;
};

struct SGDRule {
  using Hyper = SGDHyper;
  static const char* name(const Hyper&) { return "SGD"; }  // torch's class name, for messages
  template <class T> using Coeffs = SGDCoeffs<T>;
  // bit 0: momentum buffer (slots p, g, buf); bit 1: Nesterov; bit 2: weight decay
  static constexpr int kVariants = 8;
  static int variant(const Hyper& h) {
    return (h.momentum != 0 ? 1 : 0) | (h.momentum != 0 && h.nesterov ? 2 : 0) | (h.weight_decay != 0 ? 4 : 0);
  }
  static constexpr int slots(int v) { return (v & 1) ? 3 : 2; }

  // torch's SGD keeps no step; SGD8bit (bitsandbytes' layout) counts steps like the others.
  FK_HOST_DEVICE static void advance(const Hyper&, StepState& s) { s.step += 1.f; }

  // The buffer is zero-filled before its first step, so first = (0 * 0 + 1 * g) = g exactly.
  template <class T> FK_HOST_DEVICE static Coeffs<T> coeffs(const Hyper& h, double lr, const StepState& s) {
    return {T(h.maximize ? -1.0 : 1.0), T(-lr), T(h.momentum), T(s.first ? 0.0 : h.momentum),
            T(s.first ? 1.0 : 1.0 - h.dampening), T(h.weight_decay)};
  }

  // Nesterov (bit 1) is set only with momentum (bit 0).
  static constexpr bool reachable(int v) { return (v & 2) == 0 || (v & 1) != 0; }

  // Each `x.add_(y, alpha=a)` of torch's loop is one fma, as in torch's CPU kernel.
  template <int V, class T> FK_HOST_DEVICE static void apply(const Coeffs<T>& c, T* x) {
    T g = c.sign * x[kGrad];
    if constexpr ((V & 4) != 0) g = fk_fma(x[kParam], c.weight_decay, g);
    if constexpr ((V & 1) != 0) {
      const T buf = fk_fma(g, c.grad_weight, x[kState0] * c.buf_decay);
      x[kState0] = buf;
      if constexpr ((V & 2) != 0) g = fk_fma(buf, c.momentum, g);
      else g = buf;
    }
    x[kParam] = fk_fma(g, c.neg_lr, x[kParam]);
  }
};

}  // namespace fusekit
