// CUDA conv2d: the element functions of conv_elems.h (which the CPU's direct path runs too,
// so the CPU tests cover this math). A first, direct version — one thread per output
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
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < total;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t ox = e % q.ow, oy = (e / q.ow) % q.oh, oc = (e / (q.ow * q.oh)) % q.co, n = e / (q.ow * q.oh * q.co);
    store(out, e, conv_fwd_elem<S, A>(q, in + n * q.ci * q.h * q.w, w, oc, oy, ox, b ? load(b, oc) : A(0)));
  }
}

template <class S>
__global__ void bwd_input_kernel(const Conv2dParams q, const S* gout, const S* w, S* gin) {
  using A = compute_t<S>;
  const int64_t total = q.n * q.ci * q.h * q.w;
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < total;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t x = e % q.w, y = (e / q.w) % q.h, ic = (e / (q.w * q.h)) % q.ci, n = e / (q.w * q.h * q.ci);
    store(gin, e, conv_bwd_input_elem<S, A>(q, gout + n * q.co * q.oh * q.ow, w, ic, y, x));
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
