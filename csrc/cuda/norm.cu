// Multi-tensor norm on the GPU (reference: the CPU path in csrc/cpu/norm.cpp, same
// chunking and combine order). Kernel 1 reduces each 16K-element chunk in one block
// (strided per-thread sums, then a fixed shared-memory tree: deterministic, no atomics)
// into workspace[chunk]; kernel 2 combines each tensor's chunks in order; kernel 3 the
// tensors in order, then the clip coefficient. Nothing is read back to the host.
#include <cuda_runtime.h>

#include <algorithm>
#include <vector>

#include "cuda/check.h"
#include "fusekit/launch_plan.h"
#include "fusekit/norm_args.h"
#include "fusekit/norm_finish.h"
#include "fusekit/norm_tail.h"

namespace fusekit::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kBatchTensors = 64;
constexpr int kBatchChunks = 512;
constexpr int kFinishTensors = 1024;

struct NormBatch {
  const void* ptr[kBatchTensors];
  int32_t dtype[kBatchTensors];
  int32_t chunk_tensor[kBatchChunks];
  int32_t chunk_len[kBatchChunks];
  int64_t chunk_start[kBatchChunks];
  int64_t first_chunk;  // global index of this batch's first chunk
  int32_t nchunks;
};

struct FinishBatch {
  int64_t first_chunk[kFinishTensors];
  int32_t nchunks[kFinishTensors];
  int8_t dtype[kFinishTensors];
  int64_t first_tensor;
  int32_t n;
};

template <NormKind K, class S>
__device__ double block_reduce(const S* x, int64_t n, double p) {
  using A = compute_t<S>;
  __shared__ A buf[kThreads];
  A v = norm_identity<K, A>();
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) v = norm_combine<K>(v, norm_elem<K>(load(x, i), A(p)));
  buf[threadIdx.x] = v;
  __syncthreads();
  for (int w = kThreads / 2; w > 0; w /= 2) {
    if (threadIdx.x < w) buf[threadIdx.x] = norm_combine<K>(buf[threadIdx.x], buf[threadIdx.x + w]);
    __syncthreads();
  }
  const double r = buf[0];
  __syncthreads();
  return r;
}

template <NormKind K>
__global__ void __launch_bounds__(kThreads) partials_kernel(const __grid_constant__ NormBatch b, double p, double* ws) {
  for (int c = blockIdx.x; c < b.nchunks; c += gridDim.x) {
    const int t = b.chunk_tensor[c];
    double r = 0;
    switch (static_cast<DType>(b.dtype[t])) {
      case DType::Float64: r = block_reduce<K>(static_cast<const double*>(b.ptr[t]) + b.chunk_start[c], b.chunk_len[c], p); break;
      case DType::Float16: r = block_reduce<K>(static_cast<const Half*>(b.ptr[t]) + b.chunk_start[c], b.chunk_len[c], p); break;
      case DType::BFloat16: r = block_reduce<K>(static_cast<const BFloat16*>(b.ptr[t]) + b.chunk_start[c], b.chunk_len[c], p); break;
      default: r = block_reduce<K>(static_cast<const float*>(b.ptr[t]) + b.chunk_start[c], b.chunk_len[c], p); break;
    }
    if (threadIdx.x == 0) ws[b.first_chunk + c] = r;
  }
}

__global__ void tensor_norms_kernel(const __grid_constant__ FinishBatch b, NormKind k, double p, double* ws,
                                    double* norms) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < b.n; i += gridDim.x * blockDim.x)
    norms[b.first_tensor + i] =
        finish_tensor_norm(k, p, static_cast<DType>(b.dtype[i]), ws + b.first_chunk[i], b.nchunks[i]);
}

// norms is read through a copy-free scratch pass: the per-tensor norms stay in norms_out,
// the total's intermediate values go to ws (free again after tensor_norms_kernel).
__global__ void total_kernel(NormKind k, double p, DType d, const double* norms, double* scratch, int64_t n,
                             double* total, const NormTail tail) {
  if (blockIdx.x != 0 || threadIdx.x != 0) return;
  for (int64_t i = 0; i < n; ++i) scratch[i] = norms[i];
  const double t = finish_total_norm(k, p, d, scratch, n);
  *total = t;
  norm_tail(tail, t);
}

template <NormKind K>
void launch_partials(const NormArgs& a, cudaStream_t stream, double* ws) {
  const int max_grid = sm_count(a.device) * 8;
  int64_t first = 0;
  for (const LaunchBatch& lb :
       plan_launches(a.numels.data(), a.count, kNormChunkElems, kBatchTensors, kBatchChunks)) {
    NormBatch b{};
    for (size_t j = 0; j < lb.tensors.size(); ++j) {
      b.ptr[j] = reinterpret_cast<const void*>(a.ptrs[lb.tensors[j]]);
      b.dtype[j] = a.dtypes[lb.tensors[j]];
    }
    b.nchunks = static_cast<int32_t>(lb.chunks.size());
    for (size_t c = 0; c < lb.chunks.size(); ++c) {
      b.chunk_tensor[c] = static_cast<int32_t>(lb.chunks[c].tensor);
      b.chunk_start[c] = lb.chunks[c].start;
      b.chunk_len[c] = static_cast<int32_t>(lb.chunks[c].len);
    }
    b.first_chunk = first;
    first += b.nchunks;
    partials_kernel<K><<<std::min(b.nchunks, max_grid), kThreads, 0, stream>>>(b, a.norm_type, ws);
    FK_CUDA_CHECK(cudaGetLastError());
  }
}

}  // namespace

void tensor_norms(const NormArgs& a) {
  DeviceGuard guard(a.device);
  auto stream = reinterpret_cast<cudaStream_t>(a.stream);
  auto* ws = reinterpret_cast<double*>(a.workspace);
  auto* norms = reinterpret_cast<double*>(a.norms_out);
  const NormKind k = norm_kind(a.norm_type);
  switch (k) {
    case NormKind::L1: launch_partials<NormKind::L1>(a, stream, ws); break;
    case NormKind::L2: launch_partials<NormKind::L2>(a, stream, ws); break;
    case NormKind::Inf: launch_partials<NormKind::Inf>(a, stream, ws); break;
    case NormKind::NegInf: launch_partials<NormKind::NegInf>(a, stream, ws); break;
    default: launch_partials<NormKind::P>(a, stream, ws); break;
  }
  int64_t chunk = 0;
  for (int64_t s = 0; s < a.count; s += kFinishTensors) {
    FinishBatch b{};
    b.first_tensor = s;
    b.n = static_cast<int32_t>(std::min<int64_t>(kFinishTensors, a.count - s));
    for (int i = 0; i < b.n; ++i) {
      b.first_chunk[i] = chunk;
      b.nchunks[i] = static_cast<int32_t>((a.numels[s + i] + kNormChunkElems - 1) / kNormChunkElems);
      b.dtype[i] = static_cast<int8_t>(a.dtypes[s + i]);
      chunk += b.nchunks[i];
    }
    tensor_norms_kernel<<<(b.n + 255) / 256, 256, 0, stream>>>(b, k, a.norm_type, ws, norms);
    FK_CUDA_CHECK(cudaGetLastError());
  }
  total_kernel<<<1, 1, 0, stream>>>(k, a.norm_type, a.total_dtype, norms, ws, a.count,
                                    reinterpret_cast<double*>(a.total_out), norm_tail_of(a));
  FK_CUDA_CHECK(cudaGetLastError());
}

}  // namespace fusekit::cuda
