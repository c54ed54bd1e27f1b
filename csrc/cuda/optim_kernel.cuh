// Multi-tensor optimizer step on the GPU (reference: the CPU loop in
// csrc/cpu/optim_step_isa.cpp; both run step_elem(), the rule's one functor). One launch
// carries a chunk table of up to kTableEntries tensors and any number of 64 KiB chunks
// (fusekit/multi_tensor.h); each block walks a contiguous range of chunks with vector loads
// (4 elements; see step_chunk) where every slot is equally aligned, scalar heads/tails
// otherwise, 64-bit element offsets throughout.
//
// Where the coefficients come from:
//  * host: step state in host memory (non-capturable); advanced and turned into
//    coefficients on the host (host_coeffs.h), tensors grouped by identical coefficients,
//    one group per launch, the coefficients in the kernel parameter. Reading found_inf
//    then needs a host sync, as it does in torch; such a step cannot be graph-captured and
//    raises torch's error under capture.
//  * device: step state on the device (capturable / fused), or lr in device memory. A small
//    kernel advances each tensor's step (skipped when found_inf is set); each block computes
//    a tensor's coefficients once, in one thread, into shared memory, when its chunk range
//    enters that tensor. Nothing is read by the host: the step can be captured and replayed.
// SGD and the grad ops have no step state: found_inf, lr and the clip coefficient are read
// on the device with no host sync whatever `capturable` says.
#pragma once
#include <cuda_runtime.h>

#include <algorithm>
#include <climits>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <type_traits>
#include <string>
#include <vector>

#include "cuda/check.h"
#include "cuda/optim_launch.h"
#include "fusekit/host_coeffs.h"
#include "fusekit/multi_tensor.h"
#include "fusekit/optim_step.h"
#include "fusekit/step_elem.h"

