// Vector norms over many tensors (torch.nn.utils.get_total_norm semantics) and the clip
// coefficient min(1, max_norm / (total + 1e-6)) rounded as torch rounds it.
//
// The one summation order, on every ISA and on the GPU (architecture.md §2.4, §2.9):
//  1. lane l (0..15) of each 256-element block accumulates element l of the block's 16 rows
//     of 16 elements, in row order, from the identity (a row cut short by the end of the
//     tensor adds only its elements);
//  2. the 16 lanes combine as an aligned pairwise tree: the block's value;
//  3. the tensor's blocks combine as one aligned pairwise tree (adjacent pairs level by
//     level; a node without a right child passes the left one up), in the accumulation type
//     (float, or double for float64);
//  4. the tensors' norms combine in a tree in double (norm_finish.h).
// A chunk (kNormChunkElems = 64 blocks) is a subtree of 3, so the CPU (norm_chunk per chunk,
// then a tree over a tensor's chunks) and the GPU (a thread owns kNormThreadLanes lanes of a
// block, shuffles and shared memory finish the chunk's subtree, a block-wide tree combines a
// tensor's chunks) get the same bits; norm_chunk_partials(gpu_order=True) replays the GPU's
// decomposition on the host for the tests. Only |x|^p for p outside {1, 2, inf} uses each
// side's pow() and may differ in the last bits.
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

// Node i of the next level of an aligned pairwise tree over v[0..n): v[2i] with v[2i+1],
// or v[2i] alone when 2i + 1 == n. Level by level this is the order of every tree here; the
// GPU computes the nodes of a level in parallel.
template <NormKind K, class A, class V> FK_HOST_DEVICE A tree_node(const V* v, int64_t n, int64_t i) {
  return 2 * i + 1 < n ? norm_combine<K>(A(v[2 * i]), A(v[2 * i + 1])) : A(v[2 * i]);
}

// Pairwise (tree) combine of v[0..n) in place: a fixed order with O(log n) rounding growth.
// Returns the result (identity for n == 0).
template <NormKind K, class A, class V> FK_HOST_DEVICE A tree_combine(V* v, int64_t n) {
  if (n == 0) return norm_identity<K, A>();
  for (; n > 1; n = (n + 1) / 2)
    for (int64_t i = 0; i < (n + 1) / 2; ++i) v[i] = V(tree_node<K, A>(v, n, i));  // reads 2i >= i: in place
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

// The GPU's share of a block per thread: kNormThreadLanes<S> adjacent lanes, so one row of
// them is one 16-byte load (two for float64).
template <class S> constexpr int kNormThreadLanes = sizeof(S) == 2 ? 8 : 4;

// One row step of a thread's lane group: lane l < count takes element vals[l].
template <NormKind K, int L, class A> FK_HOST_DEVICE void norm_row_step(A* acc, const A* vals, int count, A p) {
  for (int l = 0; l < L; ++l)
    if (l < count) acc[l] = norm_combine<K>(acc[l], norm_elem<K>(vals[l], p));
}

// The GPU thread's lanes [q*L, q*L+L) of the block at x (n valid elements from x): rows in
// order, then the lanes' subtree of the block's lane tree.
template <NormKind K, int L, class S>
FK_HOST_DEVICE compute_t<S> norm_lane_group(const S* x, int64_t n, int q, compute_t<S> p) {
  using A = compute_t<S>;
  const int m = n < kNormBlock ? static_cast<int>(n) : static_cast<int>(kNormBlock);  // the block's elements
  A acc[L], vals[L];
  for (int l = 0; l < L; ++l) acc[l] = norm_identity<K, A>();
#if defined(__CUDA_ARCH__)
#pragma unroll 1  // the kernels' rare path (a block's tail, misaligned tensors): no register cost
#endif
  for (int r = 0; r < kNormLanes && r * kNormLanes + q * L < m; ++r) {
    const int e0 = r * kNormLanes + q * L;
    const int count = m - e0 < L ? m - e0 : L;
    for (int l = 0; l < count; ++l) vals[l] = load(x, e0 + l);
    norm_row_step<K, L>(acc, vals, count, p);
  }
  return tree_combine<K, A>(acc, L);
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
