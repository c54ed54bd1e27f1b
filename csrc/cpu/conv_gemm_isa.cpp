// CPU conv2d as register-blocked GEMMs over packed column blocks (conv_pack.h), compiled
// once per ISA. Forward and input gradient: out[m][j] = sum_k w[m][k] * col[k][j], every
// output one FMA chain over k in order, so blocking and threads never change a bit.
// Weight gradient: dw[m][k] = sum_j g[m][j] * col[k][j] summed in order within fixed column
// chunks whose partials are then added in chunk order: bitwise independent of threads.
#include <cstring>
#include <memory>

#include "cpu/conv_gemm.h"
#include "cpu/conv_pack.h"
#include "cpu/plane_sum.h"
#include "cpu/pool_2x2.h"
#include "cpu/simd.h"
#include "cpu/thread_pool.h"
#include "fusekit/math/pool.h"

namespace fusekit::cpu::FK_ISA {
namespace {

// Register tile kMR rows x kNV vectors: 24 accumulators of AVX-512's 32 registers, 12 of 16
// elsewhere.
#if defined(__AVX512F__)
constexpr int kMR = 8, kNV = 3;
#else
constexpr int kMR = 4, kNV = 3;
#endif
template <class A> constexpr int kNR = kNV * kW<A>;

inline int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }
inline int64_t ceil_div(int64_t x, int64_t m) { return (x + m - 1) / m; }

// c[i][0, NR) = (accumulate ? c : 0) + sum_t a[t][i] * b_t[0, NR), where row b_t = b + t * ldb,
// or b + off[t] when the rows are shifted views of one plane. Two-level sum, as torch's
// blocked kernels: FMA chains over kSumBlock consecutive t in order, added to c one by one,
// so a long reduction (thousands of taps or pixels) does not run in one accumulator.
constexpr int64_t kSumBlock = 64;

// The tile product with its operands' fetches as policies: a_at(t, i) is row i's value at
// depth t, b_row(t) the NR-wide row at depth t.
template <class A, class AAt, class BRow>
inline void micro_by(int64_t L, AAt a_at, BRow b_row, A* __restrict c, int64_t ldc, bool accumulate) {
  using V = Vec<A>;
  constexpr int W = kW<A>;
  for (int64_t t0 = 0; t0 < L || t0 == 0; t0 += kSumBlock) {
    V r[kMR][kNV];
#pragma GCC unroll 8
    for (int i = 0; i < kMR; ++i)
#pragma GCC unroll 3
      for (int v = 0; v < kNV; ++v) r[i][v] = V{};
    for (int64_t t = t0, t1 = std::min(L, t0 + kSumBlock); t < t1; ++t) {
      const A* bt = b_row(t);
      V bv[kNV];
#pragma GCC unroll 3
      for (int v = 0; v < kNV; ++v) bv[v] = loadv(bt + v * W);
#pragma GCC unroll 8
      for (int i = 0; i < kMR; ++i) {
        const V ai = splat(a_at(t, i));
#pragma GCC unroll 3
        for (int v = 0; v < kNV; ++v) r[i][v] = fmadd(ai, bv[v], r[i][v]);
      }
    }
    const bool add = accumulate || t0 > 0;
#pragma GCC unroll 8
    for (int i = 0; i < kMR; ++i)
#pragma GCC unroll 3
      for (int v = 0; v < kNV; ++v) {
        A* ci = c + i * ldc + v * W;
        storev(ci, add ? loadv(ci) + r[i][v] : r[i][v]);
      }
  }
}

// Packed kMR-row panels times rows of b (at b + t * ldb, or b + off[t] when the rows are
// shifted views of one plane).
template <class A, bool Offsets>
inline void micro(int64_t L, const A* __restrict a, const A* __restrict b, int64_t ldb, const int64_t* off,
                  A* __restrict c, int64_t ldc, bool accumulate) {
  micro_by<A>(L, [a](int64_t t, int i) { return a[t * kMR + i]; },
              [b, ldb, off](int64_t t) { return Offsets ? b + off[t] : b + t * ldb; }, c, ldc, accumulate);
}

// Per-call buffers: plain new[], no std::vector code compiled for this ISA (see conv_pack.h).
template <class A> std::unique_ptr<A[]> buffer(int64_t n) { return std::unique_ptr<A[]>(new A[n]); }

// Weights as R-row panels: wp[g][panel][k][i] = w_at(g, panel * R + i, k), zero rows past m.
// R = kMR: the GEMM's a operand; R = NR: rows of b, output channels along the vector lanes
// (the channel-tiled path).
template <class A, int R = kMR, class F>
std::unique_ptr<A[]> pack_weights(int64_t groups, int64_t m, int64_t K, F w_at) {
  const int64_t panels = ceil_div(m, R), size = groups * panels * K * R;
  auto wp = buffer<A>(size);
  for (int64_t e = 0; e < size; ++e) wp[e] = A(0);
  for (int64_t g = 0; g < groups; ++g)
    for (int64_t i = 0; i < m; ++i)
      for (int64_t k = 0; k < K; ++k) wp[((g * panels + i / R) * K + k) * R + i % R] = w_at(g, i, k);
  return wp;
}

template <class A, class F> std::unique_ptr<A[]> pack_for(int64_t groups, int64_t m, int64_t K, bool channel_tiles, F w_at) {
  return channel_tiles ? pack_weights<A, kNR<A>>(groups, m, K, w_at) : pack_weights<A>(groups, m, K, w_at);
}

// A convolution in GEMM form: per group, m output planes = packed weights x im2col(in).
template <class S, class A> struct GemmConv {
  ConvGeom g;
  int64_t n, groups, m;
  const S* in;
  int64_t in_group;  // elements between the groups' first input channels
  const A* wp;       // pack_weights layout, K = g.rows(): kMR-row panels, or NR with channel_tiles
  const S* bias;     // per output channel, or null
  S* out;
  int64_t out_img;   // elements between output images; channel gi*m+i, plane g.plane()
  bool channel_tiles = false;  // run_gemm_conv's channel-tiled path (see channel_tiled)
  bool shifted() const { return g.uh == 1 && g.uw == 1; }  // not an upsampled (input-gradient) operand
};

inline bool channel_tiled(const ConvGeom& g, int64_t m) {
  return conv_channel_tiled(g.c, g.oh, g.ow, g.kh, g.kw, g.sh, g.sw, g.dh, g.dw, g.uh != 1 || g.uw != 1, m);
}

// Calls f(n, p, t, len) for the pieces of columns [j0, j0 + len) that lie in one image.
template <class F> void for_each_image_piece(int64_t plane, int64_t j0, int64_t len, F f) {
  for (int64_t t = 0; t < len;) {
    const int64_t col = j0 + t, take = std::min(plane - col % plane, len - t);
    f(col / plane, col % plane, t, take);
    t += take;
  }
}

// im2col path (the upsampled operands of input gradients): packs columns [j0, j0 + nb) of group gi and hands every
// kMR x kNR tile of the product to tile(row0, col0, values[kMR][kNR]).
template <class S, class A, class Tile>
void conv_block(const GemmConv<S, A>& c, int64_t gi, int64_t j0, int64_t nb, Tile tile) {
  constexpr int NR = kNR<A>;
  const int64_t K = c.g.rows(), ld = round_up(nb, NR), panels = ceil_div(c.m, kMR);
  A* col = scratch<A>(0, K * ld);
  RowSeg* segs = scratch<RowSeg>(2, nb + 1);
  const int64_t nsegs = row_segments(c.g, j0, nb, segs);
  pack_cols<S, A, false>(c.g, c.in + gi * c.in_group, segs, nsegs, ld, col);
  for (int64_t k = 0; k < K; ++k)  // padding columns: their products are dropped, keep them finite
    for (int64_t j = nb; j < ld; ++j) col[k * ld + j] = A(0);
  alignas(64) A vals[kMR * NR];
  const A* wg = c.wp + gi * panels * K * kMR;
  for (int64_t jp = 0; jp < nb; jp += NR)
    for (int64_t p = 0; p < panels; ++p) {
      micro<A, false>(K, wg + p * K * kMR, col + jp, ld, nullptr, vals, NR, false);
      tile(p * kMR, jp, static_cast<const A*>(vals));
    }
}

// Shifted path, no im2col: the zero-padded input rows split by stride phase (pack_padded_rows),
// so tap (ch, ky, kx) reads phase (ky*dh % sh, kx*dw % sw) of channel ch shifted by
// ky*dh / sh rows and kx*dw / sw columns: a plain shifted view, for any stride. Columns run
// over the padded width wp = ow + (kw-1)dw / sw; the ones at ox >= ow compute values that are
// dropped. Rows [oy0, oy0 + rows) of image n.
struct ShiftPlan {
  int64_t wp, rows_max, rows_b, cs;  // padded width, rows per block, rows per phase, channel stride
  int64_t hx;                        // the largest column shift
  std::unique_ptr<bool[]> used;      // phases some tap reads
};

template <class S, class A>
ShiftPlan shift_plan(const GemmConv<S, A>& c, int64_t rows_max) {
  const ConvGeom& g = c.g;
  const int64_t hx = (g.kw - 1) * g.dw / g.sw, wp = g.ow + hx, rows_b = rows_max + (g.kh - 1) * g.dh / g.sh;
  ShiftPlan sp{wp, rows_max, rows_b, g.sh * g.sw * rows_b * wp, hx, std::unique_ptr<bool[]>(new bool[g.sh * g.sw])};
  for (int64_t p = 0; p < g.sh * g.sw; ++p) sp.used[p] = false;
  for (int64_t ky = 0; ky < g.kh; ++ky)
    for (int64_t kx = 0; kx < g.kw; ++kx) sp.used[ky * g.dh % g.sh * g.sw + kx * g.dw % g.sw] = true;
  return sp;
}

template <class S, class A, class Tile>
void shift_block(const GemmConv<S, A>& c, const ShiftPlan& sp, const int64_t* off, int64_t gi, int64_t n,
                 int64_t oy0, int64_t rows, Tile tile) {
  constexpr int NR = kNR<A>;
  const ConvGeom& g = c.g;
  const int64_t K = g.rows(), panels = ceil_div(c.m, kMR), ncols = rows * sp.wp;
  A* buf = scratch<A>(0, g.c * sp.cs + NR + sp.hx);
  pack_padded_rows(g, c.in + n * g.img_stride + gi * c.in_group, oy0, rows + sp.rows_b - sp.rows_max, sp.rows_b,
                   sp.wp, sp.cs, sp.used.get(), buf);
  alignas(64) A vals[kMR * NR];
  const A* wg = c.wp + gi * panels * K * kMR;
  for (int64_t jp = 0; jp < ncols; jp += NR)
    for (int64_t p = 0; p < panels; ++p) {
      micro<A, true>(K, wg + p * K * kMR, buf + jp, 0, off, vals, NR, false);
      tile(p * kMR, jp, static_cast<const A*>(vals));
    }
}

// Offsets of the taps in a shift_block buffer.
template <class S, class A> std::unique_ptr<int64_t[]> shift_offsets(const GemmConv<S, A>& c, const ShiftPlan& sp) {
  const ConvGeom& g = c.g;
  auto off = buffer<int64_t>(g.rows());
  for (int64_t k = 0; k < g.rows(); ++k) {
    const int64_t ch = k / (g.kh * g.kw), r = (k / g.kw) % g.kh * g.dh, col = k % g.kw * g.dw;
    off[k] = ch * sp.cs + ((r % g.sh * g.sw + col % g.sw) * sp.rows_b + r / g.sh) * sp.wp + col / g.sw;
  }
  return off;
}

// Stores tile rows [r0, r0 + kMR) (those < m), columns [t0, t0 + take), to output elements
// p.. of image n, adding the bias.
template <class S, class A>
void store_rows(const GemmConv<S, A>& c, int64_t gi, int64_t r0, const A* vals, int64_t t0, int64_t take, int64_t n,
                int64_t p) {
  constexpr int NR = kNR<A>;
  const int64_t rows = std::min<int64_t>(kMR, c.m - r0);
  for (int64_t i = 0; i < rows; ++i) {
    const int64_t ch = gi * c.m + r0 + i;
    S* o = c.out + n * c.out_img + ch * c.g.plane() + p;
    const A* v = vals + i * NR + t0;
    if (c.bias) {
      const A b = static_cast<A>(load(c.bias, ch));
      for (int64_t e = 0; e < take; ++e) store(o, e, v[e] + b);
    } else {
      for (int64_t e = 0; e < take; ++e) store(o, e, v[e]);
    }
  }
}

// The channel-tiled path: per (image, group), the image's padded planes (as the shifted path
// packs them), then kMR output positions x NR output channels per tile, each output one
// FMA chain over the taps in order, as in the shifted path.
template <class S, class A> void run_channel_tiles(const GemmConv<S, A>& c, int threads) {
  constexpr int NR = kNR<A>;
  const ConvGeom& g = c.g;
  const int64_t K = g.rows(), P = g.plane(), cpanels = ceil_div(c.m, NR);
  const ShiftPlan sp = shift_plan(c, g.oh);
  const auto off = shift_offsets(c, sp);
  // buffer position of each output (padded to whole tiles with position 0: read, not stored)
  const int64_t npos = round_up(P, kMR);
  auto pos = buffer<int64_t>(npos);
  for (int64_t j = 0; j < npos; ++j) pos[j] = j < P ? j / g.ow * sp.wp + j % g.ow : 0;
  const int64_t* o = off.get();
  auto task = [&](int64_t t) {
    const int64_t n = t / c.groups, gi = t % c.groups;
    A* buf = scratch<A>(0, g.c * sp.cs + NR + sp.hx);
    pack_padded_rows(g, c.in + n * g.img_stride + gi * c.in_group, 0, sp.rows_b, sp.rows_b, sp.wp, sp.cs,
                     sp.used.get(), buf);
    alignas(64) A vals[kMR * NR];
    for (int64_t cp = 0; cp < cpanels; ++cp) {
      const A* wt = c.wp + (gi * cpanels + cp) * K * NR;
      const int64_t nch = std::min<int64_t>(NR, c.m - cp * NR);
      for (int64_t j0 = 0; j0 < P; j0 += kMR) {
        const int64_t* pj = pos.get() + j0;
        micro_by<A>(K, [buf, o, pj](int64_t tk, int i) { return buf[o[tk] + pj[i]]; },
                    [wt](int64_t tk) { return wt + tk * kNR<A>; }, vals, NR, false);
        for (int64_t ch = 0; ch < nch; ++ch) {
          const int64_t oc = gi * c.m + cp * NR + ch;
          S* out = c.out + n * c.out_img + oc * P + j0;
          const A b = c.bias ? static_cast<A>(load(c.bias, oc)) : A(0);
          for (int64_t i = 0, rows = std::min<int64_t>(kMR, P - j0); i < rows; ++i)
            store(out, i, c.bias ? vals[i * NR + ch] + b : vals[i * NR + ch]);
        }
      }
    }
  };
  parallel_for(threads, c.n * c.groups, task);
}

template <class S, class A> void run_gemm_conv(const GemmConv<S, A>& c, int threads) {
  constexpr int NR = kNR<A>;
  const ConvGeom& g = c.g;
  const int64_t K = g.rows();
  if (c.channel_tiles) return run_channel_tiles(c, threads);
  if (c.shifted()) {  // blocks of output rows; block height changes speed, never results
    // buffer elements per output row: c * sh * sw * wp (about the input's c * h/oh * w)
    const int64_t wp = g.ow + (g.kw - 1) * g.dw / g.sw, halo = (g.kh - 1) * g.dh / g.sh;
    int64_t rows = std::clamp<int64_t>(kConvBlockElems / (g.c * g.sh * g.sw * wp) - halo, 1, g.oh);
    while (rows > 1 && c.n * c.groups * ceil_div(g.oh, rows) < 4 * threads) rows = ceil_div(rows, 2);
    const ShiftPlan sp = shift_plan(c, rows);
    const auto off = shift_offsets(c, sp);
    const int64_t per_img = ceil_div(g.oh, rows);
    auto task = [&](int64_t t) {
      const int64_t n = t / (c.groups * per_img), gi = t / per_img % c.groups, oy0 = t % per_img * rows;
      const int64_t nrows = std::min(rows, g.oh - oy0), ncols = nrows * sp.wp;
      shift_block(c, sp, off.get(), gi, n, oy0, nrows, [&](int64_t r0, int64_t jp, const A* vals) {
        for (int64_t j = jp, end = std::min(jp + NR, ncols); j < end;) {
          const int64_t r = j / sp.wp, x = j % sp.wp, take = std::min(sp.wp - x, end - j);
          if (x < g.ow) store_rows(c, gi, r0, vals, j - jp, std::min(take, g.ow - x), n, (oy0 + r) * g.ow + x);
          j += take;
        }
      });
    };
    return parallel_for(threads, c.n * c.groups * per_img, task);
  }
  const int64_t total = c.n * g.plane();
  // Block width only changes speed, never results: fit L2, and leave every thread work.
  int64_t nb = std::clamp<int64_t>(kConvBlockElems / K / NR, 1, 8) * NR;
  while (nb > NR && c.groups * ceil_div(total, nb) < 4 * threads) nb -= NR;
  const int64_t blocks = ceil_div(total, nb);
  auto task = [&](int64_t t) {
    const int64_t gi = t / blocks, j0 = (t % blocks) * nb, len = std::min(nb, total - j0);
    conv_block(c, gi, j0, len, [&](int64_t r0, int64_t jp, const A* vals) {
      for_each_image_piece(g.plane(), j0 + jp, std::min<int64_t>(NR, len - jp),
                           [&](int64_t n, int64_t p, int64_t t0, int64_t take) { store_rows(c, gi, r0, vals, t0, take, n, p); });
    });
  };
  parallel_for(threads, c.groups * blocks, task);
}

ConvGeom forward_geom(const Conv2dParams& q) {
  return {q.ci / q.groups, q.h, q.w, 1, 1, q.kh, q.kw, q.sh, q.sw, q.ph, q.pw, q.dh, q.dw, q.oh, q.ow,
          q.ci * q.h * q.w};
}

template <class S, class A> std::unique_ptr<A[]> forward_weights(const Conv2dParams& q, const S* w,
                                                                 bool tiles = false) {
  const int64_t m = q.co / q.groups, K = q.ci / q.groups * q.kh * q.kw;
  return pack_for<A>(q.groups, m, K, tiles, [&](int64_t gi, int64_t i, int64_t k) { return A(load(w, (gi * m + i) * K + k)); });
}

template <class S> void forward(const ConvArgs& a) {
  using A = compute_t<S>;
  const Conv2dParams& q = a.q;
  // Fewer output channels per group than a panel's kMR rows (depthwise): the panels would be
  // mostly zero rows; the row kernel has no such waste.
  if (q.co / q.groups < kMR && forward_rows(a)) return;
  const ConvGeom g = forward_geom(q);
  const bool tiles = channel_tiled(g, q.co / q.groups);
  const auto wp = forward_weights<S, A>(q, reinterpret_cast<const S*>(a.weight), tiles);
  GemmConv<S, A> c{g, q.n, q.groups, q.co / q.groups, reinterpret_cast<const S*>(a.input), g.c * q.h * q.w, wp.get(),
                   reinterpret_cast<const S*>(a.bias), reinterpret_cast<S*>(a.out), q.co * q.oh * q.ow, tiles};
  run_gemm_conv(c, a.num_threads);
}

// Input gradient = stride-1 convolution of the output gradient, upsampled by the stride,
// with the kernel flipped and in/out channels swapped, padding d(k-1) - p.
ConvGeom input_grad_geom(const Conv2dParams& q) {
  return {q.co / q.groups, q.oh, q.ow, q.sh, q.sw, q.kh, q.kw, 1, 1, q.dh * (q.kh - 1) - q.ph,
          q.dw * (q.kw - 1) - q.pw, q.dh, q.dw, q.h, q.w, q.co * q.oh * q.ow};
}

template <class S> void input_grad(const ConvArgs& a) {
  using A = compute_t<S>;
  const Conv2dParams& q = a.q;
  const S* w = reinterpret_cast<const S*>(a.weight);
  const int64_t cig = q.ci / q.groups, cog = q.co / q.groups, taps = q.kh * q.kw;
  const ConvGeom g = input_grad_geom(q);
  const bool tiles = channel_tiled(g, cig);
  const auto wp = pack_for<A>(q.groups, cig, g.rows(), tiles, [&](int64_t gi, int64_t i, int64_t k) {
    const int64_t oc = gi * cog + k / taps, tap = taps - 1 - k % taps;
    return A(load(w, (oc * cig + i) * taps + tap));
  });
  GemmConv<S, A> c{g, q.n, q.groups, cig, reinterpret_cast<const S*>(a.grad_out), cog * q.oh * q.ow, wp.get(),
                   nullptr, reinterpret_cast<S*>(a.grad_input), q.ci * q.h * q.w, tiles};
  run_gemm_conv(c, a.num_threads);
}

// Input gradient through columns: dcol[k][j] = sum_oc w[oc][k] * gout[oc][j] for one image
// (a GEMM whose depth is only the output channels), then each input element gathers its
// taps from dcol in (ky, kx) order. Cheaper than the flipped convolution when input
// channels are few or the padding is wide (LeNet's layers): that one multiplies zeros.
template <class S> void input_grad_cols(const ConvArgs& a) {
  using A = compute_t<S>;
  constexpr int NR = kNR<A>;
  const Conv2dParams& q = a.q;
  const S* w = reinterpret_cast<const S*>(a.weight);
  const S* gout = reinterpret_cast<const S*>(a.grad_out);
  S* gin = reinterpret_cast<S*>(a.grad_input);
  const int64_t cig = q.ci / q.groups, cog = q.co / q.groups, taps = q.kh * q.kw, K = cig * taps;
  using V = Vec<A>;
  constexpr int W = kW<A>;
  V lanes;
  for (int l = 0; l < W; ++l) lanes[l] = A(l);
  const int64_t plane = q.oh * q.ow, ldp = round_up(plane, NR), panels = ceil_div(K, kMR);
  const auto wt = pack_weights<A>(q.groups, K, cog, [&](int64_t gi, int64_t k, int64_t oc) {
    return A(load(w, (gi * cog + oc) * K + k));
  });
  // Strided columns: src[kx][x] = the output column input column x reads through tap kx, or
  // -1 (none; also past the row, up to a whole vector): no division in the gather below.
  const int64_t wv = round_up(q.w, W);
  auto src = std::unique_ptr<int32_t[]>(new int32_t[q.sw == 1 ? 0 : q.kw * wv]);
  for (int64_t kx = 0; q.sw != 1 && kx < q.kw; ++kx)
    for (int64_t x = 0; x < wv; ++x)
      src[kx * wv + x] = x < q.w ? static_cast<int32_t>(upsampled(x + q.pw - kx * q.dw, q.sw, q.ow)) : -1;
  auto task = [&](int64_t t) {
    const int64_t n = t / q.groups, gi = t % q.groups;
    A* gp = scratch<A>(0, cog * ldp);
    // margins: the vector gather below reads (and masks) up to a vector past either end
    const int64_t front = (q.kw - 1) * q.dw + W;
    A* dcol = scratch<A>(1, front + panels * kMR * ldp + q.w + q.pw + 2 * W) + front;
    for (int64_t oc = 0; oc < cog; ++oc) {
      const S* src = gout + (n * q.co + gi * cog + oc) * plane;
      for (int64_t e = 0; e < plane; ++e) gp[oc * ldp + e] = static_cast<A>(load(src, e));
      for (int64_t e = plane; e < ldp; ++e) gp[oc * ldp + e] = A(0);
    }
    const A* wg = wt.get() + gi * panels * cog * kMR;
    for (int64_t p = 0; p < panels; ++p)
      for (int64_t jp = 0; jp < ldp; jp += NR)
        micro<A, false>(cog, wg + p * cog * kMR, gp + jp, ldp, nullptr, dcol + p * kMR * ldp + jp, ldp, false);
    // Each input element sums its taps in (ky, kx) order, W elements at a time in registers
    // (accumulating in memory at shifting offsets stalls on store forwarding).
    for (int64_t ic = 0; ic < cig; ++ic)
      for (int64_t y = 0; y < q.h; ++y) {
        S* dst = gin + ((n * q.ci + gi * cig + ic) * q.h + y) * q.w;
        for (int64_t xc = 0; xc < q.w; xc += W) {
          V acc = V{};
          for (int64_t ky = 0; ky < q.kh; ++ky) {
            const int64_t oy = upsampled(y + q.ph - ky * q.dh, q.sh, q.oh);
            if (oy < 0) continue;
            for (int64_t kx = 0; kx < q.kw; ++kx) {
              const A* row = dcol + ((ic * q.kh + ky) * q.kw + kx) * ldp + oy * q.ow;
              const int64_t shift = q.pw - kx * q.dw;  // ox * sw = x + shift
              if (q.sw == 1) {
                const A lo = A(std::max<int64_t>(0, -shift) - xc), hi = A(std::min(q.w, q.ow - shift) - xc);
                acc += (lanes >= lo && lanes < hi) ? loadv(row + xc + shift) : V{};
              } else {
                const int32_t* ox = src.get() + kx * wv + xc;
                for (int l = 0; l < W; ++l) acc[l] += ox[l] >= 0 ? row[ox[l]] : A(0);
              }
            }
          }
          for (int l = 0; l < W && xc + l < q.w; ++l) store(dst, xc + l, acc[l]);
        }
      }
  };
  parallel_for(a.num_threads, q.n * q.groups, task);
}

// Multiply-adds of the two input-gradient methods, padding included; the gather counts
// double (it is not register-blocked). A function of the shape only.
bool input_grad_by_cols(const Conv2dParams& q, int64_t nr) {
  const int64_t cig = q.ci / q.groups, cog = q.co / q.groups, taps = q.kh * q.kw;
  // the flipped convolution runs over padded rows of width w + (kw-1)dw and, for a strided
  // convolution, over an upsampled output gradient that is mostly zeros
  const int64_t shifted =
      round_up(cig, kMR) * round_up(q.h * (q.w + (q.kw - 1) * q.dw), nr) * cog * taps * q.sh * q.sw;
  const int64_t cols = round_up(cig * taps, kMR) * round_up(q.oh * q.ow, nr) * cog + 2 * cig * q.h * q.w * taps;
  return cols < shifted;
}

template <class S> void weight_grad(const ConvArgs& a) {
  using A = compute_t<S>;
  constexpr int NR = kNR<A>;
  const Conv2dParams& q = a.q;
  const ConvGeom g = forward_geom(q);
  const int64_t m = q.co / q.groups, K = g.rows(), Kp = round_up(K, NR), Mp = round_up(m, kMR);
  const int64_t total = q.n * g.plane(), tile = Mp * Kp;
  // Fixed chunks (a function of the shape only) make the sum order thread-independent.
  int64_t chunk = std::max<int64_t>(512, ceil_div(total, 64));
  while (ceil_div(total, chunk) * q.groups * tile > (int64_t{1} << 24) && chunk < total) chunk *= 2;
  const int64_t nchunks = ceil_div(total, chunk), nb = std::clamp<int64_t>(kConvBlockElems / Kp, 16, chunk);
  auto partial = buffer<A>(nchunks * q.groups * tile);
  const S* in = reinterpret_cast<const S*>(a.input);
  const S* gout = reinterpret_cast<const S*>(a.grad_out);
  auto task = [&](int64_t t) {
    const int64_t gi = t % q.groups, ch = t / q.groups, end = std::min(total, (ch + 1) * chunk);
    A* part = partial.get() + t * tile;
    for (int64_t e = 0; e < tile; ++e) part[e] = A(0);
    A* colt = scratch<A>(0, nb * Kp);
    A* gp = scratch<A>(1, Mp * nb);
    RowSeg* segs = scratch<RowSeg>(2, nb + 1);
    for (int64_t j = 0; j < nb; ++j)  // padding taps k >= K: packing never writes them
      for (int64_t k = K; k < Kp; ++k) colt[j * Kp + k] = A(0);
    for (int64_t j0 = ch * chunk; j0 < end; j0 += nb) {
      const int64_t len = std::min(nb, end - j0), nsegs = row_segments(g, j0, len, segs);
      pack_cols<S, A, true>(g, in + gi * g.c * q.h * q.w, segs, nsegs, Kp, colt);
      for (int64_t i = m; i < Mp; ++i)
        for (int64_t j = 0; j < len; ++j) gp[(i / kMR * len + j) * kMR + i % kMR] = A(0);
      for_each_image_piece(g.plane(), j0, len, [&](int64_t n, int64_t p, int64_t t0, int64_t take) {
        for (int64_t i = 0; i < m; ++i) {
          const S* src = gout + (n * q.co + gi * m + i) * g.plane() + p;
          A* dst = gp + (i / kMR * len + t0) * kMR + i % kMR;
          for (int64_t e = 0; e < take; ++e) dst[e * kMR] = static_cast<A>(load(src, e));
        }
      });
      for (int64_t p = 0; p < Mp / kMR; ++p)
        for (int64_t kp = 0; kp < Kp; kp += NR)
          micro<A, false>(len, gp + p * len * kMR, colt + kp, Kp, nullptr, part + p * kMR * Kp + kp, Kp, true);
    }
  };
  parallel_for(a.num_threads, nchunks * q.groups, task);
  S* gw = reinterpret_cast<S*>(a.grad_weight);
  auto combine = [&](int64_t r) {  // r = gi * m + i
    const int64_t gi = r / m, i = r % m;
    for (int64_t k = 0; k < K; ++k) {
      A s = A(0);
      for (int64_t ch = 0; ch < nchunks; ++ch) s = s + partial[(ch * q.groups + gi) * tile + i * Kp + k];
      store(gw, r * K + k, s);
    }
  };
  parallel_for(a.num_threads, q.co, combine);
}

// Weight gradient where the forward is channel-tiled (maps of a few pixels): every image's
// padded planes packed once as the forward packs them, the output gradient transposed to
// [position][channel]; then kMR taps x NR channels per tile, each dw[oc][k] one FMA chain over
// (image, position) in order: a function of the shape only, whatever the threads. false:
// not its case (or the batch's planes would not stay small).
template <class S> bool weight_grad_tiles(const ConvArgs& a) {
  using A = compute_t<S>;
  constexpr int NR = kNR<A>;
  constexpr int64_t kMaxElems = int64_t{1} << 21;
  const Conv2dParams& q = a.q;
  const ConvGeom g = forward_geom(q);
  const int64_t m = q.co / q.groups, K = g.rows(), P = g.plane(), L = q.n * P, cpanels = ceil_div(m, NR);
  if (!channel_tiled(g, m)) return false;
  const GemmConv<S, A> c{g, q.n, q.groups, m, reinterpret_cast<const S*>(a.input), g.c * q.h * q.w, nullptr,
                         nullptr, nullptr, 0, true};
  const ShiftPlan sp = shift_plan(c, g.oh);
  const int64_t img = g.c * sp.cs + NR + sp.hx;  // one image's planes, with shift_block's slack
  if (q.n * img > kMaxElems || L * cpanels * NR > kMaxElems) return false;
  const auto off = shift_offsets(c, sp);
  auto buf = buffer<A>(q.n * img);
  auto gt = buffer<A>(cpanels * L * NR);  // [panel][t][channel]
  auto apos = buffer<int64_t>(L);
  for (int64_t t = 0; t < L; ++t) apos[t] = t / P * img + t % P / g.ow * sp.wp + t % P % g.ow;
  const S* gout = reinterpret_cast<const S*>(a.grad_out);
  S* gw = reinterpret_cast<S*>(a.grad_weight);
  const int64_t ktiles = ceil_div(K, kMR);
  for (int64_t gi = 0; gi < q.groups; ++gi) {
    auto pack = [&](int64_t n) {
      pack_padded_rows(g, c.in + n * g.img_stride + gi * c.in_group, 0, sp.rows_b, sp.rows_b, sp.wp, sp.cs,
                       sp.used.get(), buf.get() + n * img);
    };
    parallel_for(a.num_threads, q.n, pack);
    for (int64_t cp = 0; cp < cpanels; ++cp)
      for (int64_t t = 0; t < L; ++t)
        for (int64_t j = 0; j < NR; ++j) {
          const int64_t oc = cp * NR + j;
          gt[(cp * L + t) * NR + j] =
              oc < m ? static_cast<A>(load(gout, (t / P * q.co + gi * m + oc) * P + t % P)) : A(0);
        }
    auto tile = [&](int64_t task) {
      const int64_t k0 = task / cpanels * kMR, cp = task % cpanels;
      int64_t koff[kMR];
      for (int i = 0; i < kMR; ++i) koff[i] = off[std::min<int64_t>(k0 + i, K - 1)];  // tail rows: dropped
      alignas(64) A vals[kMR * NR];
      const A* b = buf.get();
      const int64_t* ap = apos.get();
      const A* gp = gt.get() + cp * L * NR;
      micro_by<A>(L, [b, ap, &koff](int64_t t, int i) { return b[ap[t] + koff[i]]; },
                  [gp](int64_t t) { return gp + t * kNR<A>; }, vals, NR, false);
      for (int64_t i = 0, rows = std::min<int64_t>(kMR, K - k0); i < rows; ++i)
        for (int64_t j = 0, nch = std::min<int64_t>(NR, m - cp * NR); j < nch; ++j)
          store(gw, (gi * m + cp * NR + j) * K + k0 + i, vals[i * NR + j]);
    };
    parallel_for(a.num_threads, ktiles * cpanels, tile);
  }
  return true;
}

// Bias gradient: per channel, each plane summed in fixed lanes (plane_sum), then planes in order.
template <class S> void bias_grad(const ConvArgs& a) {
  using A = compute_t<S>;
  const Conv2dParams& q = a.q;
  const int64_t plane = q.oh * q.ow;
  const S* gout = reinterpret_cast<const S*>(a.grad_out);
  S* gb = reinterpret_cast<S*>(a.grad_bias);
  auto task = [&](int64_t oc) {
    A total = A(0);
    for (int64_t n = 0; n < q.n; ++n) total = total + plane_sum(gout + (n * q.co + oc) * plane, plane);
    store(gb, oc, total);
  };
  parallel_for(a.num_threads, q.co, task);
}

// max_pool(relu(conv + b)): one task per (image, group) convolves the whole image into a
// per-thread buffer (row stride ld_row), then rectifies and pools from there.
template <class S> void fused_block(const ConvPoolArgs& a) {
  using A = compute_t<S>;
  constexpr int NR = kNR<A>;
  const Conv2dParams& q = a.conv.q;
  const Pool2dParams& pq = a.pool;
  const S* bias = reinterpret_cast<const S*>(a.conv.bias);
  const ConvGeom g = forward_geom(q);
  const int64_t m = q.co / q.groups, pooled = pq.oh * pq.ow;
  const auto wp = forward_weights<S, A>(q, reinterpret_cast<const S*>(a.conv.weight));
  const GemmConv<S, A> c{g, q.n, q.groups, m, reinterpret_cast<const S*>(a.conv.input), g.c * q.h * q.w, wp.get(),
                         nullptr, nullptr, 0};
  const ShiftPlan sp = shift_plan(c, g.oh);  // a forward operand is never upsampled: always shifted
  const auto off = shift_offsets(c, sp);
  const int64_t ld_row = sp.wp, ld = round_up(g.oh * ld_row, NR);
  // The pooling over the buffer: windows indexed at row stride ld_row (no division per element).
  Pool2dParams bq = pq;
  bq.w = ld_row;
  S* out = reinterpret_cast<S*>(a.out);
  int64_t* idx = reinterpret_cast<int64_t*>(a.indices);
  uint8_t* codes = reinterpret_cast<uint8_t*>(a.window_codes);
  auto task = [&](int64_t t) {
    const int64_t n = t / q.groups, gi = t % q.groups;
    A* buf = scratch<A>(1, round_up(m, kMR) * ld);
    auto keep = [&](int64_t r0, int64_t jp, const A* vals) {
      for (int i = 0; i < kMR; ++i) std::memcpy(buf + (r0 + i) * ld + jp, vals + i * NR, NR * sizeof(A));
    };
    shift_block(c, sp, off.get(), gi, n, 0, g.oh, keep);
    for (int64_t i = 0; i < m; ++i) {
      const int64_t ch = gi * m + i, o = (n * q.co + ch) * pooled;
      A* z = buf + i * ld;
      const A b = bias ? static_cast<A>(load(bias, ch)) : A(0);
      const auto relu = [b](auto v) {  // scalar or vector; NaN stays NaN, as torch.relu
        const decltype(v) zero{};
        v = v + b;
        return v < zero ? zero : v;
      };
      if (codes) {  // torch's relu -> max_pool in one pass over the buffer
        max2x2_rows(z, ld_row, out + o, codes + o, pq.oh, pq.ow, relu);
        continue;
      }
      for (int64_t e = 0; e < g.oh * ld_row; ++e) z[e] = relu(z[e]);
      for (int64_t oy = 0; oy < pq.oh; ++oy)
        for (int64_t ox = 0; ox < pq.ow; ++ox) {
          A best = A(0);
          const int64_t arg = max_window<A>(bq, oy, ox, [&](int64_t e) { return z[e]; }, best);
          idx[o + oy * pq.ow + ox] = arg / ld_row * g.ow + arg % ld_row;  // index in the conv plane
          store(out, o + oy * pq.ow + ox, best);
        }
    }
  };
  parallel_for(a.conv.num_threads, q.n * q.groups, task);
}

}  // namespace

