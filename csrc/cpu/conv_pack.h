// Packing for the CPU convolution GEMMs: a block of columns of the implicit im2col matrix
// (rows k = (channel, ky, kx), columns j = (image, oy, ox)) copied into a small buffer that
// stays in cache. Only one block per thread exists at a time: never the batch's im2col.
// Included only by the per-ISA kernels, so everything here lives in the ISA's namespace
// (one inline function compiled for AVX-512 must never be linked into the scalar path).
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstdint>

#include <memory>

#include "cpu/conv_gemm.h"
#include "cpu/simd.h"
#include "fusekit/dtype.h"

namespace fusekit::cpu::FK_ISA {

// The operand a convolution reads: per image c planes of h x w, windows kh x kw with stride
// s, padding p (may be negative) and dilation d, giving oh x ow columns per image. u > 1
// reads the planes as if u-1 zeros sat between their elements: the input gradient of a
// strided convolution is this stride-1 convolution of the upsampled output gradient.
struct ConvGeom {
  int64_t c, h, w, uh, uw, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow;
  int64_t img_stride;  // elements between images
  int64_t rows() const { return c * kh * kw; }
  int64_t plane() const { return oh * ow; }
};

// Columns [j, j + len) of a block that share one image and one output row.
struct RowSeg {
  int64_t n, oy, ox, j, len;
};

// Splits block columns [j0, j0 + len) into segs (room for len + 1); returns the count.
inline int64_t row_segments(const ConvGeom& g, int64_t j0, int64_t len, RowSeg* segs) {
  int64_t count = 0;
  for (int64_t j = 0; j < len;) {
    const int64_t col = j0 + j, n = col / g.plane(), p = col % g.plane(), oy = p / g.ow, ox = p % g.ow;
    const int64_t take = std::min(g.ow - ox, len - j);
    segs[count++] = {n, oy, ox, j, take};
    j += take;
  }
  return count;
}

// Real index of virtual coordinate v along an axis of size `size` upsampled by u, or -1.
inline int64_t upsampled(int64_t v, int64_t u, int64_t size) {
  if (v < 0) return -1;
  if (u != 1) {
    if (v % u) return -1;
    v /= u;
  }
  return v < size ? v : -1;
}

// dst[k * rs + j * cs] = im2col(in)[k][j0 + j] for the block's columns, in A. `in` points at
// the group's first channel of image 0. Transposed: rs = 1 and cs = the row length.
template <class S, class A, bool Transposed>
void pack_cols(const ConvGeom& g, const S* in, const RowSeg* segs, int64_t nsegs, int64_t ld, A* dst) {
  const int64_t K = g.rows(), rs = Transposed ? 1 : ld, cs = Transposed ? ld : 1;
  const bool contiguous = g.sw == 1;
  for (int64_t k = 0; k < K; ++k) {
    const int64_t ch = k / (g.kh * g.kw), ky = (k / g.kw) % g.kh, kx = k % g.kw;
    A* row = dst + k * rs;
    for (int64_t si = 0; si < nsegs; ++si) {
      const RowSeg& s = segs[si];
      A* d = row + s.j * cs;
      const int64_t iy = upsampled(s.oy * g.sh - g.ph + ky * g.dh, g.uh, g.h);
      if (iy < 0) {
        for (int64_t t = 0; t < s.len; ++t) d[t * cs] = A(0);
        continue;
      }
      const S* src = in + s.n * g.img_stride + (ch * g.h + iy) * g.w;
      const int64_t x0 = s.ox * g.sw - g.pw + kx * g.dw;
      if (g.uw == 1) {  // columns t with 0 <= x0 + t * sw < w read the row, the rest are padding
        const int64_t first = x0 >= 0 ? 0 : (g.sw - 1 - x0) / g.sw, end = g.w > x0 ? (g.w - x0 + g.sw - 1) / g.sw : 0;
        const int64_t lo = std::clamp<int64_t>(first, 0, s.len), hi = std::clamp<int64_t>(end, lo, s.len);
        for (int64_t t = 0; t < lo; ++t) d[t * cs] = A(0);
        if (contiguous)
          for (int64_t t = lo; t < hi; ++t) d[t * cs] = static_cast<A>(load(src, x0 + t));
        else
          for (int64_t t = lo; t < hi; ++t) d[t * cs] = static_cast<A>(load(src, x0 + t * g.sw));
        for (int64_t t = hi; t < s.len; ++t) d[t * cs] = A(0);
      } else {
        for (int64_t t = 0; t < s.len; ++t) {
          const int64_t ix = upsampled(x0 + t * g.sw, g.uw, g.w);
          d[t * cs] = ix < 0 ? A(0) : static_cast<A>(load(src, ix));
        }
      }
    }
  }
}

// Zero-padded, phase-split rows of one image for the shifted kernels: for each channel ch and
// phase (py, px) (py < sh, px < sw) marked in `used`,
//   dst[ch * cs + ((py * sw + px) * rows_b + r) * wp + j] = in[ch][(i0 + r) * sh + py - ph][j * sw + px - pw]
// (0 outside the plane) for r < rows, j < wp. With stride 1 there is one phase: plain padded rows.
template <class S, class A>
void pack_padded_rows(const ConvGeom& g, const S* in, int64_t i0, int64_t rows, int64_t rows_b, int64_t wp,
                      int64_t cs, const bool* used, A* dst) {
  for (int64_t py = 0; py < g.sh; ++py)
    for (int64_t px = 0; px < g.sw; ++px) {
      if (!used[py * g.sw + px]) continue;
      // columns j with 0 <= j * sw + px - pw < w
      const int64_t x0 = px - g.pw, first = x0 >= 0 ? 0 : (g.sw - 1 - x0) / g.sw;
      const int64_t end = g.w > x0 ? (g.w - x0 + g.sw - 1) / g.sw : 0;
      const int64_t lo = std::clamp<int64_t>(first, 0, wp), hi = std::clamp<int64_t>(end, lo, wp);
      for (int64_t ch = 0; ch < g.c; ++ch)
        for (int64_t r = 0; r < rows; ++r) {
          A* d = dst + ch * cs + ((py * g.sw + px) * rows_b + r) * wp;
          const int64_t y = (i0 + r) * g.sh + py - g.ph;
          if (y < 0 || y >= g.h) {
            for (int64_t j = 0; j < wp; ++j) d[j] = A(0);
            continue;
          }
          const S* src = in + (ch * g.h + y) * g.w + x0;
          for (int64_t j = 0; j < lo; ++j) d[j] = A(0);
          if (g.sw == 1)
            for (int64_t j = lo; j < hi; ++j) d[j] = static_cast<A>(load(src, j));
          else
            for (int64_t j = lo; j < hi; ++j) d[j] = static_cast<A>(load(src, j * g.sw));
          for (int64_t j = hi; j < wp; ++j) d[j] = A(0);
        }
    }
}

// A row read at a shift per tap, one vector of columns at a time: for chunk cx (columns
// cx*W ..) and tap kx, lane l stands for column cx*W + l, which reads source column
// (cx*W + l) * stride + shift + kx*step; lanes whose column is < len and whose source column
// is in [0, src_len) are read (the rest are zeros: padding, or lanes past the row). With
// stride s > 1 the source rows are phase-split (split_phases): so a tap's columns are
// contiguous again, and off(kx, cx) is the element lane 0 reads.
template <class A> struct TapLanes {
  int64_t nx;  // chunks per row
  std::unique_ptr<int64_t[]> offs;
  std::unique_ptr<Lanes<A>[]> masks;
  int64_t off(int64_t kx, int64_t cx) const { return offs[kx * nx + cx]; }
  const Lanes<A>& lanes(int64_t kx, int64_t cx) const { return masks[kx * nx + cx]; }
};

// Elements of a row of n with x % s < phase: where phase `phase` starts in a split row.
inline int64_t phase_start(int64_t n, int64_t s, int64_t phase) {
  int64_t start = 0;
  for (int64_t p = 0; p < phase; ++p) start += (n - p + s - 1) / s;
  return start;
}

template <class A>
TapLanes<A> tap_lanes(int64_t len, int64_t src_len, int64_t shift, int64_t step, int64_t taps, int64_t stride = 1) {
  constexpr int W = kW<A>;
  const int64_t nx = (len + W - 1) / W;
  TapLanes<A> t{nx, std::unique_ptr<int64_t[]>(new int64_t[taps * nx]),
                std::unique_ptr<Lanes<A>[]>(new Lanes<A>[taps * nx])};
  for (int64_t kx = 0; kx < taps; ++kx) {
    const int64_t d = shift + kx * step, phase = (d % stride + stride) % stride, base = (d - phase) / stride;
    const int64_t plen = (src_len - phase + stride - 1) / stride, start = phase_start(src_len, stride, phase);
    for (int64_t cx = 0; cx < nx; ++cx) {
      const int64_t valid = std::min<int64_t>(W, len - cx * W), x0 = cx * W + base;
      const int64_t lo = std::clamp<int64_t>(-x0, 0, valid), hi = std::clamp<int64_t>(plen - x0, lo, valid);
      t.offs[kx * nx + cx] = start + x0;
      t.masks[kx * nx + cx] = make_lanes<A>(static_cast<int>(lo), static_cast<int>(hi));
    }
  }
  return t;
}

// dst row = src row's columns x grouped by x % s (phase 0 first), each phase in order.
template <class A> void split_phases(const A* src, A* dst, int64_t n, int64_t s) {
  for (int64_t p = 0, o = 0; p < s; ++p)
    for (int64_t x = p; x < n; x += s) dst[o++] = src[x];
}

template <class T> T* scratch(int slot, int64_t n) {
  return static_cast<T*>(conv_scratch(slot, static_cast<size_t>(n) * sizeof(T)));
}

}  // namespace fusekit::cpu::FK_ISA
