// Max/avg pooling of channels_last (NHWC) tensors, compiled once per ISA: the loops of
// pool_elems.h with the channels innermost, so every step is a contiguous vector over
// channels. Same windows, same scan order and tie/NaN rule, same gathers in the backward pass
// (no scatter, so deterministic): the same values as the NCHW kernels. 2x2/2 max pooling
// without indices saves window codes, as NCHW does.
#include <algorithm>
#include <type_traits>

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

// 2x2 / stride-2 max pooling with window codes (uint8 dy * 2 + dx per output, as NCHW's):
// output row oy of image n from input rows 2oy and 2oy + 1. The codes go through lanes as wide
// as the values, so the loop vectorizes (see pool_2x2.h).
template <class S> using CodeOf = std::conditional_t<sizeof(compute_t<S>) == 8, int64_t, int32_t>;

// Calls f(o, i, n) for each run of n <= kRun channels of output row oy: o is the first output's
// offset, i its window's first input's (rows 2oy and 2oy + 1, row() elements apart).
template <class F> void for_each_2x2_run(const Pool2dParams& q, int64_t oy, F f) {
  for (int64_t ox = 0; ox < q.ow; ++ox)
    for (int64_t c0 = 0; c0 < q.c; c0 += kRun)
      f((oy * q.ow + ox) * q.c + c0, (2 * oy * q.w + 2 * ox) * q.c + c0, std::min(kRun, q.c - c0));
}

template <class S> void max2x2_fwd_row(const Pool2dParams& q, const S* in, S* out, uint8_t* codes, int64_t oy) {
  using A = compute_t<S>;
  using Code = CodeOf<S>;
  const int64_t C = q.c, row = q.w * C;
  Code code[kRun];
  for_each_2x2_run(q, oy, [&](int64_t o, int64_t i, int64_t n) {
    const S* p0 = in + i;
    const S* p1 = p0 + row;
#pragma GCC ivdep
    for (int64_t c = 0; c < n; ++c) {
      A best = load(p0, c);
      Code k = 0;
      max_step(static_cast<A>(load(p0, C + c)), Code(1), best, k);
      max_step(static_cast<A>(load(p1, c)), Code(2), best, k);
      max_step(static_cast<A>(load(p1, C + c)), Code(3), best, k);
      store(out, o + c, best);
      code[c] = k;
    }
    for (int64_t c = 0; c < n; ++c) codes[o + c] = static_cast<uint8_t>(code[c]);
  });
}

// Backward of output row oy: input rows 2oy and 2oy + 1 written whole (the odd last column
// and, with the last output row, the odd last input row get zeros).
template <class S> void max2x2_bwd_row(const Pool2dParams& q, const S* gout, const uint8_t* codes, S* gin, int64_t oy) {
  using A = compute_t<S>;
  using Code = CodeOf<S>;
  const int64_t C = q.c, row = q.w * C;
  Code code[kRun];
  for_each_2x2_run(q, oy, [&](int64_t o, int64_t i, int64_t n) {
    S* p0 = gin + i;
    S* p1 = p0 + row;
    for (int64_t c = 0; c < n; ++c) code[c] = codes[o + c];
#pragma GCC ivdep
    for (int64_t c = 0; c < n; ++c) {
      const A v = load(gout, o + c);
      store(p0, c, code[c] == 0 ? v : A(0));
      store(p0, C + c, code[c] == 1 ? v : A(0));
      store(p1, c, code[c] == 2 ? v : A(0));
      store(p1, C + c, code[c] == 3 ? v : A(0));
    }
  });
  for (int64_t y = 2 * oy; y < (oy + 1 == q.oh ? q.h : 2 * oy + 2); ++y)
    for (int64_t e = y < 2 * oy + 2 ? 2 * q.ow * C : 0; e < row; ++e) store(gin, y * row + e, A(0));
}

template <class S> void run(PoolOp op, const PoolArgs& a) {
  const Pool2dParams& q = a.q;
  if (a.window_codes) {  // one (image, output row)
    const int64_t in_img = q.h * q.w * q.c, out_img = q.oh * q.ow * q.c;
    auto task = [&](int64_t t) {
      const int64_t n = t / q.oh, oy = t % q.oh;
      uint8_t* codes = reinterpret_cast<uint8_t*>(a.window_codes) + n * out_img;
      if (op == PoolOp::MaxForward)
        max2x2_fwd_row(q, reinterpret_cast<const S*>(a.in) + n * in_img, reinterpret_cast<S*>(a.out) + n * out_img,
                       codes, oy);
      else
        max2x2_bwd_row(q, reinterpret_cast<const S*>(a.grad_out) + n * out_img, codes,
                       reinterpret_cast<S*>(a.grad_in) + n * in_img, oy);
    };
    return parallel_for(q.n * q.c * (q.h * q.w + q.oh * q.ow) < 16384 ? 1 : a.num_threads, q.n * q.oh, task);
  }
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