void conv_forward(const ConvArgs& a) {
  dispatch_dtype(a.dtype, [&](auto s) { forward<decltype(s)>(a); });
}

void conv_backward(const ConvArgs& a) {
  dispatch_dtype(a.dtype, [&](auto s) {
    using S = decltype(s);
    // On small maps the channel-tiled flipped convolution beats the row kernel (measured
    // 1.3-1.6x on 2x2 to 7x7 maps: benchmarks/results/cpu-layer-calls-2026-12-01.md); the
    // choice between the others below never sees a channel-tiled shape.
    if (a.grad_input && channel_tiled(input_grad_geom(a.q), a.q.ci / a.q.groups)) {
      input_grad<S>(a);
    } else if (a.grad_input && !input_grad_rows(a)) {
      if (input_grad_by_cols(a.q, kNR<compute_t<S>>)) input_grad_cols<S>(a);
      else input_grad<S>(a);
    }
    if (a.grad_weight && !weight_grad_tiles<S>(a) && !weight_grad_rows(a)) weight_grad<S>(a);
    if (a.grad_bias) bias_grad<S>(a);
  });
}

void conv_relu_maxpool(const ConvPoolArgs& a) {
  dispatch_dtype(a.conv.dtype, [&](auto s) { fused_block<decltype(s)>(a); });
}

}  // namespace fusekit::cpu::FK_ISA
