// CPU max/avg pooling, forward and backward (reference for csrc/cuda/pool.cu, which runs the
// same element functions): parallel over N*C planes, one thread per plane range.
#include <stdexcept>

#include "cpu/optim_job.h"
#include "cpu/pool_kernels.h"
#include "cpu/thread_pool.h"
#include "fusekit/buffers.h"
#include "fusekit/pool_args.h"
#include "fusekit/pool_elems.h"

namespace fusekit {
namespace {

template <class S> void run(PoolOp op, const PoolArgs& a) {
  const Pool2dParams& q = a.q;
  const int64_t planes = q.n * q.c, in_sz = q.h * q.w, out_sz = q.oh * q.ow;
  const bool tiles = pool_tiles(q);
  auto task = [&](int64_t p) {
    switch (op) {
      case PoolOp::MaxForward: {
        const S* in = reinterpret_cast<const S*>(a.in) + p * in_sz;
        S* out = reinterpret_cast<S*>(a.out) + p * out_sz;
        int64_t* idx = reinterpret_cast<int64_t*>(a.indices) + p * out_sz;
        if (tiles) {
          for (int64_t oy = 0; oy < q.oh; ++oy) max_fwd_tile_row<S>(q, in, out, idx, oy);
          break;
        }
        for (int64_t oy = 0; oy < q.oh; ++oy)
          for (int64_t ox = 0; ox < q.ow; ++ox) max_fwd<S>(q, in, out, idx, oy, ox);
        break;
      }
      case PoolOp::MaxBackward: {
        const S* gout = reinterpret_cast<const S*>(a.grad_out) + p * out_sz;
        const int64_t* idx = reinterpret_cast<const int64_t*>(a.indices) + p * out_sz;
        max_bwd_plane<S>(q, gout, idx, reinterpret_cast<S*>(a.grad_in) + p * in_sz);
        break;
      }
      case PoolOp::AvgForward: {
        const S* in = reinterpret_cast<const S*>(a.in) + p * in_sz;
        S* out = reinterpret_cast<S*>(a.out) + p * out_sz;
        for (int64_t oy = 0; oy < q.oh; ++oy)
          for (int64_t ox = 0; ox < q.ow; ++ox) avg_fwd<S>(q, in, out, oy, ox);
        break;
      }
      case PoolOp::AvgBackward: {
        const S* gout = reinterpret_cast<const S*>(a.grad_out) + p * out_sz;
        S* gin = reinterpret_cast<S*>(a.grad_in) + p * in_sz;
        for (int64_t y = 0; y < q.h; ++y)
          for (int64_t x = 0; x < q.w; ++x) avg_bwd<S>(q, gout, gin, y, x);
        break;
      }
    }
  };
  const int threads = planes * (in_sz + out_sz) < 16384 ? 1 : a.num_threads;
  cpu::parallel_for(threads, planes, task);
}

int64_t q_outputs(const Pool2dParams& q) { return q.n * q.c * q.oh * q.ow; }

void check(PoolOp op, const PoolArgs& a) {
  const Pool2dParams& q = a.q;
  if (q.n < 0 || q.c < 0 || q.h < 1 || q.w < 1 || q.oh < 1 || q.ow < 1)
    throw std::invalid_argument("pooling sizes must be positive");
  if (q.kh < 1 || q.kw < 1 || q.sh < 1 || q.sw < 1 || q.dh < 1 || q.dw < 1 || q.ph < 0 || q.pw < 0)
    throw std::invalid_argument("kernel_size, stride and dilation must be positive and padding non-negative");
  // Every output window must start inside the input or its padding (ceil_mode or not).
  const int64_t oh_max = pool_out_size(q.h, q.kh, q.sh, q.ph, q.dh, true);
  const int64_t ow_max = pool_out_size(q.w, q.kw, q.sw, q.pw, q.dw, true);
  if (q.oh < pool_out_size(q.h, q.kh, q.sh, q.ph, q.dh, false) || q.oh > oh_max ||
      q.ow < pool_out_size(q.w, q.kw, q.sw, q.pw, q.dw, false) || q.ow > ow_max)
    throw std::invalid_argument("output size does not match the pooling window");
  const bool fwd = op == PoolOp::MaxForward || op == PoolOp::AvgForward;
  const bool max = op == PoolOp::MaxForward || op == PoolOp::MaxBackward;
  const int64_t es = dtype_size(a.dtype), outs = extent_bytes({q.n, q.c, q.oh, q.ow}, 1);
  const int64_t in = extent_bytes({q.n, q.c, q.h, q.w}, es);
  if (fwd) {
    check_buffer("input", a.in, a.in_nbytes, in);
    check_buffer("out", a.out, a.out_nbytes, outs * es);
  } else {
    check_buffer("grad_out", a.grad_out, a.grad_out_nbytes, outs * es);
    check_buffer("grad_in", a.grad_in, a.grad_in_nbytes, in);
  }
  if (a.window_codes) {
    if (!max || a.indices || a.device >= 0 || !pool2d_window_codes(q))
      throw std::invalid_argument("window_codes: only for CPU 2x2/2 max pooling, instead of indices");
    check_buffer("window_codes", a.window_codes, a.window_codes_nbytes, outs);
  } else if (max) {
    check_buffer("indices", a.indices, a.indices_nbytes, outs * 8);
  }
  if (a.channels_last && a.device >= 0) throw std::invalid_argument("channels_last: CPU kernels only");
}

}  // namespace

void cpu::check_indices(const int64_t* idx, int64_t count, int64_t plane) {
  int64_t bad = 0;
  for (int64_t i = 0; i < count; ++i) bad |= static_cast<int64_t>(static_cast<uint64_t>(idx[i]) >= static_cast<uint64_t>(plane));
  if (bad) throw std::invalid_argument("max-pool indices out of range of the input plane");
}

bool pool2d_window_codes(const Pool2dParams& q) { return pool_tiles(q) && q.kh == 2 && q.kw == 2; }

void pool2d(PoolOp op, const PoolArgs& a) {
  check(op, a);
  if (a.device >= 0) {
#ifdef FK_WITH_CUDA
    return cuda::pool2d(op, a);
#else
    throw std::runtime_error("fusekit was built without CUDA kernels");
#endif
  }
  if (op == PoolOp::MaxBackward && a.indices) cpu::check_indices(reinterpret_cast<const int64_t*>(a.indices),
                                                                   q_outputs(a.q), a.q.h * a.q.w);
  if (a.channels_last) {
    switch (cpu::detect_isa()) {
#ifdef FK_HAVE_ISA_AVX512
      case cpu::Isa::Avx512: return cpu::avx512::pool_nhwc(op, a);
#endif
#ifdef FK_HAVE_ISA_AVX2
      case cpu::Isa::Avx2: return cpu::avx2::pool_nhwc(op, a);
#endif
      default: return cpu::scalar::pool_nhwc(op, a);
    }
  }
  if ((op == PoolOp::MaxForward || op == PoolOp::MaxBackward) && pool2d_window_codes(a.q)) {
    const bool fwd = op == PoolOp::MaxForward;
    switch (cpu::detect_isa()) {
#ifdef FK_HAVE_ISA_AVX512
      case cpu::Isa::Avx512: return fwd ? cpu::avx512::max_pool_2x2(a) : cpu::avx512::max_pool_2x2_backward(a);
#endif
#ifdef FK_HAVE_ISA_AVX2
      case cpu::Isa::Avx2: return fwd ? cpu::avx2::max_pool_2x2(a) : cpu::avx2::max_pool_2x2_backward(a);
#endif
      default: return fwd ? cpu::scalar::max_pool_2x2(a) : cpu::scalar::max_pool_2x2_backward(a);
    }
  }
  dispatch_dtype(a.dtype, [&](auto s) { run<decltype(s)>(op, a); });
}

}  // namespace fusekit
