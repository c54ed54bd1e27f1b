// The 2x2 / stride-2 max-pool forward and backward (the common case), compiled once per ISA: a
// branch-free row loop on local copies of the sizes, which GCC vectorizes (the generic
// loop in pool_elems.h runs at one unpredictable branch per element on random data).
// Same tie/NaN rule as max_window: the first maximum, the last NaN.
#include "cpu/pool_kernels.h"
#include "cpu/thread_pool.h"
#include "fusekit/math/pool.h"

namespace fusekit::cpu::FK_ISA {
namespace {

template <class S>
void max2x2_plane(const S* __restrict in, S* __restrict out, int64_t* __restrict idx, int64_t w, int64_t oh,
                  int64_t ow) {
  using A = compute_t<S>;
  for (int64_t oy = 0; oy < oh; ++oy) {
    const S* r0 = in + 2 * oy * w;
    const S* r1 = r0 + w;
    S* o = out + oy * ow;
    int64_t* ix = idx + oy * ow;
    const int64_t base = 2 * oy * w;
#pragma GCC ivdep
    for (int64_t ox = 0; ox < ow; ++ox) {
      const A a = load(r0, 2 * ox), b = load(r0, 2 * ox + 1), c = load(r1, 2 * ox), d = load(r1, 2 * ox + 1);
      A best = a;
      int64_t off = 0;
      max_step(b, 1, best, off);
      max_step(c, w, best, off);
      max_step(d, w + 1, best, off);
      store(o, ox, best);
      ix[ox] = base + 2 * ox + off;
    }
  }
}

// Backward: every input of a 2x2 tile gets its window's gradient or 0, written in one pass.
template <class S>
void max2x2_bwd_plane(const S* __restrict gout, const int64_t* __restrict idx, S* __restrict gin, int64_t h,
                      int64_t w, int64_t oh, int64_t ow) {
  using A = compute_t<S>;
  for (int64_t oy = 0; oy < oh; ++oy) {
    const int64_t base = 2 * oy * w;
    S* r0 = gin + base;
    S* r1 = r0 + w;
    const S* g = gout + oy * ow;
    const int64_t* ix = idx + oy * ow;
#pragma GCC ivdep
    for (int64_t ox = 0; ox < ow; ++ox) {
      const A v = load(g, ox);
      const int64_t off = ix[ox] - base - 2 * ox;
      store(r0, 2 * ox, off == 0 ? v : A(0));
      store(r0, 2 * ox + 1, off == 1 ? v : A(0));
      store(r1, 2 * ox, off == w ? v : A(0));
      store(r1, 2 * ox + 1, off == w + 1 ? v : A(0));
    }
    for (int64_t x = 2 * ow; x < w; ++x) {  // odd width: the last column is in no window
      store(r0, x, A(0));
      store(r1, x, A(0));
    }
  }
  for (int64_t e = 2 * oh * w; e < h * w; ++e) store(gin, e, A(0));
}

// Runs plane(S{}, p, in_offset, out_offset) for every (image, channel) plane p.
template <class F> void for_each_plane(const PoolArgs& a, F plane) {
  const Pool2dParams& q = a.q;
  const int64_t in_sz = q.h * q.w, out_sz = q.oh * q.ow;
  dispatch_dtype(a.dtype, [&](auto s) {
    auto task = [&](int64_t p) { plane(s, p * in_sz, p * out_sz); };
    parallel_for(q.n * q.c * (in_sz + out_sz) < 16384 ? 1 : a.num_threads, q.n * q.c, task);
  });
}

}  // namespace

void max_pool_2x2_backward(const PoolArgs& a) {
  const Pool2dParams q = a.q;
  for_each_plane(a, [&](auto s, int64_t i, int64_t o) {
    using S = decltype(s);
    max2x2_bwd_plane(reinterpret_cast<const S*>(a.grad_out) + o, reinterpret_cast<const int64_t*>(a.indices) + o,
                     reinterpret_cast<S*>(a.grad_in) + i, q.h, q.w, q.oh, q.ow);
  });
}

void max_pool_2x2(const PoolArgs& a) {
  const Pool2dParams q = a.q;
  for_each_plane(a, [&](auto s, int64_t i, int64_t o) {
    using S = decltype(s);
    max2x2_plane(reinterpret_cast<const S*>(a.in) + i, reinterpret_cast<S*>(a.out) + o,
                 reinterpret_cast<int64_t*>(a.indices) + o, q.w, q.oh, q.ow);
  });
}

}  // namespace fusekit::cpu::FK_ISA