namespace fusekit::cuda {

constexpr int kStepThreads = 256;
constexpr int kStepMinBlocks = 4;  // resident blocks per SM: caps registers at 64 per thread
constexpr int kAdvanceTensors = 512;

// Per-tensor scalar state of a launch: device pointers (capturable), else the values the
// host has advanced (read on the device only when lr lives there).
struct StepTensor {
  const float* step;
  const float* mu_product;
  StepState host;
};

template <class Rule, int K, class T> struct StepLaunch {
  ChunkTable<K, StepTensor> table;
  typename Rule::Hyper hyper;
  typename Rule::template Coeffs<T> coeffs;  // host path: the launch's one coefficient set
  double lr;
  const float* lr_ptr;      // lr in device memory, or nullptr
  const float* grad_scale;  // nullptr: not scaled
  const float* found_inf;   // nullptr: never skip (or the host already checked it)
  const double* clip_coef;  // nullptr: no clipping (computed in the gradients' precision)
  bool device_coeffs;
};

template <class Rule, class T, class L>
__device__ typename Rule::template Coeffs<T> coeffs_on_device(const L& a, const StepTensor& t) {
  StepState st = t.host;
  if (t.step != nullptr) st.step = *t.step;
  if (t.mu_product != nullptr) st.mu_product = *t.mu_product;
  return Rule::template coeffs<T>(a.hyper, a.lr_ptr != nullptr ? static_cast<double>(*a.lr_ptr) : a.lr, st);
}

// One element at r[k][e] (registers or memory) through step_elem.
template <class Rule, int V, bool Unscale, class S, class C>
__device__ __forceinline__ void step_at(const C& co, S (&x)[Rule::slots(V)], float scale, compute_t<S> clip) {
  using T = compute_t<S>;
  constexpr int K = Rule::slots(V);
  T v[kMaxSlots];
#pragma unroll
  for (int k = 0; k < K; ++k) v[k] = to_compute(x[k]);
  step_elem<Rule, V, Unscale>(co, v, scale, clip);
#pragma unroll
  for (int k = 0; k < K; ++k)
    if (writes_slot<Rule, V, Unscale>(k)) x[k] = from_compute<S>(v[k]);
}

// Element i of every slot, in memory.
template <class Rule, int V, bool Unscale, class S, class C>
__device__ __forceinline__ void step_one(const C& co, S* const (&p)[Rule::slots(V)], int i, float scale,
                                         compute_t<S> clip) {
  constexpr int K = Rule::slots(V);
  S x[K];
#pragma unroll
  for (int k = 0; k < K; ++k) x[k] = p[k][i];
  step_at<Rule, V, Unscale>(co, x, scale, clip);
#pragma unroll
  for (int k = 0; k < K; ++k)
    if (writes_slot<Rule, V, Unscale>(k)) p[k][i] = x[k];
}

// Elements [0, n) of one chunk, p[k] at its first element (n <= 64 KiB / sizeof(S): 32-bit
// indices). Vectors where every slot is equally aligned, scalar heads and tails otherwise.
template <class Rule, int V, class S, bool Unscale, class C>
__device__ __forceinline__ void step_chunk(const C& co, S* const (&p)[Rule::slots(V)], int n, float scale,
                                           compute_t<S> clip) {
  constexpr int K = Rule::slots(V);
  // Vectors of 4 elements (16 bytes for float32, 8 for the 16-bit types), 2 with five slots
  // (amsgrad, centered RMSprop with momentum), one float64: few enough elements in
  // registers at once for the loops to stay within 64 registers; even 4 bytes per thread
  // and slot make whole 32-byte sectors per warp.
  constexpr int kVec = sizeof(S) == 8 ? 1 : (K >= 5 ? 2 : 4);
  constexpr int kVecBytes = kVec * static_cast<int>(sizeof(S));
  using Vec = std::conditional_t<kVecBytes == 16, uint4, std::conditional_t<kVecBytes == 8, uint2, uint32_t>>;
  constexpr unsigned kAlign = kVec * sizeof(S);
  if constexpr (kVec == 1) {  // float64: co is in shared memory
#pragma unroll 1
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
      // Reload the coefficients from shared memory for each element instead of holding
      // ~8 doubles in registers across the loop: the float64 kernels stay within 64
      // registers without spilling.
      asm volatile("" ::: "memory");
      step_one<Rule, V, Unscale>(co, p, i, scale, clip);
    }
    return;
  }
  int head = n, nvec = 0;
  {  // vectors only if every slot has the same offset from a vector boundary
    const unsigned mis = static_cast<unsigned>(reinterpret_cast<uintptr_t>(p[0]) % kAlign);
    bool same = mis % sizeof(S) == 0;
#pragma unroll
    for (int k = 1; k < K; ++k) same = same && reinterpret_cast<uintptr_t>(p[k]) % kAlign == mis;
    if (same) {
      head = min(n, static_cast<int>(((kAlign - mis) % kAlign) / sizeof(S)));
      nvec = (n - head) / kVec;
    }
  }
  for (int v = threadIdx.x; v < nvec; v += blockDim.x) {
    asm volatile("" ::: "memory");  // co (shared memory) is read again below: no registers held
    const int i0 = head + v * kVec;
    alignas(16) S r[K][kVec];
#pragma unroll
    for (int k = 0; k < K; ++k) *reinterpret_cast<Vec*>(r[k]) = *reinterpret_cast<const Vec*>(p[k] + i0);
#pragma unroll
    for (int e = 0; e < kVec; ++e) {
      asm volatile("" ::: "memory");  // one element at a time, co re-read from shared memory
      S x[K];
#pragma unroll
      for (int k = 0; k < K; ++k) x[k] = r[k][e];
      step_at<Rule, V, Unscale>(co, x, scale, clip);
#pragma unroll
      for (int k = 0; k < K; ++k) r[k][e] = x[k];
    }
#pragma unroll
    for (int k = 0; k < K; ++k)
      if (writes_slot<Rule, V, Unscale>(k)) *reinterpret_cast<Vec*>(p[k] + i0) = *reinterpret_cast<const Vec*>(r[k]);
  }
  // Scalar elements: the misaligned head, then the tail after the vectors.
  const int tail0 = head + nvec * kVec;
  for (int j = threadIdx.x; j < head + (n - tail0); j += blockDim.x) {
    asm volatile("" ::: "memory");
    step_one<Rule, V, Unscale>(co, p, j < head ? j : tail0 + (j - head), scale, clip);
  }
}

