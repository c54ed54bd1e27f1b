// Multi-tensor norm on the GPU (reference: csrc/cpu/norm.cpp + norm_isa.cpp), in the one
// summation order of math/norm.h, so the CPU tests pin these bits (test_norm_order.py
// replays this decomposition on the host with the same functions):
//  1. partials: per dtype, one launch of the shared chunk table (fusekit/multi_tensor.h).
//     A chunk of 64 blocks x 16 lanes x 16 rows is reduced by 256 threads (128 for the
//     16-bit types, two chunks at once): a thread owns kNormThreadLanes adjacent lanes of one
//     block and walks its 16 rows with 8 independent 16-byte loads in flight (4 for the
//     16-bit types and the p-norm), then warp
//     shuffles and a shared-memory level finish the chunk's subtree -> workspace[chunk].
//  2. per-tensor tree: one block per tensor combines its chunk partials level by level in
//     shared memory (segments of 512 in place for long tensors) -> norms[tensor].
//  3. total: one block combines the tensors' terms the same way, then the tail of
//     norm_tail.h (unscaled total, clip coefficient, telemetry). Nothing is read back.
#include <cuda_runtime.h>

#include <algorithm>
#include <memory>
#include <vector>

#include "cuda/check.h"
#include "fusekit/multi_tensor.h"
#include "fusekit/norm_args.h"
#include "fusekit/norm_finish.h"
#include "fusekit/norm_tail.h"

namespace fusekit::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kMinBlocks = 4;          // caps registers at 64 per thread
constexpr int kTreeThreads = 256;      // phases 2 and 3
constexpr int kSegment = 2 * kTreeThreads;
constexpr int kFinishTensors = 1024;
constexpr int kBlocksPerChunk = static_cast<int>(kNormChunkElems / kNormBlock);  // 64

template <class S> struct PartialsLaunch {
  ChunkTable<1, int64_t> table;  // extra: workspace index of the tensor's chunk 0
  double p;
};

// One level of an aligned pairwise tree across lanes d apart (d = 1, 2, 4, ...): both lanes
// of a pair end up with the node; an absent right child passes the left one up (present
// values are a prefix, so an absent left child has an absent right one).
template <NormKind K, class A> __device__ __forceinline__ void shuffle_level(A& v, bool& present, int d) {
  const A o = __shfl_xor_sync(0xffffffffu, v, d);
  const bool op = __shfl_xor_sync(0xffffffffu, static_cast<int>(present), d) != 0;
  const bool right = (threadIdx.x & d) != 0;
  const A l = right ? o : v, r = right ? v : o;
  const bool lp = right ? op : present, rp = right ? present : op;
  v = rp ? norm_combine<K>(l, r) : l;
  present = lp;
}

// The thread's lanes of a full 256-element block with 16-byte loads: norm_lane_group's
// arithmetic, in the same order, with several 16-byte loads in flight.
template <NormKind K, class S> __device__ __forceinline__ compute_t<S> full_lane_group(const S* x, compute_t<S> p) {
  using A = compute_t<S>;
  constexpr int L = kNormThreadLanes<S>;
  constexpr int W = L * static_cast<int>(sizeof(S)) / 16;  // 16-byte loads per row: 1, or 2 for float64
  // Rows in flight: 8 loads of 16 bytes for float32 and float64 (2 per row), 4 for the
  // 16-bit types (8 lanes to convert per row) and the float32 p-norm, 2 for the float64
  // p-norm (pow() needs the registers): within 64 registers on sm_75 to sm_90.
  constexpr int R = K != NormKind::P ? (sizeof(S) == 2 ? 4 : 8 / W) : (W == 1 ? 4 : 1);
  A acc[L];
#pragma unroll
  for (int l = 0; l < L; ++l) acc[l] = norm_identity<K, A>();
#pragma unroll
  for (int r0 = 0; r0 < kNormLanes; r0 += R) {
    uint4 raw[R][W];
#pragma unroll
    for (int r = 0; r < R; ++r)
#pragma unroll
      for (int w = 0; w < W; ++w)
        raw[r][w] = __ldg(reinterpret_cast<const uint4*>(x + (r0 + r) * kNormLanes) + w);
#pragma unroll
    for (int r = 0; r < R; ++r) {
      const S* row = reinterpret_cast<const S*>(raw[r]);
      A vals[L];
#pragma unroll
      for (int l = 0; l < L; ++l) vals[l] = load(row, l);
      norm_row_step<K, L>(acc, vals, L, p);
    }
  }
  return tree_combine<K, A>(acc, L);
}

