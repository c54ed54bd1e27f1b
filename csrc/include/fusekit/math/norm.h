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

// Pairwise (tree) combine of v[0..n) in place, adjacent pairs level by level: a fixed
// order with O(log n) rounding growth. Returns the result (identity for n == 0).
template <NormKind K, class A, class V> FK_HOST_DEVICE A tree_combine(V* v, int64_t n) {
  if (n == 0) return norm_identity<K, A>();
  for (; n > 1; n = (n + 1) / 2) {
    for (int64_t i = 0; i < n / 2; ++i) v[i] = V(norm_combine<K>(A(v[2 * i]), A(v[2 * i + 1])));
    if (n % 2) v[n / 2] = v[n - 1];
  }
  return A(v[0]);
}

constexpr int64_t kNormBlock = 256;  // kNormLanes lanes x 16 elements

// Up to kNormBlock elements: element i goes to lane i % kNormLanes, lanes combine as a tree.
template <NormKind K, class S> FK_HOST_DEVICE compute_t<S> norm_block(const S* x, int64_t n, compute_t<S> p) {
  using A = compute_t<S>;
  A lane[kNormLanes];
  for (int l = 0; l < kNormLanes; ++l) lane[l] = norm_identity<K, A>();
  const int64_t full = n - n % kNormLanes;
  for (int64_t i = 0; i < full; i += kNormLanes)
    for (int l = 0; l < kNormLanes; ++l) lane[l] = norm_combine<K>(lane[l], norm_elem<K>(load(x, i + l), p));
  for (int64_t i = full; i < n; ++i)
    lane[i - full] = norm_combine<K>(lane[i - full], norm_elem<K>(load(x, i), p));
  return tree_combine<K, A>(lane, kNormLanes);
}

// One chunk (<= kNormBlock * 64 elements): blocks, then a tree over the blocks.
template <NormKind K, class S> FK_HOST_DEVICE compute_t<S> norm_chunk(const S* x, int64_t n, compute_t<S> p) {
  using A = compute_t<S>;
  A blocks[64];
  int64_t nb = 0;
  for (int64_t s = 0; s < n; s += kNormBlock, ++nb)
    blocks[nb] = norm_block<K, S>(x + s, n - s < kNormBlock ? n - s : kNormBlock, p);
  return tree_combine<K, A>(blocks, nb);
}

template <class A, class V> FK_HOST_DEVICE A tree_combine_rt(NormKind k, V* v, int64_t n) {
  switch (k) {
    case NormKind::Inf: return tree_combine<NormKind::Inf, A>(v, n);
    case NormKind::NegInf: return tree_combine<NormKind::NegInf, A>(v, n);
    default: return tree_combine<NormKind::L1, A>(v, n);
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
