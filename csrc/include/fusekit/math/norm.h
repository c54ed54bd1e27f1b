// Vector norms over many tensors (torch.nn.utils.get_total_norm semantics) and the clip
// coefficient min(1, max_norm / (total + 1e-6)) rounded as torch rounds it.
// Determinism: every chunk is reduced into kNormLanes fixed lanes (element i of a chunk goes
// to lane i % kNormLanes), lanes combine in a fixed tree, chunks of a tensor combine in
// order, tensors in order. So the result does not depend on threads, ISA or run.
#pragma once
#include <cmath>

#include "fusekit/dtype.h"
#include "fusekit/math/common.h"

namespace fusekit {

constexpr int kNormLanes = 16;

enum class NormKind : int { L1 = 0, L2 = 1, Inf = 2, NegInf = 3, P = 4 };

inline NormKind norm_kind(double p) {
  if (p == 1.0) return NormKind::L1;
  if (p == 2.0) return NormKind::L2;
  if (std::isinf(p)) return p > 0 ? NormKind::Inf : NormKind::NegInf;
  return NormKind::P;
}

template <NormKind K, class A> FK_HOST_DEVICE A norm_identity() {
  if constexpr (K == NormKind::NegInf) return A(INFINITY);
  else return A(0);
}

// The contribution of one element |x|.
template <NormKind K, class A> FK_HOST_DEVICE A norm_elem(A x, A p) {
  const A a = x < A(0) ? -x : x;
  if constexpr (K == NormKind::L2) return x * x;
  else if constexpr (K == NormKind::P) return pow(a, p);
  else return a;
}

template <NormKind K, class A> FK_HOST_DEVICE A norm_combine(A a, A b) {
  if constexpr (K == NormKind::Inf) return max_nan(a, b);
  else if constexpr (K == NormKind::NegInf) return (a != a || a < b) ? a : b;
  else return a + b;
}

// Reduced value -> norm.
template <class A> FK_HOST_DEVICE A norm_finish(NormKind k, A v, A p) {
  if (k == NormKind::L2) return sqrt(v);
  if (k == NormKind::P) return pow(v, A(1) / p);
  return v;
}

// One chunk of n elements -> its reduced value (fixed lanes, fixed tree).
template <NormKind K, class S> FK_HOST_DEVICE compute_t<S> norm_chunk(const S* x, int64_t n, compute_t<S> p) {
  using A = compute_t<S>;
  A lane[kNormLanes];
  for (int l = 0; l < kNormLanes; ++l) lane[l] = norm_identity<K, A>();
  const int64_t full = n - n % kNormLanes;
  for (int64_t i = 0; i < full; i += kNormLanes)
    for (int l = 0; l < kNormLanes; ++l) lane[l] = norm_combine<K>(lane[l], norm_elem<K>(load(x, i + l), p));
  for (int64_t i = full; i < n; ++i)
    lane[i - full] = norm_combine<K>(lane[i - full], norm_elem<K>(load(x, i), p));
  for (int w = kNormLanes / 2; w > 0; w /= 2)
    for (int l = 0; l < w; ++l) lane[l] = norm_combine<K>(lane[l], lane[l + w]);
  return lane[0];
}

template <class A> FK_HOST_DEVICE A norm_combine_rt(NormKind k, A a, A b) {
  switch (k) {
    case NormKind::Inf: return norm_combine<NormKind::Inf>(a, b);
    case NormKind::NegInf: return norm_combine<NormKind::NegInf>(a, b);
    default: return a + b;
  }
}

// Rounds a double to the precision of dtype d (torch's result dtype for norms/coefficients).
FK_HOST_DEVICE double round_to(DType d, double x) {
  switch (d) {
    case DType::Float32: return static_cast<float>(x);
    case DType::Float16: return half_to_float(float_to_half(static_cast<float>(x)));
    case DType::BFloat16: return bf16_to_float(float_to_bf16(static_cast<float>(x)));
    default: return x;
  }
}

// torch: clip_coef = max_norm / (total + 1e-6) (as total.reciprocal() * max_norm, each op
// rounded to the norm's dtype), then clamp(max=1).
FK_HOST_DEVICE double clip_coefficient(DType d, double total, double max_norm) {
  const bool f64 = d == DType::Float64;
  const double denom = round_to(d, total + (f64 ? 1e-6 : static_cast<double>(1e-6f)));
  const double m = f64 ? max_norm : static_cast<double>(static_cast<float>(max_norm));
  const double coef = round_to(d, round_to(d, 1.0 / denom) * m);
  return coef > 1.0 ? 1.0 : coef;  // NaN stays NaN
}

}  // namespace fusekit