template <NormKind K, class S>
__global__ void __launch_bounds__(kThreads, kMinBlocks) partials_kernel(const __grid_constant__ PartialsLaunch<S> a,
                                                                        double* ws) {
  using A = compute_t<S>;
  constexpr int L = kNormThreadLanes<S>;
  constexpr int kGroups = kNormLanes / L;                  // threads per block of 256 elements
  constexpr int kPerChunk = kBlocksPerChunk * kGroups;     // threads per chunk: 256 or 128
  constexpr int kChunksAtOnce = kThreads / kPerChunk;      // 1 or 2
  constexpr int kWarps = kPerChunk / 32;
  static_assert(kPerChunk % 32 == 0 && kThreads % kPerChunk == 0, "a chunk is whole warps");
  __shared__ A warp_val[kThreads / 32];
  __shared__ bool warp_present[kThreads / 32];
  const A p = static_cast<A>(a.p);
  const int g = threadIdx.x / kPerChunk, t = threadIdx.x % kPerChunk;
  const int b = t / kGroups, q = t % kGroups;
  // The block's chunk range waits in shared memory (it is uniform), leaving the registers
  // to the loads in flight (no spills on sm_75 either).
  __shared__ int range[2];
  if (threadIdx.x == 0) block_chunk_range(blockIdx.x, gridDim.x, a.table.nchunks, range[0], range[1]);
  __syncthreads();
  const volatile int* vr = range;
  for (int c0 = vr[0]; c0 < vr[1]; c0 += kChunksAtOnce) {
    const int c = c0 + g, hi = vr[1];
    A v = norm_identity<K, A>();
    bool present = false;
    int e = 0;
    int64_t start = 0;
    if (c < hi) {
      e = find_entry(a.table.chunk_end, a.table.nentries, c);
      int64_t len;
      chunk_elems_of(a.table, e, c, start, len);
      const S* x = static_cast<const S*>(a.table.ptr[0][e]) + start + b * kNormBlock;
      const int64_t n = len - b * kNormBlock;  // elements of this thread's block
      present = n > 0;
      if (n >= kNormBlock && reinterpret_cast<uintptr_t>(a.table.ptr[0][e]) % 16 == 0)
        v = full_lane_group<K, S>(x + q * L, p);
      else if (present)
        v = norm_lane_group<K, L, S>(x, n, q, p);
    }
#pragma unroll
    for (int d = 1; d < 32; d *= 2) shuffle_level<K>(v, present, d);
    const int warp = threadIdx.x / 32;
    if (threadIdx.x % 32 == 0) {
      warp_val[warp] = v;
      warp_present[warp] = present;
    }
    __syncthreads();
    if (t < 32) {  // the chunk's first warp combines its warps' subtrees
      const int w = t < kWarps ? g * kWarps + t : g * kWarps;
      v = warp_val[w];
      present = t < kWarps && warp_present[w];
#pragma unroll
      for (int d = 1; d < kWarps; d *= 2) shuffle_level<K>(v, present, d);
      if (t == 0 && c < hi) ws[a.table.extra[e] + start / kNormChunkElems] = static_cast<double>(v);
    }
    __syncthreads();
  }
}

