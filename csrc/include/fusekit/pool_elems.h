// One output (forward) or one input gradient (backward) of max/avg pooling: the bodies of
// the CPU loops and the CUDA kernels. Backward passes gather over the covering outputs in a
// fixed order (no scatter, no atomics), so results are deterministic.
#pragma once
#include "fusekit/dtype.h"
#include "fusekit/math/pool.h"

namespace fusekit {

template <class S>
FK_HOST_DEVICE void max_fwd(const Pool2dParams& q, const S* in, S* out, int64_t* idx, int64_t oy, int64_t ox) {
  using A = compute_t<S>;
  A best = A(0);
  const int64_t arg = max_window<A>(q, oy, ox, [&](int64_t i) { return load(in, i); }, best);
  store(out, oy * q.ow + ox, best);
  idx[oy * q.ow + ox] = arg;
}

template <class S>
FK_HOST_DEVICE void max_bwd(const Pool2dParams& q, const S* gout, const int64_t* idx, S* gin, int64_t y, int64_t x) {
  using A = compute_t<S>;
  int64_t oy0, oy1, ox0, ox1;
  covering_outputs(y, q.sh, q.dh * (q.kh - 1) + 1, q.ph, q.oh, oy0, oy1);
  covering_outputs(x, q.sw, q.dw * (q.kw - 1) + 1, q.pw, q.ow, ox0, ox1);
  const int64_t me = y * q.w + x;
  A acc = A(0);
  for (int64_t oy = oy0; oy <= oy1; ++oy)
    for (int64_t ox = ox0; ox <= ox1; ++ox)
      if (idx[oy * q.ow + ox] == me) acc = acc + load(gout, oy * q.ow + ox);
  store(gin, me, acc);
}

template <class S>
FK_HOST_DEVICE void avg_fwd(const Pool2dParams& q, const S* in, S* out, int64_t oy, int64_t ox) {
  using A = compute_t<S>;
  const AvgWindow w = avg_window(q, oy, ox);
  A sum = A(0);
  for (int64_t y = w.y0; y < w.y1; ++y)
    for (int64_t x = w.x0; x < w.x1; ++x) sum = sum + load(in, y * q.w + x);
  const bool empty = w.y0 >= w.y1 || w.x0 >= w.x1;
  store(out, oy * q.ow + ox, empty ? A(0) : sum / A(w.divisor));
}

template <class S>
FK_HOST_DEVICE void avg_bwd(const Pool2dParams& q, const S* gout, S* gin, int64_t y, int64_t x) {
  using A = compute_t<S>;
  int64_t oy0, oy1, ox0, ox1;
  covering_outputs(y, q.sh, q.kh, q.ph, q.oh, oy0, oy1);
  covering_outputs(x, q.sw, q.kw, q.pw, q.ow, ox0, ox1);
  A acc = A(0);
  for (int64_t oy = oy0; oy <= oy1; ++oy)
    for (int64_t ox = ox0; ox <= ox1; ++ox) {
      const AvgWindow w = avg_window(q, oy, ox);
      if (y >= w.y0 && y < w.y1 && x >= w.x0 && x < w.x1) acc = acc + load(gout, oy * q.ow + ox) / A(w.divisor);
    }
  store(gin, y * q.w + x, acc);
}

// Non-overlapping windows fully inside the input (kernel == stride, no padding, dilation
// 1, floor mode): the common 2x2/2 case. One output row of the forward pass, without
// per-element bounds checks; same tie/NaN rule as max_window.
FK_HOST_DEVICE bool pool_tiles(const Pool2dParams& q) {
  return q.kh == q.sh && q.kw == q.sw && q.ph == 0 && q.pw == 0 && q.dh == 1 && q.dw == 1 &&
         q.oh * q.sh <= q.h && q.ow * q.sw <= q.w;
}

template <class S>
FK_HOST_DEVICE void max_fwd_tile_row(const Pool2dParams& q, const S* in, S* out, int64_t* idx, int64_t oy) {
  using A = compute_t<S>;
  const int64_t y0 = oy * q.sh;
  for (int64_t ox = 0; ox < q.ow; ++ox) {
    const int64_t x0 = ox * q.sw;
    A best = load(in, y0 * q.w + x0);
    int64_t arg = y0 * q.w + x0;
    for (int64_t i = 0; i < q.kh; ++i)
      for (int64_t j = (i == 0 ? 1 : 0); j < q.kw; ++j) {
        const int64_t e = (y0 + i) * q.w + x0 + j;
        max_step(load(in, e), e, best, arg);
      }
    store(out, oy * q.ow + ox, best);
    idx[oy * q.ow + ox] = arg;
  }
}

// Backward of one output row for tiles: each input has at most one window.
template <class S>
FK_HOST_DEVICE void max_bwd_tile_row(const Pool2dParams& q, const S* gout, const int64_t* idx, S* gin, int64_t oy) {
  using A = compute_t<S>;
  for (int64_t i = 0; i < q.kh; ++i)
    for (int64_t x = 0; x < q.w; ++x) store(gin, (oy * q.sh + i) * q.w + x, A(0));
  for (int64_t ox = 0; ox < q.ow; ++ox) store(gin, idx[oy * q.ow + ox], load(gout, oy * q.ow + ox));
}

// Backward of one plane from int64 indices (CPU): tile rows when no input has two windows.
// Always inlined like the rest: the per-ISA files call it too, and one out-of-line copy built
// for AVX-512 must never serve the baseline code.
template <class S> FK_HOST_DEVICE void max_bwd_plane(const Pool2dParams& q, const S* gout, const int64_t* idx, S* gin) {
  if (pool_tiles(q)) {
    for (int64_t oy = 0; oy < q.oh; ++oy) max_bwd_tile_row<S>(q, gout, idx, gin, oy);
    // rows below the last window get no gradient
    for (int64_t e = q.oh * q.sh * q.w; e < q.h * q.w; ++e) store(gin, e, compute_t<S>(0));
    return;
  }
  for (int64_t y = 0; y < q.h; ++y)
    for (int64_t x = 0; x < q.w; ++x) max_bwd<S>(q, gout, idx, gin, y, x);
}

}  // namespace fusekit
