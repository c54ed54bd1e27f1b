// Input gradient of a stride-1 convolution without im2col or a padded copy:
//   dx[n][c][iy][ix] = sum over ky, kx, oc of w[oc][c][ky][kx] * g[n][oc][iy + ph - ky*dh][ix + pw - kx*dw]
// Input columns sit in vector lanes; each gradient row is read at the tap's shift with masked
// loads, so padding and the lanes past a row add exact zeros (never inf * 0). A register tile
// holds T input rows x R channels. Each element is summed in (ky, kx, oc) order by one task,
// two-level like the GEMM kernels: FMA chains over blocks of about 64 terms, each block added to
// the element in memory in order. Blocks and tiles are functions of the shape only. Stride-1
// forward passes with few output channels per group (depthwise) run here too (forward_rows).
#include <algorithm>
#include <memory>

#include "cpu/conv_gemm.h"
#include "cpu/conv_pack.h"
#include "cpu/simd.h"
#include "cpu/thread_pool.h"

namespace fusekit::cpu::FK_ISA {
namespace {

template <class A> struct DgradPlan {
  const A* gout;
  const A* wp;  // [group][ky][kx][oc][c]: a tile's R channels contiguous
  A* gin;
  const A* bias;  // per gin channel, the sums' start (forward_rows), or null: zero
  int64_t ci, co, cig, m, h, w, oh, ow, kh, kw, ph, dh;
  const TapLanes<A>* g;    // gradient columns per (tap kx, input chunk)
  const TapLanes<A>* out;  // lanes of each input chunk inside the row
};

// Terms (kx in [kx0, kx1), oc in [oc0, oc1)) of tap row ky into acc. Full: all T rows have a
// gradient row for ky (the tile's interior); otherwise the others load nothing (zeros).
template <class A, int R, int T, bool Full>
inline void accumulate(const DgradPlan<A>& p, const A* const* rows, const bool* valid, int64_t ky, int64_t kx0,
                       int64_t kx1, int64_t oc0, int64_t oc1, int64_t cx, const A* wg, Vec<A> (&acc)[T][R]) {
  using V = Vec<A>;
  const int64_t plane = p.oh * p.ow, m = p.m, cig = p.cig;
  const Lanes<A> none = make_lanes<A>(0, 0);
  for (int64_t kx = kx0; kx < kx1; ++kx) {
    const Lanes<A> lanes = p.g->lanes(kx, cx);
    Lanes<A> lt[T];
#pragma GCC unroll 16
    for (int t = 0; t < T; ++t) lt[t] = Full || valid[t] ? lanes : none;
    const int64_t off = p.g->off(kx, cx);
    const A* wk = wg + (ky * p.kw + kx) * m * cig;
    for (int64_t oc = oc0; oc < oc1; ++oc) {
      V gv[T];
#pragma GCC unroll 16
      for (int t = 0; t < T; ++t) {
        gv[t] = load_lanes(rows[t] + oc * plane + off, Full ? lanes : lt[t]);
        in_register(gv[t]);
      }
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) {
        V wv = splat(wk[oc * cig + r]);
        in_register(wv);  // one broadcast per channel, not one per FMA
#pragma GCC unroll 16
        for (int t = 0; t < T; ++t) acc[t][r] = fmadd(wv, gv[t], acc[t][r]);
      }
    }
  }
}

constexpr int64_t kSumBlock = 64;

// Rows iy0 .. iy0 + T, channels c0 .. c0 + R of group gi, input chunk cx, image n.
template <class A, int R, int T>
void tile(const DgradPlan<A>& p, int64_t n, int64_t gi, int64_t c0, int64_t iy0, int64_t cx) {
  using V = Vec<A>;
  constexpr int W = kW<A>;
  V acc[T][R];
  const int64_t plane = p.oh * p.ow;
  const A* img = p.gout + (n * p.co + gi * p.m) * plane;
  const A* wg = p.wp + gi * p.kh * p.kw * p.m * p.cig + c0;
  const Lanes<A> lanes = p.out->lanes(0, cx);
  A* dst = p.gin + ((n * p.ci + gi * p.cig + c0) * p.h + iy0) * p.w + cx * W;
  V init[R];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) init[r] = p.bias ? splat(p.bias[gi * p.cig + c0 + r]) : V{};
  // Blocks of about kSumBlock terms: whole tap rows (kyb of them) when a row has few terms
  // (depthwise), kx runs of kxb taps when m is small, oc runs of kSumBlock else.
  const int64_t kyb = std::max<int64_t>(1, kSumBlock / (p.kw * p.m));
  const int64_t kxb = std::max<int64_t>(1, kSumBlock / p.m), ocb = std::min(p.m, kSumBlock);
  bool first = true;
  for (int64_t ky0 = 0; ky0 < p.kh; ky0 += kyb)
    for (int64_t kx0 = 0; kx0 < p.kw; kx0 += kxb)
      for (int64_t oc0 = 0; oc0 < p.m; oc0 += ocb) {
#pragma GCC unroll 16
        for (int t = 0; t < T; ++t)
#pragma GCC unroll 8
          for (int r = 0; r < R; ++r) acc[t][r] = V{};
        const int64_t kx1 = std::min(p.kw, kx0 + kxb), oc1 = std::min(p.m, oc0 + ocb);
        bool any = false;
        for (int64_t ky = ky0; ky < std::min(p.kh, ky0 + kyb); ++ky) {
          const A* rows[T];
          bool valid[T];
          int nvalid = 0;
#pragma GCC unroll 16
          for (int t = 0; t < T; ++t) {
            const int64_t oy = iy0 + t + p.ph - ky * p.dh;
            valid[t] = oy >= 0 && oy < p.oh;
            rows[t] = img + (valid[t] ? oy : 0) * p.ow;  // a masked-off load never reads it
            nvalid += valid[t];
          }
          if (nvalid == 0) continue;
          any = true;
          if (nvalid == T) accumulate<A, R, T, true>(p, rows, valid, ky, kx0, kx1, oc0, oc1, cx, wg, acc);
          else accumulate<A, R, T, false>(p, rows, valid, ky, kx0, kx1, oc0, oc1, cx, wg, acc);
        }
        if (!any) continue;
#pragma GCC unroll 16
        for (int t = 0; t < T; ++t)
#pragma GCC unroll 8
          for (int r = 0; r < R; ++r) {
            A* d = dst + (r * p.h + t) * p.w;
            store_lanes(d, (first ? init[r] : load_lanes(d, lanes)) + acc[t][r], lanes);
          }
        first = false;
      }
  if (first)  // no tap reaches these rows (padding wider than the kernel)
#pragma GCC unroll 16
    for (int t = 0; t < T; ++t)
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) store_lanes(dst + (r * p.h + t) * p.w, init[r], lanes);
}