// Aligned pairwise tree over sh[0..n), n <= 2 * blockDim.x, level by level (tree_node,
// as the CPU's tree_combine). All threads call it; returns the root (identity for n == 0).
template <NormKind K, class A> __device__ A block_tree(A* sh, int n) {
  for (int m = n; m > 1; m = (m + 1) / 2) {
    const int i = threadIdx.x;
    const bool w = i < (m + 1) / 2;
    A v{};
    if (w) v = tree_node<K, A>(sh, m, i);
    __syncthreads();
    if (w) sh[i] = v;
    __syncthreads();
  }
  const A r = n > 0 ? sh[0] : norm_identity<K, A>();
  __syncthreads();
  return r;
}

// Tree over v[0..n) in precision A (v: doubles in global memory, overwritten): segments of
// kSegment are subtrees of the whole, so their roots, written in place, form the next level.
template <NormKind K, class A> __device__ A segmented_tree(double* v, int64_t n, A* sh) {
  while (n > kSegment) {
    const int64_t nseg = (n + kSegment - 1) / kSegment;
    for (int64_t s = 0; s < nseg; ++s) {
      const int64_t base = s * kSegment;
      const int m = static_cast<int>(n - base < kSegment ? n - base : kSegment);
      for (int i = threadIdx.x; i < m; i += blockDim.x) sh[i] = static_cast<A>(v[base + i]);
      __syncthreads();
      const A r = block_tree<K, A>(sh, m);
      if (threadIdx.x == 0) v[s] = static_cast<double>(r);  // s <= base: segment s is consumed
      __syncthreads();
    }
    n = nseg;
  }
  for (int i = threadIdx.x; i < n; i += blockDim.x) sh[i] = static_cast<A>(v[i]);
  __syncthreads();
  return block_tree<K, A>(sh, static_cast<int>(n));
}

struct FinishBatch {
  int64_t first_chunk[kFinishTensors];  // workspace index of the tensor's chunk 0
  int64_t nchunks[kFinishTensors];
  int8_t dtype[kFinishTensors];
  int64_t first_tensor;
  int32_t n;
};

template <NormKind K>
__global__ void __launch_bounds__(kTreeThreads, 1) tensor_norms_kernel(const __grid_constant__ FinishBatch b, double p,
                                                                    double* ws, double* norms) {
  __shared__ double sh[kSegment];
  for (int i = blockIdx.x; i < b.n; i += gridDim.x) {
    const DType d = static_cast<DType>(b.dtype[i]);
    double* v = ws + b.first_chunk[i];
    const double r = d == DType::Float64
                         ? segmented_tree<K, double>(v, b.nchunks[i], sh)
                         : static_cast<double>(segmented_tree<K, float>(v, b.nchunks[i], reinterpret_cast<float*>(sh)));
    if (threadIdx.x == 0) norms[b.first_tensor + i] = tensor_norm_from_tree(K, p, d, r);
  }
}

// The total over norms[0..n) (scratch: ws), then its tail (unscaled total, clip
// coefficient, telemetry: norm_tail.h, as on the CPU).
template <NormKind K>
__global__ void __launch_bounds__(kTreeThreads, 1)
    total_kernel(double p, DType d, const double* norms, double* ws, int64_t n, double* total, const NormTail tail) {
  __shared__ double sh[kSegment];
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) ws[i] = total_term(K, p, norms[i]);
  __syncthreads();
  const double v = segmented_tree<K, double>(ws, n, sh);
  if (threadIdx.x != 0) return;
  const double t = round_to(d, norm_finish(K, v, p));
  *total = t;
  norm_tail(tail, t);
}

