// conv2d passes as element functions run by the CUDA kernels and by the CPU's direct path
// (ConvArgs::direct, so the CPU tests cover the GPU's math): forward and input-gradient
// elements gather their taps (a direct convolution, no im2col); weight and bias gradients
// reduce over (n, oy, ox) in a fixed order. Half types sum in float32.
#pragma once
#include "fusekit/dtype.h"
#include "fusekit/math/conv.h"

namespace fusekit {

// Sums are two-level everywhere: the taps of one channel pair are summed first, then added
// to the total channel by channel (or row by row for the weight gradient), so a long
// reduction does not accumulate into one running sum.

// Output element (oy, ox) of channel oc of one image: start (the bias or 0) plus, channel by
// channel of oc's group, that channel's taps in (ky, kx) order.
template <class S, class A>
FK_HOST_DEVICE A conv_fwd_elem(const Conv2dParams& q, const S* in_n, const S* w, int64_t oc, int64_t oy, int64_t ox,
                               A start) {
  const int64_t cig = q.ci / q.groups, cog = q.co / q.groups, g = oc / cog;
  A acc = start;
  for (int64_t icl = 0; icl < cig; ++icl) {
    const S* in_c = in_n + (g * cig + icl) * q.h * q.w;
    const S* wk = w + (oc * cig + icl) * q.kh * q.kw;
    A t = A(0);
    for (int64_t ky = 0; ky < q.kh; ++ky) {
      const int64_t iy = oy * q.sh - q.ph + ky * q.dh;
      if (iy < 0 || iy >= q.h) continue;
      for (int64_t kx = 0; kx < q.kw; ++kx) {
        const int64_t ix = ox * q.sw - q.pw + kx * q.dw;
        if (ix < 0 || ix >= q.w) continue;
        t = t + load(wk, ky * q.kw + kx) * load(in_c, iy * q.w + ix);
      }
    }
    acc = acc + t;
  }
  return acc;
}

// Input-gradient element (y, x) of channel ic of one image: output channel by output channel
// of ic's group, the taps (in (ky, kx) order) whose window reads (y, x): a gather, no scatter.
template <class S, class A>
FK_HOST_DEVICE A conv_bwd_input_elem(const Conv2dParams& q, const S* gout_n, const S* w, int64_t ic, int64_t y,
                                     int64_t x) {
  const int64_t cig = q.ci / q.groups, cog = q.co / q.groups, g = ic / cig, icl = ic % cig;
  A acc = A(0);
  for (int64_t ocl = 0; ocl < cog; ++ocl) {
    const int64_t oc = g * cog + ocl;
    const S* go = gout_n + oc * q.oh * q.ow;
    const S* wk = w + (oc * cig + icl) * q.kh * q.kw;
    A t = A(0);
    for (int64_t ky = 0; ky < q.kh; ++ky) {
      const int64_t ty = y + q.ph - ky * q.dh;
      if (ty < 0 || ty % q.sh || ty / q.sh >= q.oh) continue;
      for (int64_t kx = 0; kx < q.kw; ++kx) {
        const int64_t tx = x + q.pw - kx * q.dw;
        if (tx < 0 || tx % q.sw || tx / q.sw >= q.ow) continue;
        t = t + load(wk, ky * q.kw + kx) * load(go, ty / q.sh * q.ow + tx / q.sw);
      }
    }
    acc = acc + t;
  }
  return acc;
}

// d loss / d w[oc, icl, ky, kx] over images [n0, n1), rows oy in order.
template <class S, class A>
FK_HOST_DEVICE A conv_bwd_weight_elem(const Conv2dParams& q, const S* in, const S* gout, int64_t oc, int64_t icl,
                                      int64_t ky, int64_t kx, int64_t n0, int64_t n1) {
  const int64_t cig = q.ci / q.groups, cog = q.co / q.groups, ic = (oc / cog) * cig + icl;
  int64_t oy0, oy1, ox0, ox1;
  tap_range(q.h, q.oh, q.sh, q.ph, ky * q.dh, oy0, oy1);
  tap_range(q.w, q.ow, q.sw, q.pw, kx * q.dw, ox0, ox1);
  A acc = A(0);
  for (int64_t n = n0; n < n1; ++n) {
    const S* in_c = in + (n * q.ci + ic) * q.h * q.w;
    const S* go = gout + (n * q.co + oc) * q.oh * q.ow;
    for (int64_t oy = oy0; oy < oy1; ++oy) {
      const int64_t base = (oy * q.sh - q.ph + ky * q.dh) * q.w - q.pw + kx * q.dw;
      A row = A(0);
      for (int64_t ox = ox0; ox < ox1; ++ox) row = row + load(go, oy * q.ow + ox) * load(in_c, base + ox * q.sw);
      acc = acc + row;
    }
  }
  return acc;
}

template <class S, class A>
FK_HOST_DEVICE A conv_bwd_bias_elem(const Conv2dParams& q, const S* gout, int64_t oc) {
  A acc = A(0);
  for (int64_t n = 0; n < q.n; ++n) {
    const S* go = gout + (n * q.co + oc) * q.oh * q.ow;
    A plane = A(0);
    for (int64_t e = 0; e < q.oh * q.ow; ++e) plane = plane + load(go, e);
    acc = acc + plane;
  }
  return acc;
}

}  // namespace fusekit