template <class A> using TileFn = void (*)(const DgradPlan<A>&, int64_t, int64_t, int64_t, int64_t, int64_t);

// Rows per tile for R channels: R * T accumulators + T gradient vectors + 1 broadcast in the
// vector registers (32 on AVX-512, 16 elsewhere).
constexpr int max_tile_rows(int r) {
  const int regs = kVB == 64 ? 32 : 16;
  return (regs - 1) / (r + 1);
}

template <class A, int R> TileFn<A> pick_rows(bool full) {
  return full ? tile<A, R, max_tile_rows(R)> : tile<A, R, 1>;
}

template <class A> TileFn<A> pick(int r, bool full) {
  switch (r) {
    case 8: return pick_rows<A, 8>(full);
    case 4: return pick_rows<A, 4>(full);
    case 2: return pick_rows<A, 2>(full);
    default: return pick_rows<A, 1>(full);
  }
}

constexpr int kMaxR = 8;

template <class A> void run(const ConvArgs& a, const A* bias) {
  const Conv2dParams& q = a.q;
  const int64_t cig = q.ci / q.groups, m = q.co / q.groups;
  const A* w = reinterpret_cast<const A*>(a.weight);
  auto wp = std::unique_ptr<A[]>(new A[q.co * cig * q.kh * q.kw]);
  for (int64_t gi = 0; gi < q.groups; ++gi)
    for (int64_t oc = 0; oc < m; ++oc)
      for (int64_t c = 0; c < cig; ++c)
        for (int64_t ky = 0; ky < q.kh; ++ky)
          for (int64_t kx = 0; kx < q.kw; ++kx)
            wp[(((gi * q.kh + ky) * q.kw + kx) * m + oc) * cig + c] = w[(((gi * m + oc) * cig + c) * q.kh + ky) * q.kw + kx];
  const TapLanes<A> gl = tap_lanes<A>(q.w, q.ow, q.pw, -q.dw, q.kw), ol = tap_lanes<A>(q.w, q.w, 0, 0, 1);
  const DgradPlan<A> p{reinterpret_cast<const A*>(a.grad_out), wp.get(), reinterpret_cast<A*>(a.grad_input), bias, q.ci,
                       q.co, cig, m, q.h, q.w, q.oh, q.ow, q.kh, q.kw, q.ph, q.dh, &gl, &ol};
  const int64_t cblocks = (cig + kMaxR - 1) / kMaxR;
  // Bands of rows per task, enough for 16 tasks: a function of the shape (not of the thread
  // count), so the tiling, and with it the sign of an exact zero, never changes with threads.
  int64_t band = q.h;
  while (band > 1 && q.n * q.groups * cblocks * ((q.h + band - 1) / band) < 16) band = (band + 1) / 2;
  const int64_t bands = (q.h + band - 1) / band;
  auto task = [&](int64_t t) {
    const int64_t y0 = t % bands * band, y1 = std::min(q.h, y0 + band), b = t / bands % cblocks;
    const int64_t gi = t / (bands * cblocks) % q.groups, n = t / (bands * cblocks * q.groups);
    const int64_t cb = b * kMaxR, ce = std::min(cig, cb + kMaxR);
    int64_t c0 = cb;
    for (int r = kMaxR; r > 0; r /= 2)
      for (; c0 + r <= ce; c0 += r) {
        const int64_t rows = max_tile_rows(r);
        for (int64_t cx = 0; cx < gl.nx; ++cx) {
          int64_t iy = y0;
          for (const TileFn<A> f = pick<A>(r, true); iy + rows <= y1; iy += rows) f(p, n, gi, c0, iy, cx);
          for (const TileFn<A> f = pick<A>(r, false); iy < y1; ++iy) f(p, n, gi, c0, iy, cx);
        }
      }
  };
  parallel_for(a.num_threads, q.n * q.groups * cblocks * bands, task);
}

