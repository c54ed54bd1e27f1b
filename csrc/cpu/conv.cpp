// CPU conv2d entry points: the GEMM kernels (conv_gemm_isa.cpp) by default; with
// args.direct the element functions of conv_elems.h that csrc/cuda/conv.cu runs, so the CPU
// tests cover the GPU's math. Direct forward: parallel over (image, output channel) planes;
// input gradient: over (image, input channel) planes; weight/bias gradients: over output
// channels, each summed over the batch in order, so every result is independent of the
// thread count.
#include <atomic>
#include <memory>
#include <stdexcept>
#include <vector>

#include "cpu/conv_gemm.h"
#include "cpu/optim_job.h"
#include "cpu/pool_kernels.h"
#include "cpu/thread_pool.h"
#include "fusekit/buffers.h"
#include "fusekit/conv_args.h"
#include "fusekit/conv_elems.h"
#include "fusekit/math/pool.h"
#include "fusekit/pool_args.h"

namespace fusekit {

namespace {
std::atomic<bool> g_channel_tiles{true};
}  // namespace

bool cpu::conv_channel_tiles() { return g_channel_tiles.load(std::memory_order_relaxed); }
void cpu::set_conv_channel_tiles(bool enabled) { g_channel_tiles.store(enabled, std::memory_order_relaxed); }

bool cpu::conv_channel_tiled(int64_t c, int64_t oh, int64_t ow, int64_t kh, int64_t kw, int64_t sh, int64_t sw,
                             int64_t dh, int64_t dw, bool upsampled, int64_t m) {
  constexpr int64_t R = 8, NR = 48;
  if (!conv_channel_tiles() || upsampled || m < 1 || oh < 1 || ow < 1) return false;
  const int64_t wp = ow + (kw - 1) * dw / sw, rows_b = oh + (kh - 1) * dh / sh;
  if (c * sh * sw * rows_b * wp > kConvBlockElems) return false;
  const auto fill = [](int64_t n, int64_t tile) { return double(n) / double((n + tile - 1) / tile * tile); };
  const double plane = double(oh * ow), cols = double(oh * wp);
  const double shifted = plane / cols * fill(oh * wp, NR) * fill(m, R), tiled = fill(m, NR) * fill(oh * ow, R);
  return tiled > 1.25 * shifted;
}

void* cpu::conv_scratch(int slot, size_t bytes) {
  struct Buf {
    std::unique_ptr<char[]> p;
    size_t size = 0;
  };
  static thread_local Buf bufs[3];
  Buf& b = bufs[slot];
  if (b.size < bytes) {
    b.p.reset(new char[bytes]);
    b.size = bytes;
  }
  return b.p.get();
}

namespace {

// Sizes, then every buffer against them (buffers.h). Batches or channels of size 0 are
// the caller's to handle (python/fusekit/_backend/conv.py): the kernels assume work.
void check_sizes(const Conv2dParams& q) {
  if (q.n < 1 || q.ci < 1 || q.co < 1 || q.h < 1 || q.w < 1)
    throw std::invalid_argument("conv2d kernels need a non-empty batch, channels and input plane");
  if (q.groups < 1 || q.ci % q.groups || q.co % q.groups)
    throw std::invalid_argument("channels must be divisible by groups");
  if (q.kh < 1 || q.kw < 1 || q.sh < 1 || q.sw < 1 || q.dh < 1 || q.dw < 1 || q.ph < 0 || q.pw < 0)
    throw std::invalid_argument("kernel, stride and dilation must be positive and padding non-negative");
  if (q.oh != conv_out_size(q.h, q.kh, q.sh, q.ph, q.dh) || q.ow != conv_out_size(q.w, q.kw, q.sw, q.pw, q.dw) ||
      q.oh < 1 || q.ow < 1)
    throw std::invalid_argument("output size does not match the convolution");
}

struct ConvBytes {
  int64_t in, out, weight, bias;
};

// Checks every buffer given: input and weight are required where read (forward; the
// weight gradient reads the input, the input gradient the weight), gradients are optional.
ConvBytes check_operands(const ConvArgs& a, bool fwd) {
  const Conv2dParams& q = a.q;
  check_sizes(q);
  const int64_t es = dtype_size(a.dtype);
  const ConvBytes b{extent_bytes({q.n, q.ci, q.h, q.w}, es), extent_bytes({q.n, q.co, q.oh, q.ow}, es),
                    extent_bytes({q.co, q.ci / q.groups, q.kh, q.kw}, es), extent_bytes({q.co}, es)};
  check_buffer("input", a.input, a.input_nbytes, b.in, !fwd && !a.grad_weight);
  check_buffer("weight", a.weight, a.weight_nbytes, b.weight, !fwd && !a.grad_input);
  check_buffer("bias", a.bias, a.bias_nbytes, b.bias, true);
  check_buffer("grad_input", a.grad_input, a.grad_input_nbytes, b.in, true);
  check_buffer("grad_weight", a.grad_weight, a.grad_weight_nbytes, b.weight, true);
  check_buffer("grad_bias", a.grad_bias, a.grad_bias_nbytes, b.bias, true);
  return b;
}

void check(const ConvArgs& a, bool fwd) {
  const ConvBytes b = check_operands(a, fwd);
  if (fwd) check_buffer("out", a.out, a.out_nbytes, b.out);
  else check_buffer("grad_out", a.grad_out, a.grad_out_nbytes, b.out);
}

template <class S> void forward(const ConvArgs& a) {
  using A = compute_t<S>;
  const Conv2dParams& q = a.q;
  const S* in = reinterpret_cast<const S*>(a.input);
  const S* w = reinterpret_cast<const S*>(a.weight);
  const S* b = reinterpret_cast<const S*>(a.bias);
  S* out = reinterpret_cast<S*>(a.out);
  auto task = [&](int64_t t) {  // one (image, output channel) plane
    const int64_t n = t / q.co, oc = t % q.co;
    for (int64_t oy = 0; oy < q.oh; ++oy)
      for (int64_t ox = 0; ox < q.ow; ++ox)
        store(out, (t * q.oh + oy) * q.ow + ox,
              conv_fwd_elem<S, A>(q, in + n * q.ci * q.h * q.w, w, oc, oy, ox, b ? A(load(b, oc)) : A(0)));
  };
  cpu::parallel_for(a.num_threads, q.n * q.co, task);
}

template <class S> void backward(const ConvArgs& a) {
  using A = compute_t<S>;
  const Conv2dParams& q = a.q;
  const S* in = reinterpret_cast<const S*>(a.input);
  const S* w = reinterpret_cast<const S*>(a.weight);
  const S* gout = reinterpret_cast<const S*>(a.grad_out);
  if (a.grad_input) {
    S* gin = reinterpret_cast<S*>(a.grad_input);
    auto task = [&](int64_t t) {  // one (image, input channel) plane
      const int64_t n = t / q.ci, ic = t % q.ci;
      for (int64_t y = 0; y < q.h; ++y)
        for (int64_t x = 0; x < q.w; ++x)
          store(gin, (t * q.h + y) * q.w + x, conv_bwd_input_elem<S, A>(q, gout + n * q.co * q.oh * q.ow, w, ic, y, x));
    };
    cpu::parallel_for(a.num_threads, q.n * q.ci, task);
  }
  if (a.grad_weight) {
    S* gw = reinterpret_cast<S*>(a.grad_weight);
    const int64_t cig = q.ci / q.groups, per_oc = cig * q.kh * q.kw;
    auto task = [&](int64_t oc) {
      for (int64_t r = 0; r < per_oc; ++r) {
        const int64_t icl = r / (q.kh * q.kw), ky = (r / q.kw) % q.kh, kx = r % q.kw;
        store(gw, oc * per_oc + r, conv_bwd_weight_elem<S, A>(q, in, gout, oc, icl, ky, kx, 0, q.n));
      }
    };
    cpu::parallel_for(a.num_threads, q.co, task);
  }
  if (a.grad_bias) {
    S* gb = reinterpret_cast<S*>(a.grad_bias);
    for (int64_t oc = 0; oc < q.co; ++oc) store(gb, oc, conv_bwd_bias_elem<S, A>(q, gout, oc));
  }
}

template <class S> void conv_relu_maxpool(const ConvPoolArgs& a) {
  using A = compute_t<S>;
  const Conv2dParams& q = a.conv.q;
  const Pool2dParams& pq = a.pool;
  const S* in = reinterpret_cast<const S*>(a.conv.input);
  const S* w = reinterpret_cast<const S*>(a.conv.weight);
  const S* b = reinterpret_cast<const S*>(a.conv.bias);
  S* out = reinterpret_cast<S*>(a.out);
  int64_t* idx = reinterpret_cast<int64_t*>(a.indices);
  uint8_t* codes = reinterpret_cast<uint8_t*>(a.window_codes);
  const int64_t plane = q.oh * q.ow, pooled = pq.oh * pq.ow;
  auto task = [&](int64_t t) {
    const int64_t n = t / q.co, oc = t % q.co;
    std::vector<A> acc(plane);
    for (int64_t e = 0; e < plane; ++e) {
      const A z = conv_fwd_elem<S, A>(q, in + n * q.ci * q.h * q.w, w, oc, e / q.ow, e % q.ow, b ? A(load(b, oc)) : A(0));
      acc[e] = z < A(0) ? A(0) : z;  // relu; NaN stays NaN, as torch.relu
    }
    for (int64_t oy = 0; oy < pq.oh; ++oy)
      for (int64_t ox = 0; ox < pq.ow; ++ox) {
        A best = A(0);
        const int64_t arg = max_window<A>(pq, oy, ox, [&](int64_t i) { return acc[i]; }, best);
        store(out + t * pooled, oy * pq.ow + ox, best);
        if (codes) codes[t * pooled + oy * pq.ow + ox] = static_cast<uint8_t>((arg / q.ow - 2 * oy) * 2 + arg % q.ow - 2 * ox);
        else idx[t * pooled + oy * pq.ow + ox] = arg;
      }
  };
  cpu::parallel_for(a.conv.num_threads, q.n * q.co, task);
}

// Runs the kernel `fn` built for this CPU's ISA.
#define FK_CONV_ISA_CALL(fn, args)                                    \
  switch (cpu::detect_isa()) {                                        \
    FK_CONV_ISA_CASE_AVX512(fn, args)                                 \
    FK_CONV_ISA_CASE_AVX2(fn, args)                                   \
    default: return cpu::scalar::fn(args);                            \
  }
#ifdef FK_HAVE_ISA_AVX512
#define FK_CONV_ISA_CASE_AVX512(fn, args) case cpu::Isa::Avx512: return cpu::avx512::fn(args);
#else
#define FK_CONV_ISA_CASE_AVX512(fn, args)
#endif
#ifdef FK_HAVE_ISA_AVX2
#define FK_CONV_ISA_CASE_AVX2(fn, args) case cpu::Isa::Avx2: return cpu::avx2::fn(args);
#else
#define FK_CONV_ISA_CASE_AVX2(fn, args)
#endif

void check_block(const ConvPoolArgs& a, bool fwd) {
  check_operands(a.conv, fwd);  // the block never writes a conv output
  const Conv2dParams& q = a.conv.q;
  const Pool2dParams& pq = a.pool;
  if (pq.n != q.n || pq.c != q.co || pq.h != q.oh || pq.w != q.ow)
    throw std::invalid_argument("pooling input must be the convolution output");
  if (pq.kh < 1 || pq.kw < 1 || pq.sh < 1 || pq.sw < 1 || pq.dh < 1 || pq.dw < 1 || pq.ph < 0 || pq.pw < 0 ||
      pq.oh != pool_out_size(pq.h, pq.kh, pq.sh, pq.ph, pq.dh, false) ||
      pq.ow != pool_out_size(pq.w, pq.kw, pq.sw, pq.pw, pq.dw, false) || pq.oh < 1 || pq.ow < 1)
    throw std::invalid_argument("pooling output size does not match its window");
  const int64_t es = dtype_size(a.conv.dtype), pooled = extent_bytes({q.n, q.co, pq.oh, pq.ow}, 1);
  check_buffer("bias", a.conv.bias, a.conv.bias_nbytes, extent_bytes({q.co}, es), true);
  check_buffer("out", a.out, a.out_nbytes, pooled * es);
  if (a.window_codes) {
    if (a.indices || !pool2d_window_codes(pq))
      throw std::invalid_argument("window_codes: only for a 2x2/2 pool, instead of indices");
    check_buffer("window_codes", a.window_codes, a.window_codes_nbytes, pooled);
  } else {
    check_buffer("indices", a.indices, a.indices_nbytes, pooled * 8);
  }
  if (!fwd) {
    check_buffer("grad_out", a.grad_out, a.grad_out_nbytes, pooled * es);
    check_buffer("grad_conv", a.grad_conv, a.grad_conv_nbytes, extent_bytes({q.n, q.co, q.oh, q.ow}, es));
  }
  if (a.conv.device >= 0) throw std::runtime_error("the fused conv+relu+max-pool block has no CUDA kernel yet");
}

void relu_pool_backward(const ConvPoolArgs& a) { FK_CONV_ISA_CALL(relu_pool_backward, a) }

}  // namespace

void conv_relu_maxpool_forward(const ConvPoolArgs& a) {
  check_block(a, true);
  if (a.conv.direct) return dispatch_dtype(a.conv.dtype, [&](auto s) { conv_relu_maxpool<decltype(s)>(a); });
  FK_CONV_ISA_CALL(conv_relu_maxpool, a)
}

void conv_relu_maxpool_backward(const ConvPoolArgs& a) {
  check_block(a, false);
  const Pool2dParams& pq = a.pool;
  if (a.indices) cpu::check_indices(reinterpret_cast<const int64_t*>(a.indices), pq.n * pq.c * pq.oh * pq.ow, pq.h * pq.w);
  relu_pool_backward(a);
  // the bias gradient came from the pooled gradient above
  ConvArgs c = a.conv;
  c.grad_out = a.grad_conv;
  c.grad_out_nbytes = a.grad_conv_nbytes;
  c.grad_bias = 0;
  c.grad_bias_nbytes = 0;
  if (c.grad_input || c.grad_weight) conv2d_backward(c);
}

void conv2d_forward(const ConvArgs& a) {
  check(a, true);
  if (a.device >= 0) {
#ifdef FK_WITH_CUDA
    return cuda::conv2d_forward(a);
#else
    throw std::runtime_error("fusekit was built without CUDA kernels");
#endif
  }
  if (a.direct) return dispatch_dtype(a.dtype, [&](auto s) { forward<decltype(s)>(a); });
  FK_CONV_ISA_CALL(conv_forward, a)
}

void conv2d_backward(const ConvArgs& a) {
  check(a, false);
  if (a.device >= 0) {
#ifdef FK_WITH_CUDA
    return cuda::conv2d_backward(a);
#else
    throw std::runtime_error("fusekit was built without CUDA kernels");
#endif
  }
  if (a.direct) return dispatch_dtype(a.dtype, [&](auto s) { backward<decltype(s)>(a); });
  FK_CONV_ISA_CALL(conv_backward, a)
}

}  // namespace fusekit
