// Max/avg pooling of channels_last (NHWC) tensors, compiled once per ISA: the loops of
// pool_elems.h with the channels innermost, so every step is a contiguous vector over
// channels. Same windows, same scan order and tie/NaN rule, same gathers in the backward pass
// (no scatter, so deterministic): the same values as the NCHW kernels.
#include <algorithm>

#include "cpu/pool_kernels.h"
#include "cpu/thread_pool.h"
#include "fusekit/dtype.h"
#include "fusekit/pool_elems.h"

namespace fusekit::cpu::FK_ISA {
namespace {

constexpr int64_t kRun = 256;  // channels per pass: the per-channel state lives on the stack

template <class S> void max_fwd_pixel(const Pool2dParams& q, const S* in, S* out, int64_t* idx, int64_t oy, int64_t ox,
                                      int64_t c0, int64_t c1) {
  using A = compute_t<S>;
  const int64_t C = q.c, n = c1 - c0;
  A best[kRun];
  int64_t arg[kRun];
  bool have = false;
  for_each_window_elem(q, oy, ox, [&](int64_t e) {
    const S* src = in + e * C + c0;
    if (!have) {
      for (int64_t c = 0; c < n; ++c) best[c] = load(src, c), arg[c] = e;
      have = true;
    } else {
      for (int64_t c = 0; c < n; ++c) max_step(static_cast<A>(load(src, c)), e, best[c], arg[c]);
    }
  });
  const int64_t o = (oy * q.ow + ox) * C + c0;
  for (int64_t c = 0; c < n; ++c) store(out, o + c, best[c]), idx[o + c] = arg[c];
}

template <class S> void max_bwd_pixel(const Pool2dParams& q, const S* gout, const int64_t* idx, S* gin, int64_t y,
                                      int64_t x, int64_t c0, int64_t c1) {
  using A = compute_t<S>;
  const int64_t C = q.c, n = c1 - c0, me = y * q.w + x;
  int64_t oy0, oy1, ox0, ox1;
  covering_outputs(y, q.sh, q.dh * (q.kh - 1) + 1, q.ph, q.oh, oy0, oy1);
  covering_outputs(x, q.sw, q.dw * (q.kw - 1) + 1, q.pw, q.ow, ox0, ox1);
  A acc[kRun];
  for (int64_t c = 0; c < n; ++c) acc[c] = A(0);
  for (int64_t oy = oy0; oy <= oy1; ++oy)
    for (int64_t ox = ox0; ox <= ox1; ++ox) {
      const int64_t o = (oy * q.ow + ox) * C + c0;
      for (int64_t c = 0; c < n; ++c) acc[c] = acc[c] + (idx[o + c] == me ? static_cast<A>(load(gout, o + c)) : A(0));
    }
  for (int64_t c = 0; c < n; ++c) store(gin, me * C + c0 + c, acc[c]);
}

template <class S> void avg_fwd_pixel(const Pool2dParams& q, const S* in, S* out, int64_t oy, int64_t ox, int64_t c0,
                                      int64_t c1) {
  using A = compute_t<S>;
  const int64_t C = q.c, n = c1 - c0;
  const AvgWindow w = avg_window(q, oy, ox);
  A sum[kRun];
  for (int64_t c = 0; c < n; ++c) sum[c] = A(0);
  for (int64_t y = w.y0; y < w.y1; ++y)
    for (int64_t x = w.x0; x < w.x1; ++x) {
      const S* src = in + (y * q.w + x) * C + c0;
      for (int64_t c = 0; c < n; ++c) sum[c] = sum[c] + static_cast<A>(load(src, c));
    }
  const bool empty = w.y0 >= w.y1 || w.x0 >= w.x1;
  const int64_t o = (oy * q.ow + ox) * C + c0;
  for (int64_t c = 0; c < n; ++c) store(out, o + c, empty ? A(0) : sum[c] / A(w.divisor));
}

template <class S> void avg_bwd_pixel(const Pool2dParams& q, const S* gout, S* gin, int64_t y, int64_t x, int64_t c0,
                                      int64_t c1) {
  using A = compute_t<S>;
  const int64_t C = q.c, n = c1 - c0;
  int64_t oy0, oy1, ox0, ox1;
  covering_outputs(y, q.sh, q.kh, q.ph, q.oh, oy0, oy1);
  covering_outputs(x, q.sw, q.kw, q.pw, q.ow, ox0, ox1);
  A acc[kRun];
  for (int64_t c = 0; c < n; ++c) acc[c] = A(0);
  for (int64_t oy = oy0; oy <= oy1; ++oy)
    for (int64_t ox = ox0; ox <= ox1; ++ox) {
      const AvgWindow w = avg_window(q, oy, ox);
      if (y < w.y0 || y >= w.y1 || x < w.x0 || x >= w.x1) continue;
      const A d = A(w.divisor);
      const S* g = gout + (oy * q.ow + ox) * C + c0;
      for (int64_t c = 0; c < n; ++c) acc[c] = acc[c] + static_cast<A>(load(g, c)) / d;
    }
  for (int64_t c = 0; c < n; ++c) store(gin, (y * q.w + x) * C + c0 + c, acc[c]);
}

template <class S> void run(PoolOp op, const PoolArgs& a) {
  const Pool2dParams& q = a.q;
  const bool fwd = op == PoolOp::MaxForward || op == PoolOp::AvgForward;
  const int64_t rows = fwd ? q.oh : q.h, cols = fwd ? q.ow : q.w, in_img = q.h * q.w * q.c, out_img = q.oh * q.ow * q.c;
  auto task = [&](int64_t t) {  // one (image, row)
    const int64_t n = t / rows, r = t % rows;
    const S* in = reinterpret_cast<const S*>(a.in) + n * in_img;
    S* out = reinterpret_cast<S*>(a.out) + n * out_img;
    const S* gout = reinterpret_cast<const S*>(a.grad_out) + n * out_img;
    S* gin = reinterpret_cast<S*>(a.grad_in) + n * in_img;
    int64_t* idx = reinterpret_cast<int64_t*>(a.indices) + n * out_img;
    for (int64_t col = 0; col < cols; ++col)
      for (int64_t c0 = 0; c0 < q.c; c0 += kRun) {
        const int64_t c1 = std::min(q.c, c0 + kRun);
        switch (op) {
          case PoolOp::MaxForward: max_fwd_pixel(q, in, out, idx, r, col, c0, c1); break;
          case PoolOp::MaxBackward: max_bwd_pixel(q, gout, idx, gin, r, col, c0, c1); break;
          case PoolOp::AvgForward: avg_fwd_pixel(q, in, out, r, col, c0, c1); break;
          case PoolOp::AvgBackward: avg_bwd_pixel(q, gout, gin, r, col, c0, c1); break;
        }
      }
  };
  const int threads = q.n * q.c * (q.h * q.w + q.oh * q.ow) < 16384 ? 1 : a.num_threads;
  parallel_for(threads, q.n * rows, task);
}

}  // namespace

void pool_nhwc(PoolOp op, const PoolArgs& a) {
  dispatch_dtype(a.dtype, [&](auto s) { run<decltype(s)>(op, a); });
}

}  // namespace fusekit::cpu::FK_ISA
