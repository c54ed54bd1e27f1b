// CUDA conv2d (reference: csrc/cpu/conv.cpp, same summation order; weight and bias
// gradients run conv_elems.h itself). A first, direct version — one thread per output
// (forward), per input element (input gradient: a gather over the taps), per weight element
// and per bias element (reductions in a fixed order, no atomics); implicit GEMM is to come.
#include <cuda_runtime.h>

#include <algorithm>

#include "cuda/check.h"
#include "fusekit/conv_args.h"
#include "fusekit/conv_elems.h"

namespace fusekit::cuda {
namespace {

constexpr int kThreads = 256;

template <class S>
__global__ void fwd_kernel(const Conv2dParams q, const S* in, const S* w, const S* b, S* out) {
  using A = compute_t<S>;
  const int64_t total = q.n * q.co * q.oh * q.ow;
  const int64_t cig = q.ci / q.groups, cog = q.co / q.groups;
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < total;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t ox = e % q.ow, oy = (e / q.ow) % q.oh, oc = (e / (q.ow * q.oh)) % q.co, n = e / (q.ow * q.oh * q.co);
    A acc = b ? load(b, oc) : A(0);
    const int64_t g = oc / cog;
    for (int64_t icl = 0; icl < cig; ++icl) {  // two-level sums, in the CPU kernel's order
      const S* in_c = in + (n * q.ci + g * cig + icl) * q.h * q.w;
      A t = A(0);
      for (int64_t ky = 0; ky < q.kh; ++ky) {
        const int64_t iy = oy * q.sh - q.ph + ky * q.dh;
        if (iy < 0 || iy >= q.h) continue;
        for (int64_t kx = 0; kx < q.kw; ++kx) {
          const int64_t ix = ox * q.sw - q.pw + kx * q.dw;
          if (ix < 0 || ix >= q.w) continue;
          t = t + load(w, ((oc * cig + icl) * q.kh + ky) * q.kw + kx) * load(in_c, iy * q.w + ix);
        }
      }
      acc = acc + t;
    }
    store(out, e, acc);
  }
}

template <class S>
__global__ void bwd_input_kernel(const Conv2dParams q, const S* gout, const S* w, S* gin) {
  using A = compute_t<S>;
  const int64_t total = q.n * q.ci * q.h * q.w;
  const int64_t cig = q.ci / q.groups, cog = q.co / q.groups;
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < total;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t x = e % q.w, y = (e / q.w) % q.h, ic = (e / (q.w * q.h)) % q.ci, n = e / (q.w * q.h * q.ci);
    const int64_t g = ic / cig, icl = ic % cig;
    A acc = A(0);
    for (int64_t ocl = 0; ocl < cog; ++ocl) {
      const int64_t oc = g * cog + ocl;
      A t = A(0);
      for (int64_t ky = 0; ky < q.kh; ++ky) {
        const int64_t ty = y + q.ph - ky * q.dh;
        if (ty < 0 || ty % q.sh || ty / q.sh >= q.oh) continue;
        for (int64_t kx = 0; kx < q.kw; ++kx) {
          const int64_t tx = x + q.pw - kx * q.dw;
          if (tx < 0 || tx % q.sw || tx / q.sw >= q.ow) continue;
          t = t + load(w, ((oc * cig + icl) * q.kh + ky) * q.kw + kx) *
                      load(gout, ((n * q.co + oc) * q.oh + ty / q.sh) * q.ow + tx / q.sw);
        }
      }
      acc = acc + t;
    }
    store(gin, e, acc);
  }
}

template <class S>
__global__ void bwd_weight_kernel(const Conv2dParams q, const S* in, const S* gout, S* gw) {
  using A = compute_t<S>;
  const int64_t cig = q.ci / q.groups, total = q.co * cig * q.kh * q.kw;
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < total;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t kx = e % q.kw, ky = (e / q.kw) % q.kh, icl = (e / (q.kw * q.kh)) % cig, oc = e / (q.kw * q.kh * cig);
    store(gw, e, conv_bwd_weight_elem<S, A>(q, in, gout, oc, icl, ky, kx, 0, q.n));
  }
}

template <class S>
__global__ void bwd_bias_kernel(const Conv2dParams q, const S* gout, S* gb) {
  using A = compute_t<S>;
  for (int64_t oc = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; oc < q.co;
       oc += static_cast<int64_t>(gridDim.x) * blockDim.x)
    store(gb, oc, conv_bwd_bias_elem<S, A>(q, gout, oc));
}

int grid_for(int64_t total, int device) {
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>((total + kThreads - 1) / kThreads,
                                                                  sm_count(device) * 32)));
}

}  // namespace

void conv2d_forward(const ConvArgs& a) {
  DeviceGuard guard(a.device);
  auto stream = reinterpret_cast<cudaStream_t>(a.stream);
  const Conv2dParams& q = a.q;
  dispatch_dtype(a.dtype, [&](auto s) {
    using S = decltype(s);
    fwd_kernel<S><<<grid_for(q.n * q.co * q.oh * q.ow, a.device), kThreads, 0, stream>>>(
        q, reinterpret_cast<const S*>(a.input), reinterpret_cast<const S*>(a.weight),
        reinterpret_cast<const S*>(a.bias), reinterpret_cast<S*>(a.out));
  });
  FK_CUDA_CHECK(cudaGetLastError());
}

void conv2d_backward(const ConvArgs& a) {
  DeviceGuard guard(a.device);
  auto stream = reinterpret_cast<cudaStream_t>(a.stream);
  const Conv2dParams& q = a.q;
  dispatch_dtype(a.dtype, [&](auto s) {
    using S = decltype(s);
    const S* gout = reinterpret_cast<const S*>(a.grad_out);
    if (a.grad_input)
      bwd_input_kernel<S><<<grid_for(q.n * q.ci * q.h * q.w, a.device), kThreads, 0, stream>>>(
          q, gout, reinterpret_cast<const S*>(a.weight), reinterpret_cast<S*>(a.grad_input));
    if (a.grad_weight)
      bwd_weight_kernel<S><<<grid_for(q.co * (q.ci / q.groups) * q.kh * q.kw, a.device), kThreads, 0, stream>>>(
          q, reinterpret_cast<const S*>(a.input), gout, reinterpret_cast<S*>(a.grad_weight));
    if (a.grad_bias)
      bwd_bias_kernel<S><<<grid_for(q.co, a.device), kThreads, 0, stream>>>(q, gout, reinterpret_cast<S*>(a.grad_bias));
  });
  FK_CUDA_CHECK(cudaGetLastError());
}

}  // namespace fusekit::cuda