template <class Rule, int V, class S, bool Unscale>
__global__ void __launch_bounds__(kStepThreads, kStepMinBlocks)
    step_kernel(const __grid_constant__ StepLaunch<Rule, Rule::slots(V), compute_t<S>> a) {
  using T = compute_t<S>;
  using C = typename Rule::template Coeffs<T>;
  constexpr int K = Rule::slots(V);
  if (a.found_inf != nullptr && *a.found_inf != 0.f) return;
  const float scale = Unscale ? *a.grad_scale : 1.f;
  const T clip = a.clip_coef != nullptr ? T(*a.clip_coef) : T(1);
  // The coefficients stay in shared memory and are re-read there for each element (see
  // step_chunk) rather than held in registers across the loop; with the chunk cursor also
  // in shared memory, the element loop has the block's whole register budget (no spills).
  __shared__ C co;
  __shared__ ChunkCursor cursor;
  __shared__ int co_entry;
  if (threadIdx.x == 0) {
    cursor = block_cursor(a.table, blockIdx.x, gridDim.x);
    co = a.coeffs;
    co_entry = -1;
  }
  __syncthreads();
  for (;;) {
    const volatile ChunkCursor& vc = cursor;  // read after the barrier, never cached
    ChunkCursor k{vc.c, vc.hi, vc.e};
    int e;
    int64_t start, len;
    const bool more = next_chunk(a.table, k, e, start, len);
    __syncthreads();  // every thread has read the cursor (and the previous chunk's coefficients)
    if (!more) break;
    if (threadIdx.x == 0) cursor = k;
    if (threadIdx.x == 0 && a.device_coeffs && e != co_entry) {  // once per tensor the block meets
      co = coeffs_on_device<Rule, T>(a, a.table.extra[e]);
      co_entry = e;
    }
    __syncthreads();  // the cursor and the coefficients are written
    S* p[K];
#pragma unroll
    for (int k2 = 0; k2 < K; ++k2) p[k2] = static_cast<S*>(a.table.ptr[k2][e]) + start;
    step_chunk<Rule, V, S, Unscale>(co, p, static_cast<int>(len), scale, clip);
  }
}

struct AdvanceBatch {
  float* step[kAdvanceTensors];
  float* mu_product[kAdvanceTensors];
  int32_t n;
};

// Capturable: each tensor's step state advances once, on the device, before any block
// reads it; a step with found_inf set advances nothing.
template <class Rule>
__global__ void advance_state_kernel(const __grid_constant__ AdvanceBatch b, const typename Rule::Hyper h,
                                     const float* found_inf) {
  if (found_inf != nullptr && *found_inf != 0.f) return;
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < b.n; i += gridDim.x * blockDim.x) {
    StepState st;
    st.step = *b.step[i];
    if (b.mu_product[i]) st.mu_product = *b.mu_product[i];
    Rule::advance(h, st);
    *b.step[i] = st.step;
    if (b.mu_product[i]) *b.mu_product[i] = st.mu_product;
  }
}

template <class Rule>
void advance_on_device(const StepArgs& a, const typename Rule::Hyper& h, cudaStream_t stream) {
  for (int64_t s = 0; s < a.count; s += kAdvanceTensors) {
    AdvanceBatch b{};
    b.n = static_cast<int32_t>(std::min<int64_t>(kAdvanceTensors, a.count - s));
    for (int i = 0; i < b.n; ++i) {
      b.step[i] = reinterpret_cast<float*>(a.steps[s + i]);
      b.mu_product[i] = a.mu_products.empty() ? nullptr : reinterpret_cast<float*>(a.mu_products[s + i]);
    }
    advance_state_kernel<Rule><<<1, kAdvanceTensors, 0, stream>>>(b, h, reinterpret_cast<const float*>(a.found_inf));
    FK_CUDA_CHECK(cudaGetLastError());
  }
}