// A stride-1 forward pass is the input gradient of the convolution with in/out channels
// swapped, the kernel flipped and padding d(k-1) - p: the input plays the output gradient,
// the output the input gradient, and the bias starts each sum.
template <class A> void forward_as_dgrad(const ConvArgs& a) {
  const Conv2dParams& q = a.q;
  const int64_t cig = q.ci / q.groups, m = q.co / q.groups, taps = q.kh * q.kw;
  const A* w = reinterpret_cast<const A*>(a.weight);
  auto wt = std::unique_ptr<A[]>(new A[q.co * cig * taps]);  // [group * cig + c][oc][flipped tap]
  for (int64_t gi = 0; gi < q.groups; ++gi)
    for (int64_t c = 0; c < cig; ++c)
      for (int64_t oc = 0; oc < m; ++oc)
        for (int64_t t = 0; t < taps; ++t)
          wt[((gi * cig + c) * m + oc) * taps + t] = w[((gi * m + oc) * cig + c) * taps + taps - 1 - t];
  ConvArgs b = a;
  Conv2dParams& p = b.q;
  p.ci = q.co, p.co = q.ci, p.h = q.oh, p.w = q.ow, p.oh = q.h, p.ow = q.w;
  p.ph = (q.kh - 1) * q.dh - q.ph, p.pw = (q.kw - 1) * q.dw - q.pw;
  b.weight = reinterpret_cast<uintptr_t>(wt.get());
  b.grad_out = a.input, b.grad_input = a.out;
  run<A>(b, reinterpret_cast<const A*>(a.bias));
}

}  // namespace

bool input_grad_rows(const ConvArgs& a) {
  if (a.q.sh != 1 || a.q.sw != 1) return false;
  if (a.dtype == DType::Float32) run<float>(a, nullptr);
  else if (a.dtype == DType::Float64) run<double>(a, nullptr);
  else return false;
  return true;
}

bool forward_rows(const ConvArgs& a) {
  const Conv2dParams& q = a.q;
  if (q.sh != 1 || q.sw != 1 || q.ph > (q.kh - 1) * q.dh || q.pw > (q.kw - 1) * q.dw) return false;
  if (a.dtype == DType::Float32) forward_as_dgrad<float>(a);
  else if (a.dtype == DType::Float64) forward_as_dgrad<double>(a);
  else return false;
  return true;
}

}  // namespace fusekit::cpu::FK_ISA
