// Pooling index math, shared by the CPU and CUDA kernels (torch's pooling_output_shape and
// window rules), and the per-window reductions with torch's tie/NaN behaviour.
#pragma once
#include <cstdint>

#include "fusekit/macros.h"

namespace fusekit {

struct Pool2dParams {
  int64_t n, c, h, w;            // input (NCHW, contiguous)
  int64_t oh, ow;                // output
  int64_t kh, kw, sh, sw, ph, pw, dh, dw;
  bool count_include_pad = true;
  int64_t divisor_override = 0;  // 0: none
};

// torch: div_rtn(in + 2p - d(k-1) - 1 + (ceil ? s-1 : 0), s) + 1, and with ceil_mode the
// last window must start inside the input or the left padding.
FK_HOST_DEVICE int64_t pool_out_size(int64_t in, int64_t k, int64_t s, int64_t p, int64_t d, bool ceil_mode) {
  const int64_t num = in + 2 * p - d * (k - 1) - 1 + (ceil_mode ? s - 1 : 0);
  int64_t out = (num >= 0 ? num / s : -((-num + s - 1) / s)) + 1;
  if (ceil_mode && (out - 1) * s >= in + p) --out;
  return out;
}

// One step of torch's max scan `val > max || isnan(val)`, branch-free so CPU loops vectorize
// (an index type I as wide as A keeps them in one vector width). A and I may also be GCC
// vectors of equal lane count and width (explicit SIMD paths): take is then a lane mask.
template <class A, class I>
FK_HOST_DEVICE void max_step(A v, I e, A& best, I& arg) {
  const auto take = v > best || v != v;
  best = take ? v : best;
  arg = take ? e : arg;
}

// Calls f(e) for the flat index e = y*W + x of each element of a dilated window inside the
// input, row by row: the scan order of max pooling.
template <class F>
FK_HOST_DEVICE void for_each_window_elem(const Pool2dParams& q, int64_t oy, int64_t ox, F f) {
  const int64_t y0 = oy * q.sh - q.ph, x0 = ox * q.sw - q.pw;
  for (int64_t i = 0; i < q.kh; ++i) {
    const int64_t y = y0 + i * q.dh;
    if (y < 0 || y >= q.h) continue;
    for (int64_t j = 0; j < q.kw; ++j) {
      const int64_t x = x0 + j * q.dw;
      if (x < 0 || x >= q.w) continue;
      f(y * q.w + x);
    }
  }
}

// Max over a dilated window; returns the flat index h*W + w of the maximum: the first of
// equal maxima, and the last NaN if any (torch's `val > max || isnan(val)` scan).
template <class A, class Load>
FK_HOST_DEVICE int64_t max_window(const Pool2dParams& q, int64_t oy, int64_t ox, Load load, A& best) {
  int64_t arg = -1;
  bool have = false;
  for_each_window_elem(q, oy, ox, [&](int64_t e) {
    const A v = load(e);
    if (!have) {
      best = v;
      arg = e;
      have = true;
    } else {
      max_step(v, e, best, arg);
    }
  });
  return arg;
}

// Average-pool window [y0, y1) x [x0, x1), clipped to the input, and its divisor.
struct AvgWindow {
  int64_t y0, y1, x0, x1, divisor;
};

FK_HOST_DEVICE AvgWindow avg_window(const Pool2dParams& q, int64_t oy, int64_t ox) {
  int64_t y0 = oy * q.sh - q.ph, x0 = ox * q.sw - q.pw;
  int64_t y1 = y0 + q.kh, x1 = x0 + q.kw;
  y1 = y1 < q.h + q.ph ? y1 : q.h + q.ph;
  x1 = x1 < q.w + q.pw ? x1 : q.w + q.pw;
  const int64_t padded = (y1 - y0) * (x1 - x0);
  y0 = y0 > 0 ? y0 : 0;
  x0 = x0 > 0 ? x0 : 0;
  y1 = y1 < q.h ? y1 : q.h;
  x1 = x1 < q.w ? x1 : q.w;
  const int64_t divisor =
      q.divisor_override ? q.divisor_override : (q.count_include_pad ? padded : (y1 - y0) * (x1 - x0));
  return {y0, y1, x0, x1, divisor};
}

// Outputs whose window (stride s, dilated extent e = d(k-1)+1, padding p) can contain
// input coordinate i: [first, last], clipped to [0, out).
FK_HOST_DEVICE void covering_outputs(int64_t i, int64_t s, int64_t e, int64_t p, int64_t out, int64_t& first,
                                     int64_t& last) {
  const int64_t lo = i + p - e + 1;  // o*s >= lo
  first = lo <= 0 ? 0 : (lo + s - 1) / s;
  last = (i + p) / s;
  if (last > out - 1) last = out - 1;
}

}  // namespace fusekit
