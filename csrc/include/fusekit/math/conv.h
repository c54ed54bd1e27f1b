// conv2d index math, shared by the CPU and CUDA kernels: output size, and the range of
// outputs along one axis whose tap (k) reads a valid input position.
#pragma once
#include <cstdint>

#include "fusekit/macros.h"

namespace fusekit {

struct Conv2dParams {
  int64_t n, ci, h, w;   // input (NCHW, contiguous)
  int64_t co, oh, ow;    // output
  int64_t kh, kw, sh, sw, ph, pw, dh, dw, groups;
};

FK_HOST_DEVICE int64_t conv_out_size(int64_t in, int64_t k, int64_t s, int64_t p, int64_t d) {
  return (in + 2 * p - d * (k - 1) - 1) / s + 1;
}

// Outputs o in [lo, hi) for which i = o*s - p + k*d lies in [0, in).
FK_HOST_DEVICE void tap_range(int64_t in, int64_t out, int64_t s, int64_t p, int64_t off, int64_t& lo, int64_t& hi) {
  // o*s >= p - off  and  o*s <= in - 1 + p - off
  const int64_t a = p - off, b = in - 1 + p - off;
  lo = a <= 0 ? 0 : (a + s - 1) / s;
  hi = b < 0 ? 0 : b / s + 1;
  if (hi > out) hi = out;
  if (lo > hi) lo = hi;
}

}  // namespace fusekit