template <class Rule, int V, class S>
void launch_variant(const StepArgs& a, const typename Rule::Hyper& h, cudaStream_t stream) {
  using T = compute_t<S>;
  using C = typename Rule::template Coeffs<T>;
  constexpr int K = Rule::slots(V);
  using L = StepLaunch<Rule, K, T>;
  static_assert(sizeof(L) <= kMaxKernelParamBytes, "kernel parameter exceeds the 32 KiB limit");
  const bool has_state = !a.steps.empty();
  const bool device_state = has_state && a.capturable;
  std::vector<C> coeffs;
  if (has_state && !device_state) {
    if (stream_capturing(stream))  // host state would be baked into the graph (torch raises too)
      throw std::runtime_error(std::string("Attempting CUDA graph capture of step() for an instance of ") +
                               Rule::name(h) + " but param_groups' capturable is False.");
    if (a.found_inf) {  // the step state lives on the host here, so the skip decision must too
      float f = 0.f;
      FK_CUDA_CHECK(cudaMemcpyAsync(&f, reinterpret_cast<const void*>(a.found_inf), sizeof(float),
                                    cudaMemcpyDeviceToHost, stream));
      FK_CUDA_CHECK(cudaStreamSynchronize(stream));
      if (f != 0.f) return;
    }
  }
  if (device_state) advance_on_device<Rule>(a, h, stream);
  else coeffs = advance_on_host<Rule, T>(a, h);
  const bool device_coeffs = device_state || a.lr_ptr != 0;
  static_assert(64 * 1024 / sizeof(S) <= INT32_MAX, "chunk-local indices are 32-bit");

  std::vector<StepTensor> tensors(a.count);
  for (int64_t i = 0; i < a.count; ++i) {
    StepTensor& t = tensors[i];
    const auto* step = a.steps.empty() ? nullptr : reinterpret_cast<const float*>(a.steps[i]);
    const auto* mu = a.mu_products.empty() ? nullptr : reinterpret_cast<const float*>(a.mu_products[i]);
    t.step = device_state ? step : nullptr;
    t.mu_product = device_state ? mu : nullptr;
    t.host = StepState{};
    if (!device_state && step) t.host.step = *step;  // already advanced on the host
    if (!device_state && mu) t.host.mu_product = *mu;
    t.host.first = !a.first.empty() && a.first[i];
  }

  // Host coefficients: one launch group per distinct set (normally one: a group's tensors
  // share their step); device coefficients: one group.
  std::vector<int64_t> order(a.count);
  for (int64_t i = 0; i < a.count; ++i) order[i] = i;
  std::vector<std::pair<int64_t, int64_t>> groups;  // [begin, end) of order
  if (device_coeffs) {
    groups.push_back({0, a.count});
  } else {
    std::stable_sort(order.begin(), order.end(), [&](int64_t x, int64_t y) {
      return std::memcmp(&coeffs[x], &coeffs[y], sizeof(C)) < 0;
    });
    for (int64_t i = 0; i < a.count;) {
      int64_t j = i + 1;
      while (j < a.count && std::memcmp(&coeffs[order[i]], &coeffs[order[j]], sizeof(C)) == 0) ++j;
      groups.push_back({i, j});
      i = j;
    }
  }

  const int max_grid = sm_count(a.device) * kStepMinBlocks;
  const LaunchLimits lim = launch_limits(kTableEntries);
  const int64_t celems = chunk_elems(a.dtype);
  auto launch = std::make_unique<L>();
  for (const auto& grp : groups) {
    const int64_t gb = grp.first, ge = grp.second;
    std::vector<int64_t> numels;
    for (int64_t i = gb; i < ge; ++i) numels.push_back(a.numels[order[i]]);
    for (const LaunchBatch& b : plan_launches(numels.data(), ge - gb, celems, lim.max_entries, lim.max_chunks)) {
      L& l = *launch;
      fill_table(
          l.table, b, numels.data(), celems,
          [&](int k, int64_t t) { return reinterpret_cast<void*>(a.ptrs[k * a.count + order[gb + t]]); },
          [&](int64_t t) { return tensors[order[gb + t]]; });
      l.hyper = h;
      l.coeffs = device_coeffs ? C{} : coeffs[order[gb]];
      l.lr = a.lr;
      l.lr_ptr = reinterpret_cast<const float*>(a.lr_ptr);
      l.grad_scale = reinterpret_cast<const float*>(a.grad_scale);
      l.found_inf = has_state && !device_state ? nullptr : reinterpret_cast<const float*>(a.found_inf);
      l.clip_coef = reinterpret_cast<const double*>(a.clip_coef);
      l.device_coeffs = device_coeffs;
      const int grid = launch_grid(l.table.nchunks, max_grid);
      if constexpr (K > 1) {
        if (a.grad_scale) {
          step_kernel<Rule, V, S, true><<<grid, kStepThreads, 0, stream>>>(l);
          FK_CUDA_CHECK(cudaGetLastError());
          continue;
        }
      }
      step_kernel<Rule, V, S, false><<<grid, kStepThreads, 0, stream>>>(l);
      FK_CUDA_CHECK(cudaGetLastError());
    }
  }
}

template <class Rule, int V, class S>
void dispatch_variant(const StepArgs& a, const typename Rule::Hyper& h, cudaStream_t stream) {
  if constexpr (V < Rule::kVariants) {
    if (Rule::variant(h) != V) return dispatch_variant<Rule, V + 1, S>(a, h, stream);
    if constexpr (Rule::reachable(V)) launch_variant<Rule, V, S>(a, h, stream);
  }
}

template <class Rule, class S> void step_typed(const StepArgs& a, const typename Rule::Hyper& h, cudaStream_t stream) {
  dispatch_variant<Rule, 0, S>(a, h, stream);
}

}  // namespace fusekit::cuda

// One (rule, storage type) pair per translation unit (generated by CMakeLists.txt), so the
// kernels build in parallel.
#define FK_STEP_INSTANTIATE(Rule, S)                                                                       \
  namespace fusekit::cuda {                                                                                \
  template void step_typed<Rule, S>(const StepArgs&, const Rule::Hyper&, cudaStream_t);                   \
  }
