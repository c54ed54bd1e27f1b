// Host side of a non-capturable step, shared by the CPU and CUDA paths: advance each
// tensor's scalar state (step, mu_product) in host memory and compute its coefficients.
#pragma once
#include <vector>

#include "fusekit/math/common.h"
#include "fusekit/step_args.h"

namespace fusekit {

template <class Rule, class T>
std::vector<typename Rule::template Coeffs<T>> advance_on_host(const StepArgs& a, const typename Rule::Hyper& h) {
  std::vector<typename Rule::template Coeffs<T>> coeffs(a.count);
  for (int64_t i = 0; i < a.count; ++i) {
    StepState st;
    float* step = a.steps.empty() ? nullptr : reinterpret_cast<float*>(a.steps[i]);
    float* mu = a.mu_products.empty() ? nullptr : reinterpret_cast<float*>(a.mu_products[i]);
    if (step) st.step = *step;
    if (mu) st.mu_product = *mu;
    st.first = !a.first.empty() && a.first[i];
    Rule::advance(h, st);
    if (step) *step = st.step;
    if (mu) *mu = st.mu_product;
    coeffs[i] = Rule::template coeffs<T>(h, a.lr, st);
  }
  return coeffs;
}

}  // namespace fusekit
