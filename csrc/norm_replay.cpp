#include "fusekit/norm_replay.h"

#include <stdexcept>

#include "fusekit/math/norm.h"
#include "fusekit/norm_args.h"

namespace fusekit {
namespace {

template <NormKind K, class S> double chunk_as_gpu(const S* x, int64_t n, compute_t<S> p) {
  using A = compute_t<S>;
  constexpr int L = kNormThreadLanes<S>;
  A blocks[kNormChunkElems / kNormBlock];
  int64_t nb = 0;
  for (int64_t s = 0; s < n; s += kNormBlock, ++nb) {
    A groups[kNormLanes / L];  // one per thread of the block's lane tree
    for (int q = 0; q < kNormLanes / L; ++q) groups[q] = norm_lane_group<K, L, S>(x + s, n - s, q, p);
    blocks[nb] = tree_combine<K, A>(groups, kNormLanes / L);
  }
  return tree_combine<K, A>(blocks, nb);  // the kernel's shuffle and shared-memory levels
}

template <NormKind K> std::vector<double> partials(uintptr_t ptr, int64_t numel, DType d, double p, bool gpu) {
  return dispatch_dtype(d, [&](auto s) {
    using S = decltype(s);
    using A = compute_t<S>;
    std::vector<double> out;
    for (int64_t c = 0; c < numel; c += kNormChunkElems) {
      const S* x = reinterpret_cast<const S*>(ptr) + c;
      const int64_t n = numel - c < kNormChunkElems ? numel - c : kNormChunkElems;
      out.push_back(gpu ? chunk_as_gpu<K, S>(x, n, A(p)) : static_cast<double>(norm_chunk<K, S>(x, n, A(p))));
    }
    return out;
  });
}

}  // namespace

std::vector<double> norm_chunk_partials(uintptr_t ptr, int64_t numel, int dtype, double p, bool gpu_order) {
  if (dtype < 0 || dtype > 3) throw std::invalid_argument("unknown dtype code");
  if (numel < 0 || (numel > 0 && ptr == 0)) throw std::invalid_argument("bad tensor");
  const DType d = static_cast<DType>(dtype);
  switch (norm_kind(p)) {
    case NormKind::L1: return partials<NormKind::L1>(ptr, numel, d, p, gpu_order);
    case NormKind::L2: return partials<NormKind::L2>(ptr, numel, d, p, gpu_order);
    case NormKind::Inf: return partials<NormKind::Inf>(ptr, numel, d, p, gpu_order);
    case NormKind::NegInf: return partials<NormKind::NegInf>(ptr, numel, d, p, gpu_order);
    default: return partials<NormKind::P>(ptr, numel, d, p, gpu_order);
  }
}

}  // namespace fusekit
