// conv2d passes as row operations shared by the CPU kernels and the CUDA kernels:
// forward and input-gradient accumulate whole output/input rows tap by tap (a direct
// convolution, no im2col); weight and bias gradients reduce over (n, oy, ox) in a fixed
// order. Every sum runs in the same order on both, in float32 for half types.
#pragma once
#include "fusekit/dtype.h"
#include "fusekit/math/conv.h"

namespace fusekit {

// Sums are two-level everywhere: the taps of one channel pair go into `tmp`, which is then
// added to the total channel by channel (or image by image for the weight gradient), so a
// long reduction does not accumulate into one running sum. The CUDA kernels use the same order.

// Calls f(ky, kx, oy, ox0, ox1, base) for every kernel tap and every output row it reaches:
// outputs ox in [ox0, ox1) read input element base + ox * sw of the (padded-away) plane.
template <class F> FK_HOST_DEVICE void for_each_tap_row(const Conv2dParams& q, F f) {
  for (int64_t ky = 0; ky < q.kh; ++ky) {
    int64_t oy0, oy1;
    tap_range(q.h, q.oh, q.sh, q.ph, ky * q.dh, oy0, oy1);
    for (int64_t kx = 0; kx < q.kw; ++kx) {
      int64_t ox0, ox1;
      tap_range(q.w, q.ow, q.sw, q.pw, kx * q.dw, ox0, ox1);
      for (int64_t oy = oy0; oy < oy1; ++oy)  // integer offsets: base may lie left of the plane
        f(ky, kx, oy, ox0, ox1, (oy * q.sh - q.ph + ky * q.dh) * q.w - q.pw + kx * q.dw);
    }
  }
}

// out_plane (A, oh*ow) += taps of output channel oc over its group's input channels.
template <class S, class A>
FK_HOST_DEVICE void conv_fwd_plane(const Conv2dParams& q, const S* in_n, const S* w, int64_t oc, A* acc, A* tmp) {
  const int64_t cig = q.ci / q.groups, cog = q.co / q.groups, g = oc / cog;
  for (int64_t icl = 0; icl < cig; ++icl) {
    for (int64_t e = 0; e < q.oh * q.ow; ++e) tmp[e] = A(0);
    const S* in_c = in_n + (g * cig + icl) * q.h * q.w;
    const S* wk = w + (oc * cig + icl) * q.kh * q.kw;
    for_each_tap_row(q, [&](int64_t ky, int64_t kx, int64_t oy, int64_t ox0, int64_t ox1, int64_t base) {
      const A wv = load(wk, ky * q.kw + kx);
      A* o = tmp + oy * q.ow;
      for (int64_t ox = ox0; ox < ox1; ++ox) o[ox] = o[ox] + wv * load(in_c, base + ox * q.sw);
    });
    for (int64_t e = 0; e < q.oh * q.ow; ++e) acc[e] = acc[e] + tmp[e];
  }
}

// gin_plane (A, h*w) += taps of input channel ic over its group's output channels.
template <class S, class A>
FK_HOST_DEVICE void conv_bwd_input_plane(const Conv2dParams& q, const S* gout_n, const S* w, int64_t ic, A* acc,
                                         A* tmp) {
  const int64_t cig = q.ci / q.groups, cog = q.co / q.groups, g = ic / cig, icl = ic % cig;
  for (int64_t ocl = 0; ocl < cog; ++ocl) {
    for (int64_t e = 0; e < q.h * q.w; ++e) tmp[e] = A(0);
    const int64_t oc = g * cog + ocl;
    const S* go = gout_n + oc * q.oh * q.ow;
    const S* wk = w + (oc * cig + icl) * q.kh * q.kw;
    for_each_tap_row(q, [&](int64_t ky, int64_t kx, int64_t oy, int64_t ox0, int64_t ox1, int64_t base) {
      const A wv = load(wk, ky * q.kw + kx);
      for (int64_t ox = ox0; ox < ox1; ++ox)
        tmp[base + ox * q.sw] = tmp[base + ox * q.sw] + wv * load(go, oy * q.ow + ox);
    });
    for (int64_t e = 0; e < q.h * q.w; ++e) acc[e] = acc[e] + tmp[e];
  }
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
