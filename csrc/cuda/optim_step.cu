// Multi-tensor-apply optimizer kernel (reference: the CPU loop in csrc/cpu/optim_step_isa.cpp,
// which runs the same Rule::apply). The host packs the chunk table into batches that travel
// as one __grid_constant__ kernel parameter (<= 32 KiB, CUDA >= 12.1); a grid sized to the
// SM count strides over the chunks. 16-byte vector loads where every slot is equally
// aligned, scalar heads/tails otherwise; 64-bit element offsets throughout.
// Capturable: step / mu_product / lr / grad_scale / found_inf are read from device memory
// (a tiny kernel advances the per-tensor step state first), so no host sync is needed.
#include <cuda_runtime.h>

#include <algorithm>
#include <vector>

#include "cuda/check.h"
#include "fusekit/host_coeffs.h"
#include "fusekit/launch_plan.h"
#include "fusekit/optim_step.h"

namespace fusekit::cuda {
namespace {

constexpr int kThreads = 512;
constexpr int kBlocksPerSm = 4;
constexpr int kBatchTensors = 48;
constexpr int kBatchChunks = 256;
constexpr int kAdvanceTensors = 512;

template <class Rule, class T> struct Batch {
  void* ptr[kMaxSlots][kBatchTensors];
  typename Rule::template Coeffs<T> coeffs[kBatchTensors];  // non-capturable
  float* step[kBatchTensors];                               // capturable
  float* mu_product[kBatchTensors];
  int32_t chunk_tensor[kBatchChunks];
  int32_t chunk_len[kBatchChunks];
  int64_t chunk_start[kBatchChunks];
  int32_t nchunks;
};

struct DeviceScalars {
  const float* lr_ptr;      // capturable lr, or nullptr
  double lr;
  const float* grad_scale;  // nullptr: not scaled
  const float* found_inf;   // nullptr: never skip
  const double* clip_coef;  // nullptr: no clipping (the gradients' precision: torch computes it in the norm's dtype)
  bool capturable;          // coefficients from device memory (step, lr)
};

struct AdvanceBatch {
  float* step[kAdvanceTensors];
  float* mu_product[kAdvanceTensors];
  int32_t n;
};

template <class Rule>
__global__ void advance_kernel(const __grid_constant__ AdvanceBatch b, const typename Rule::Hyper h,
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

template <class Rule, int V, class S, bool Unscale>
__device__ __forceinline__ void update(const typename Rule::template Coeffs<compute_t<S>>& c, S (&r)[kMaxSlots],
                                       compute_t<S> scale, compute_t<S> clip) {
  using T = compute_t<S>;
  constexpr int K = Rule::slots(V);
  T x[kMaxSlots];
#pragma unroll
  for (int k = 0; k < K; ++k) x[k] = to_compute(r[k]);
  if constexpr (K > 1) {
    if constexpr (Unscale) {
      x[kGrad] = x[kGrad] / scale;
      r[kGrad] = from_compute<S>(x[kGrad]);
    }
    x[kGrad] = x[kGrad] * clip;
  }
  Rule::template apply<V>(c, x);
  r[kParam] = from_compute<S>(x[kParam]);
#pragma unroll
  for (int k = kState0; k < K; ++k) r[k] = from_compute<S>(x[k]);
}

template <class Rule, int V, class S, bool Unscale>
__global__ void __launch_bounds__(kThreads)
    optim_kernel(const __grid_constant__ Batch<Rule, compute_t<S>> b, const typename Rule::Hyper h,
                 const DeviceScalars d) {
  using T = compute_t<S>;
  constexpr int K = Rule::slots(V);
  constexpr int kVec = 16 / sizeof(S);
  if (d.found_inf != nullptr && *d.found_inf != 0.f) return;
  const T scale = Unscale ? T(*d.grad_scale) : T(1);
  const T clip = d.clip_coef != nullptr ? T(*d.clip_coef) : T(1);
  for (int c = blockIdx.x; c < b.nchunks; c += gridDim.x) {
    const int t = b.chunk_tensor[c];
    typename Rule::template Coeffs<T> co;
    if (d.capturable) {
      StepState st;
      if (b.step[t]) st.step = *b.step[t];
      if (b.mu_product[t]) st.mu_product = *b.mu_product[t];
      co = Rule::template coeffs<T>(h, d.lr_ptr ? static_cast<double>(*d.lr_ptr) : d.lr, st);
    } else {
      co = b.coeffs[t];
    }
    const int64_t n = b.chunk_len[c];
    S* p[K];
#pragma unroll
    for (int k = 0; k < K; ++k) p[k] = static_cast<S*>(b.ptr[k][t]) + b.chunk_start[c];
    // Vectorize only if every slot has the same offset from a 16-byte boundary.
    const uintptr_t mis = reinterpret_cast<uintptr_t>(p[0]) % 16;
    bool same = mis % sizeof(S) == 0;
#pragma unroll
    for (int k = 1; k < K; ++k) same = same && reinterpret_cast<uintptr_t>(p[k]) % 16 == mis;
    const int64_t head = same ? std::min<int64_t>(n, ((16 - mis) % 16) / sizeof(S)) : n;
    const int64_t nvec = same ? (n - head) / kVec : 0;
    for (int64_t v = threadIdx.x; v < nvec; v += blockDim.x) {
      alignas(16) S r[kMaxSlots][kVec];
#pragma unroll
      for (int k = 0; k < K; ++k)
        *reinterpret_cast<uint4*>(r[k]) = *reinterpret_cast<const uint4*>(p[k] + head + v * kVec);
#pragma unroll
      for (int e = 0; e < kVec; ++e) {
        S x[kMaxSlots];
#pragma unroll
        for (int k = 0; k < K; ++k) x[k] = r[k][e];
        update<Rule, V, S, Unscale>(co, x, scale, clip);
#pragma unroll
        for (int k = 0; k < K; ++k) r[k][e] = x[k];
      }
#pragma unroll
      for (int k = 0; k < K; ++k) {
        if (k == kGrad && !Unscale) continue;
        *reinterpret_cast<uint4*>(p[k] + head + v * kVec) = *reinterpret_cast<const uint4*>(r[k]);
      }
    }
    // Scalar elements: the misaligned head, then the tail after the vectors.
    const int64_t tail0 = head + nvec * kVec;
    for (int64_t j = threadIdx.x; j < head + (n - tail0); j += blockDim.x) {
      const int64_t i = j < head ? j : tail0 + (j - head);
      S x[kMaxSlots];
#pragma unroll
      for (int k = 0; k < K; ++k) x[k] = p[k][i];
      update<Rule, V, S, Unscale>(co, x, scale, clip);
#pragma unroll
      for (int k = 0; k < K; ++k) {
        if (k == kGrad && !Unscale) continue;
        p[k][i] = x[k];
      }
    }
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
    advance_kernel<Rule><<<1, kAdvanceTensors, 0, stream>>>(b, h, reinterpret_cast<const float*>(a.found_inf));
    FK_CUDA_CHECK(cudaGetLastError());
  }
}

template <class Rule, int V, class S>
void launch(const StepArgs& a, const typename Rule::Hyper& h, cudaStream_t stream) {
  using T = compute_t<S>;
  using B = Batch<Rule, T>;
  static_assert(sizeof(B) <= 32764, "kernel parameter batch exceeds the 32 KiB limit");
  const bool on_device = a.capturable;
  std::vector<typename Rule::template Coeffs<T>> coeffs;
  if (on_device) {
    if (!a.steps.empty()) advance_on_device<Rule>(a, h, stream);
  } else {
    if (a.found_inf) {  // the step state lives on the host here, so the skip decision must too
      float f = 0.f;
      FK_CUDA_CHECK(cudaMemcpyAsync(&f, reinterpret_cast<const void*>(a.found_inf), sizeof(float),
                                    cudaMemcpyDeviceToHost, stream));
      FK_CUDA_CHECK(cudaStreamSynchronize(stream));
      if (f != 0.f) return;
    }
    coeffs = advance_on_host<Rule, T>(a, h);
  }
  const DeviceScalars d{reinterpret_cast<const float*>(a.lr_ptr), a.lr, reinterpret_cast<const float*>(a.grad_scale),
                        on_device ? reinterpret_cast<const float*>(a.found_inf) : nullptr,
                        reinterpret_cast<const double*>(a.clip_coef), on_device};
  const int max_grid = sm_count(a.device) * kBlocksPerSm;
  for (const LaunchBatch& lb :
       plan_launches(a.numels.data(), a.count, chunk_elems(a.dtype), kBatchTensors, kBatchChunks)) {
    B b{};
    for (size_t j = 0; j < lb.tensors.size(); ++j) {
      const int64_t g = lb.tensors[j];
      for (int k = 0; k < a.nslots; ++k) b.ptr[k][j] = reinterpret_cast<void*>(a.ptrs[k * a.count + g]);
      if (!coeffs.empty()) b.coeffs[j] = coeffs[g];
      b.step[j] = a.steps.empty() ? nullptr : reinterpret_cast<float*>(a.steps[g]);
      b.mu_product[j] = a.mu_products.empty() ? nullptr : reinterpret_cast<float*>(a.mu_products[g]);
    }
    b.nchunks = static_cast<int32_t>(lb.chunks.size());
    for (size_t c = 0; c < lb.chunks.size(); ++c) {
      b.chunk_tensor[c] = static_cast<int32_t>(lb.chunks[c].tensor);
      b.chunk_start[c] = lb.chunks[c].start;
      b.chunk_len[c] = static_cast<int32_t>(lb.chunks[c].len);
    }
    const int grid = std::min(b.nchunks, max_grid);
    if (a.grad_scale) optim_kernel<Rule, V, S, true><<<grid, kThreads, 0, stream>>>(b, h, d);
    else optim_kernel<Rule, V, S, false><<<grid, kThreads, 0, stream>>>(b, h, d);
    FK_CUDA_CHECK(cudaGetLastError());
  }
}

template <class Rule, int V>
void launch_variant(const StepArgs& a, const typename Rule::Hyper& h, cudaStream_t stream) {
  if constexpr (V < Rule::kVariants) {
    if (Rule::variant(h) != V) return launch_variant<Rule, V + 1>(a, h, stream);
    dispatch_dtype(a.dtype, [&](auto s) { launch<Rule, V, decltype(s)>(a, h, stream); });
  }
}

}  // namespace

template <class Rule> void optimizer_step(const StepArgs& a, const typename Rule::Hyper& h) {
  if (a.count == 0) return;
  DeviceGuard guard(a.device);
  launch_variant<Rule, 0>(a, h, reinterpret_cast<cudaStream_t>(a.stream));
}

#define FK_INSTANTIATE(Rule) template void optimizer_step<Rule>(const StepArgs&, const Rule::Hyper&);
FK_FOR_EACH_RULE(FK_INSTANTIATE)
#undef FK_INSTANTIATE

}  // namespace fusekit::cuda