template <NormKind K, class S>
void launch_partials(const NormArgs& a, DType dtype, const std::vector<int64_t>& chunk0, cudaStream_t stream,
                     double* ws) {
  std::vector<int64_t> idx, numels;  // this dtype's tensors, in call order
  for (int64_t i = 0; i < a.count; ++i)
    if (a.dtypes[i] == static_cast<int32_t>(dtype) && a.numels[i] > 0) {
      idx.push_back(i);
      numels.push_back(a.numels[i]);
    }
  if (idx.empty()) return;
  constexpr int kPerChunk = kBlocksPerChunk * (kNormLanes / kNormThreadLanes<S>);
  const int max_grid = sm_count(a.device) * kMinBlocks;
  const LaunchLimits lim = launch_limits(kTableEntries);
  auto l = std::make_unique<PartialsLaunch<S>>();
  l->p = a.norm_type;
  for (const LaunchBatch& b : plan_launches(numels.data(), static_cast<int64_t>(numels.size()), kNormChunkElems,
                                            lim.max_entries, lim.max_chunks)) {
    fill_table(
        l->table, b, numels.data(), kNormChunkElems,
        [&](int, int64_t t) { return reinterpret_cast<void*>(a.ptrs[idx[t]]); },
        [&](int64_t t) { return chunk0[idx[t]]; });
    const int64_t units = (l->table.nchunks + kThreads / kPerChunk - 1) / (kThreads / kPerChunk);
    partials_kernel<K, S><<<launch_grid(units, max_grid), kThreads, 0, stream>>>(*l, ws);
    FK_CUDA_CHECK(cudaGetLastError());
  }
}

template <NormKind K> void norms_of_kind(const NormArgs& a, cudaStream_t stream) {
  auto* ws = reinterpret_cast<double*>(a.workspace);
  auto* norms = reinterpret_cast<double*>(a.norms_out);
  std::vector<int64_t> chunk0(a.count), nchunks(a.count);
  int64_t total_chunks = 0;
  for (int64_t i = 0; i < a.count; ++i) {
    chunk0[i] = total_chunks;
    nchunks[i] = (a.numels[i] + kNormChunkElems - 1) / kNormChunkElems;
    total_chunks += nchunks[i];
  }
  launch_partials<K, float>(a, DType::Float32, chunk0, stream, ws);
  launch_partials<K, double>(a, DType::Float64, chunk0, stream, ws);
  launch_partials<K, Half>(a, DType::Float16, chunk0, stream, ws);
  launch_partials<K, BFloat16>(a, DType::BFloat16, chunk0, stream, ws);
  for (int64_t s = 0; s < a.count; s += kFinishTensors) {
    auto b = std::make_unique<FinishBatch>();
    b->first_tensor = s;
    b->n = static_cast<int32_t>(std::min<int64_t>(kFinishTensors, a.count - s));
    for (int i = 0; i < b->n; ++i) {
      b->first_chunk[i] = chunk0[s + i];
      b->nchunks[i] = nchunks[s + i];
      b->dtype[i] = static_cast<int8_t>(a.dtypes[s + i]);
    }
    tensor_norms_kernel<K><<<b->n, kTreeThreads, 0, stream>>>(*b, a.norm_type, ws, norms);
    FK_CUDA_CHECK(cudaGetLastError());
  }
  total_kernel<K><<<1, kTreeThreads, 0, stream>>>(a.norm_type, a.total_dtype, norms, ws, a.count,
                                                   reinterpret_cast<double*>(a.total_out), norm_tail_of(a));
  FK_CUDA_CHECK(cudaGetLastError());
}

}  // namespace

void tensor_norms(const NormArgs& a) {
  DeviceGuard guard(a.device);
  const auto stream = reinterpret_cast<cudaStream_t>(a.stream);
  switch (norm_kind(a.norm_type)) {
    case NormKind::L1: return norms_of_kind<NormKind::L1>(a, stream);
    case NormKind::L2: return norms_of_kind<NormKind::L2>(a, stream);
    case NormKind::Inf: return norms_of_kind<NormKind::Inf>(a, stream);
    case NormKind::NegInf: return norms_of_kind<NormKind::NegInf>(a, stream);
    default: return norms_of_kind<NormKind::P>(a, stream);
  }
}

}  // namespace fusekit::cuda
