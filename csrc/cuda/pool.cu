// CUDA max/avg pooling (reference: csrc/cpu/pool.cpp; both run pool_elems.h). One thread
// per output element forward and per input element backward (a deterministic gather), in
// one launch for the whole batch. The grid's y dimension walks the planes and x the
// positions inside a plane, so the per-element index split is a 32-bit division (a plane
// below 2^31 elements, always in practice; larger planes take a 64-bit twin).
#include <cuda_runtime.h>

#include <algorithm>
#include <type_traits>

#include "cuda/check.h"
#include "fusekit/pool_args.h"
#include "fusekit/pool_elems.h"

namespace fusekit::cuda {
namespace {

constexpr int kThreads = 256;

template <PoolOp op, class S, class I>
__global__ void pool_kernel(const Pool2dParams q, const S* in, S* out, int64_t* idx, const S* gout, S* gin) {
  const int64_t in_sz = q.h * q.w, out_sz = q.oh * q.ow;
  constexpr bool fwd = op == PoolOp::MaxForward || op == PoolOp::AvgForward;
  const I per_plane = static_cast<I>(fwd ? out_sz : in_sz);
  const I cols = static_cast<I>(fwd ? q.ow : q.w);
  const int64_t planes = q.n * q.c;
  for (int64_t p = blockIdx.y; p < planes; p += gridDim.y) {
    for (I r = static_cast<I>(blockIdx.x) * blockDim.x + threadIdx.x; r < per_plane;
         r += static_cast<I>(gridDim.x) * blockDim.x) {
      const I row = r / cols, col = r - row * cols;
      if constexpr (op == PoolOp::MaxForward) max_fwd<S>(q, in + p * in_sz, out + p * out_sz, idx + p * out_sz, row, col);
      if constexpr (op == PoolOp::MaxBackward) max_bwd<S>(q, gout + p * out_sz, idx + p * out_sz, gin + p * in_sz, row, col);
      if constexpr (op == PoolOp::AvgForward) avg_fwd<S>(q, in + p * in_sz, out + p * out_sz, row, col);
      if constexpr (op == PoolOp::AvgBackward) avg_bwd<S>(q, gout + p * out_sz, gin + p * in_sz, row, col);
    }
  }
}

}  // namespace

void pool2d(PoolOp op, const PoolArgs& a) {
  const Pool2dParams& q = a.q;
  const bool fwd = op == PoolOp::MaxForward || op == PoolOp::AvgForward;
  const int64_t per_plane = fwd ? q.oh * q.ow : q.h * q.w, planes = q.n * q.c;
  if (per_plane == 0 || planes == 0) return;
  DeviceGuard guard(a.device);
  const int64_t target = static_cast<int64_t>(sm_count(a.device)) * 32;  // blocks in flight
  const int64_t gx = std::min<int64_t>((per_plane + kThreads - 1) / kThreads, target);
  const int64_t gy = std::min<int64_t>({planes, std::max<int64_t>(1, target / gx), 65535});
  const dim3 grid(static_cast<unsigned>(gx), static_cast<unsigned>(gy));
  auto stream = reinterpret_cast<cudaStream_t>(a.stream);
  auto launch = [&](auto op_tag, auto s) {
    constexpr PoolOp op = decltype(op_tag)::value;
    using S = decltype(s);
    const auto* in = reinterpret_cast<const S*>(a.in);
    auto* out = reinterpret_cast<S*>(a.out);
    auto* idx = reinterpret_cast<int64_t*>(a.indices);
    const auto* gout = reinterpret_cast<const S*>(a.grad_out);
    auto* gin = reinterpret_cast<S*>(a.grad_in);
    if (per_plane < (int64_t{1} << 31))
      pool_kernel<op, S, uint32_t><<<grid, kThreads, 0, stream>>>(q, in, out, idx, gout, gin);
    else
      pool_kernel<op, S, int64_t><<<grid, kThreads, 0, stream>>>(q, in, out, idx, gout, gin);
  };
  dispatch_dtype(a.dtype, [&](auto s) {
    switch (op) {
      case PoolOp::MaxForward: return launch(std::integral_constant<PoolOp, PoolOp::MaxForward>{}, s);
      case PoolOp::MaxBackward: return launch(std::integral_constant<PoolOp, PoolOp::MaxBackward>{}, s);
      case PoolOp::AvgForward: return launch(std::integral_constant<PoolOp, PoolOp::AvgForward>{}, s);
      case PoolOp::AvgBackward: return launch(std::integral_constant<PoolOp, PoolOp::AvgBackward>{}, s);
    }
  });
  FK_CUDA_CHECK(cudaGetLastError());
}

}  // namespace fusekit::cuda
