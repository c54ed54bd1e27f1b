// Weight gradient of a convolution without im2col (column strides > 1 read phase-split rows):
//   dw[i][ch][ky][kx] = sum over n, oy, ox of g[n][i][oy][ox] * x[n][ch][oy*sh - ph + ky*dh][ox*sw - pw + kx*dw]
// Each output row's columns sit in vector lanes; the input row is read at the tap's column
// offset with masked loads, so padding and the lanes past ow read nothing and add exact zeros
// (an inf next to the window never turns into inf * 0 = NaN). A register tile holds R output
// channels x KX taps of one (ch, ky) and runs over a fixed chunk of images; chunk partials are
// added in chunk order afterwards, so the result does not depend on the thread count.
#include <algorithm>
#include <memory>

#include "cpu/conv_gemm.h"
#include "cpu/conv_pack.h"
#include "cpu/simd.h"
#include "cpu/thread_pool.h"

namespace fusekit::cpu::FK_ISA {
namespace {

template <class A> struct RowPlan {
  const A* in;  // image 0, channel 0
  int64_t h, w, oh, kh, kw, sh, ph, dh, K;
  int64_t in_img, in_group;  // elements between images / between groups' first channels
  const TapLanes<A>* x;      // input columns of each (tap kx, output chunk)
};

// The output gradient of one row block of channels for a chunk of images, packed as
// gp[cx][n][oy][r][W] with zeros in the lanes past ow: the tiles stream it, instead of reading
// R rows a plane apart (planes of 4 KiB put them all in one L1 set).
template <class A> struct GradBlock {
  const A* gp;
  int64_t rows;  // channels in the block: the stride of r, in vectors
  int64_t images;
};

// part[(i0 + r) * K + k] = this chunk's sum for rows i0 .. i0 + R (r0 .. r0 + R of the block),
// taps kx0 .. kx0 + KX of (ch, ky).
template <class A, int R, int KX>
void tile(const RowPlan<A>& p, const GradBlock<A>& gb, int64_t gi, int64_t n0, int64_t r0, int64_t i0, int64_t ch,
          int64_t ky, int64_t kx0, A* part) {
  constexpr int W = kW<A>;
  using V = Vec<A>;
  V acc[R][KX];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
    for (int k = 0; k < KX; ++k) acc[r][k] = V{};
  // Locals, not p's fields: the loop has no stores, but GCC reloads fields under register pressure.
  const int64_t oh = p.oh, h = p.h, w = p.w, sh = p.sh, gstep = gb.rows * W;
  const int64_t y0 = ky * p.dh - p.ph;
  for (int64_t cx = 0; cx < p.x->nx; ++cx) {
    Lanes<A> xl[KX];
    int64_t xo[KX];
#pragma GCC unroll 8
    for (int k = 0; k < KX; ++k) {
      xl[k] = p.x->lanes(kx0 + k, cx);
      xo[k] = p.x->off(kx0 + k, cx);
    }
    for (int64_t n = 0; n < gb.images; ++n) {
      const A* gr = gb.gp + ((cx * gb.images + n) * oh) * gstep + r0 * W;
      const A* xr = p.in + (n0 + n) * p.in_img + gi * p.in_group + ch * h * w + y0 * w;
      for (int64_t oy = 0, iy = y0; oy < oh; ++oy, iy += sh, gr += gstep, xr += sh * w) {
        if (iy < 0 || iy >= h) continue;
        // The KX input vectors stay in registers and each gradient vector is loaded once:
        // R * KX + KX + 1 registers live.
        V x[KX];
#pragma GCC unroll 8
        for (int k = 0; k < KX; ++k) x[k] = load_lanes(xr + xo[k], xl[k]);
#pragma GCC unroll 8
        for (int r = 0; r < R; ++r) {
          V g = loadv(gr + r * W);
          in_register(g);
#pragma GCC unroll 8
          for (int k = 0; k < KX; ++k) acc[r][k] = fmadd(g, x[k], acc[r][k]);
        }
      }
    }
  }
  const int64_t k0 = (ch * p.kh + ky) * p.kw + kx0;
  // fully unrolled like the loops above: an indexed acc would live on the stack
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
    for (int k = 0; k < KX; ++k) part[(i0 + r) * p.K + k0 + k] = hsum<A>(acc[r][k]);
}

template <class A>
using TileFn = void (*)(const RowPlan<A>&, const GradBlock<A>&, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t,
                        int64_t, A*);

// Largest R in {1, 2, 4, 8} whose tile fits the vector registers with its loads:
// R * KX accumulators + KX inputs + 1 gradient row (32 registers on AVX-512, 16 elsewhere).
constexpr int max_rows(int kx) {
  const int regs = kVB == 64 ? 32 : 16;
  int r = 8;
  while (r > 1 && r * kx + kx + 1 > regs) r /= 2;
  return r;
}

template <class A, int KX> TileFn<A> pick_rows(int r) {
  constexpr int top = max_rows(KX);
  if constexpr (top >= 8) if (r == 8) return tile<A, 8, KX>;
  if constexpr (top >= 4) if (r == 4) return tile<A, 4, KX>;
  if constexpr (top >= 2) if (r == 2) return tile<A, 2, KX>;
  return tile<A, 1, KX>;
}

template <class A> TileFn<A> pick(int r, int kx) {
  switch (kx) {
    case 1: return pick_rows<A, 1>(r);
    case 2: return pick_rows<A, 2>(r);
    case 3: return pick_rows<A, 3>(r);
    case 4: return pick_rows<A, 4>(r);
    case 5: return pick_rows<A, 5>(r);
    case 6: return pick_rows<A, 6>(r);
    case 7: return pick_rows<A, 7>(r);
    default: return pick_rows<A, 8>(r);
  }
}

constexpr int kMaxKX = 8;

template <class A> void run(const ConvArgs& a) {
  constexpr int W = kW<A>;
  const Conv2dParams& q = a.q;
  const int64_t m = q.co / q.groups, c = q.ci / q.groups, K = c * q.kh * q.kw;
  const TapLanes<A> xl = tap_lanes<A>(q.ow, q.w, -q.pw, q.dw, q.kw, q.sw), gl = tap_lanes<A>(q.ow, q.ow, 0, 0, 1);
  const int64_t nx = xl.nx;
  const A* gout = reinterpret_cast<const A*>(a.grad_out);
  const A* in = reinterpret_cast<const A*>(a.input);
  std::unique_ptr<A[]> split;  // column stride > 1: input rows phase-split (see tap_lanes)
  if (q.sw > 1) {
    split.reset(new A[q.n * q.ci * q.h * q.w]);
    auto rows = [&](int64_t r) { split_phases(in + r * q.w, split.get() + r * q.w, q.w, q.sw); };
    parallel_for(a.num_threads, q.n * q.ci * q.h, rows);
    in = split.get();
  }
  const RowPlan<A> p{in, q.h, q.w, q.oh, q.kh, q.kw, q.sh, q.ph, q.dh, K, q.ci * q.h * q.w, c * q.h * q.w, &xl};
  // Images per chunk, a function of the shape only: up to 64 row vectors per tile, so a lane's
  // FMA chain stays about as short as the GEMMs' blocks (longer doubled the error against
  // float64 on rows of 40), and at most 4M partial elements.
  int64_t per = std::clamp<int64_t>(64 / (q.oh * nx), 1, q.n);
  while (per < q.n && (q.n + per - 1) / per * q.co * K > (int64_t{1} << 22)) per *= 2;
  const int64_t chunks = (q.n + per - 1) / per;
  // Row blocks of the widest tile; the remainder m % R in power-of-two pieces.
  const int rmax = max_rows(static_cast<int>(std::min<int64_t>(q.kw, kMaxKX)));
  const int64_t blocks = (m + rmax - 1) / rmax;
  auto partial = std::unique_ptr<A[]>(new A[chunks * q.co * K]);
  auto task = [&](int64_t t) {
    const int64_t b = t % blocks, gi = t / blocks % q.groups, ch0 = t / (blocks * q.groups);
    const int64_t n0 = ch0 * per, n1 = std::min(q.n, n0 + per), ib = b * rmax, rows = std::min<int64_t>(m - ib, rmax);
    A* part = partial.get() + (ch0 * q.groups + gi) * m * K;
    A* gp = scratch<A>(0, nx * (n1 - n0) * q.oh * rows * W);
    for (int64_t cx = 0; cx < nx; ++cx)
      for (int64_t n = n0; n < n1; ++n)
        for (int64_t oy = 0; oy < q.oh; ++oy)
          for (int64_t r = 0; r < rows; ++r) {
            const A* src = gout + ((n * q.co + gi * m + ib + r) * q.oh + oy) * q.ow + cx * W;
            storev(gp + (((cx * (n1 - n0) + n - n0) * q.oh + oy) * rows + r) * W, load_lanes(src, gl.lanes(0, cx)));
          }
    const GradBlock<A> gb{gp, rows, n1 - n0};
    int64_t i0 = ib;
    for (int r = rmax; r > 0; r /= 2)
      for (; i0 + r <= ib + rows; i0 += r)
        for (int64_t ch = 0; ch < c; ++ch)
          for (int64_t ky = 0; ky < q.kh; ++ky)
            for (int64_t kx0 = 0; kx0 < q.kw; kx0 += kMaxKX) {
              const int kx = static_cast<int>(std::min<int64_t>(kMaxKX, q.kw - kx0));
              pick<A>(r, kx)(p, gb, gi, n0, i0 - ib, i0, ch, ky, kx0, part);
            }
  };
  parallel_for(a.num_threads, chunks * q.groups * blocks, task);
  A* gw = reinterpret_cast<A*>(a.grad_weight);
  const int64_t total = q.co * K;
  auto combine = [&](int64_t r) {  // one output channel; chunks added in order, rows contiguous
    A* dst = gw + r * K;
    const A* src = partial.get() + r * K;
    for (int64_t k = 0; k < K; ++k) dst[k] = src[k];
    for (int64_t ch = 1; ch < chunks; ++ch)
      for (int64_t k = 0; k < K; ++k) dst[k] = dst[k] + src[ch * total + k];
  };
  parallel_for(a.num_threads, q.co, combine);
}

}  // namespace

bool weight_grad_rows(const ConvArgs& a) {
  if (a.dtype == DType::Float32) run<float>(a);
  else if (a.dtype == DType::Float64) run<double>(a);
  else return false;
  return true;
}

}  // namespace fusekit::cpu::FK_ISA
