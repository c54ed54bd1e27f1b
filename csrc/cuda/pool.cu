// CUDA max/avg pooling (reference: csrc/cpu/pool.cpp; both run pool_elems.h). One thread
// per output element forward and per input element backward (a deterministic gather), in
// one launch for the whole batch; 64-bit indices.
#include <cuda_runtime.h>

#include <algorithm>

#include "cuda/check.h"
#include "fusekit/pool_args.h"
#include "fusekit/pool_elems.h"

namespace fusekit::cuda {
namespace {

constexpr int kThreads = 256;

template <class S>
__global__ void pool_kernel(PoolOp op, const Pool2dParams q, const S* in, S* out, int64_t* idx, const S* gout,
                            S* gin) {
  const int64_t in_sz = q.h * q.w, out_sz = q.oh * q.ow;
  const bool fwd = op == PoolOp::MaxForward || op == PoolOp::AvgForward;
  const int64_t per_plane = fwd ? out_sz : in_sz;
  const int64_t total = q.n * q.c * per_plane;
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < total;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t p = e / per_plane, r = e % per_plane;
    switch (op) {
      case PoolOp::MaxForward:
        max_fwd<S>(q, in + p * in_sz, out + p * out_sz, idx + p * out_sz, r / q.ow, r % q.ow);
        break;
      case PoolOp::MaxBackward:
        max_bwd<S>(q, gout + p * out_sz, idx + p * out_sz, gin + p * in_sz, r / q.w, r % q.w);
        break;
      case PoolOp::AvgForward:
        avg_fwd<S>(q, in + p * in_sz, out + p * out_sz, r / q.ow, r % q.ow);
        break;
      case PoolOp::AvgBackward:
        avg_bwd<S>(q, gout + p * out_sz, gin + p * in_sz, r / q.w, r % q.w);
        break;
    }
  }
}

}  // namespace

void pool2d(PoolOp op, const PoolArgs& a) {
  const Pool2dParams& q = a.q;
  const bool fwd = op == PoolOp::MaxForward || op == PoolOp::AvgForward;
  const int64_t total = q.n * q.c * (fwd ? q.oh * q.ow : q.h * q.w);
  if (total == 0) return;
  DeviceGuard guard(a.device);
  const int grid = static_cast<int>(std::min<int64_t>((total + kThreads - 1) / kThreads, sm_count(a.device) * 32));
  auto stream = reinterpret_cast<cudaStream_t>(a.stream);
  dispatch_dtype(a.dtype, [&](auto s) {
    using S = decltype(s);
    pool_kernel<S><<<grid, kThreads, 0, stream>>>(
        op, q, reinterpret_cast<const S*>(a.in), reinterpret_cast<S*>(a.out), reinterpret_cast<int64_t*>(a.indices),
        reinterpret_cast<const S*>(a.grad_out), reinterpret_cast<S*>(a.grad_in));
  });
  FK_CUDA_CHECK(cudaGetLastError());
}

}  // namespace fusekit::cuda
