// Adagrad, torch.optim.Adagrad's for-loop semantics (dense gradients):
//   g = (maximize ? -g : g) + wd*p;  clr = lr / (1 + (t-1)*lr_decay)
//   sum += g^2;  p -= clr * g / (sqrt(sum) + eps)
// architecture.md §3's AdaGrad (theta -= eps/(delta + sqrt(r)) g) is lr = eps, eps = delta.
#pragma once
#include "fusekit/math/common.h"

namespace fusekit {

struct AdagradHyper {
  double lr_decay = 0, weight_decay = 0, eps = 1e-10;
  bool maximize = false;
};

template <class T> struct AdagradCoeffs {
  T sign, neg_clr, eps, weight_decay;
};

struct AdagradRule {
  using Hyper = AdagradHyper;
  static const char* name(const Hyper&) { return "Adagrad"; }  // torch's class name, for messages
  template <class T> using Coeffs = AdagradCoeffs<T>;
  static constexpr int kVariants = 2;  // bit 0: weight decay
  static int variant(const Hyper& h) { return h.weight_decay != 0 ? 1 : 0; }
  static constexpr int slots(int) { return 3; }
  static constexpr bool reachable(int) { return true; }

  FK_HOST_DEVICE static void advance(const Hyper&, StepState& s) { s.step += 1.f; }

  template <class T> FK_HOST_DEVICE static Coeffs<T> coeffs(const Hyper& h, double lr, const StepState& s) {
    const double clr = lr / (1.0 + (static_cast<double>(s.step) - 1.0) * h.lr_decay);
    return {T(h.maximize ? -1.0 : 1.0), T(-clr), T(h.eps), T(h.weight_decay)};
  }

  template <int V, class T> FK_HOST_DEVICE static void apply(const Coeffs<T>& c, T* x) {
    T g = c.sign * x[kGrad];
    if constexpr (V != 0) g = fk_fma(x[kParam], c.weight_decay, g);  // grad.add(param, alpha=wd)
    const T sum = x[kState0] + g * g;
    x[kState0] = sum;
    x[kParam] = x[kParam] + c.neg_clr * g / (fk_sqrt(sum) + c.eps);
  }
};

}  // namespace fusekit
