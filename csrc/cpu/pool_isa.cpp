// The 2x2 / stride-2 max-pool forward (pool_2x2.h) and backward (the common case), and the
// fused block's ReLU + pool backward pass, compiled once per ISA: branch-free row loops, which
// vectorize (the generic loop in pool_elems.h runs at one unpredictable branch per element on
// random data).
#include <algorithm>
#include <memory>

#include "cpu/conv_gemm.h"
#include "cpu/plane_sum.h"
#include "cpu/pool_2x2.h"
#include "cpu/pool_kernels.h"
#include "cpu/thread_pool.h"
#include "fusekit/math/pool.h"
#include "fusekit/pool_elems.h"

namespace fusekit::cpu::FK_ISA {
namespace {

// Runs run(S{}, in_offset, out_offset, count) over every (image, channel) plane, `count`
// consecutive planes at a time. With window codes (not plane-relative indices) and an even
// height, stacked planes pool as one tall plane (no window spans two of them), so small maps
// do not pay a call per 4x4 plane; stacks keep ~4K input elements and every thread busy.
template <class F> void for_each_plane(const PoolArgs& a, F run) {
  const Pool2dParams& q = a.q;
  const int64_t in_sz = q.h * q.w, out_sz = q.oh * q.ow, planes = q.n * q.c;
  const int threads = planes * (in_sz + out_sz) < 16384 ? 1 : a.num_threads;
  int64_t stack = a.window_codes && q.h == 2 * q.oh ? std::max<int64_t>(1, 4096 / std::max<int64_t>(in_sz, 1)) : 1;
  while (stack > 1 && (planes + stack - 1) / stack < 4 * threads) stack /= 2;
  dispatch_dtype(a.dtype, [&](auto s) {
    auto task = [&](int64_t t) {
      const int64_t p = t * stack;
      run(s, p * in_sz, p * out_sz, std::min(stack, planes - p));
    };
    parallel_for(threads, (planes + stack - 1) / stack, task);
  });
}

}  // namespace

void max_pool_2x2_backward(const PoolArgs& a) {
  const Pool2dParams q = a.q;
  for_each_plane(a, [&](auto s, int64_t i, int64_t o, int64_t k) {
    using S = decltype(s);
    const S* g = reinterpret_cast<const S*>(a.grad_out) + o;
    S* gin = reinterpret_cast<S*>(a.grad_in) + i;
    if (a.window_codes)
      max2x2_bwd_plane(g, reinterpret_cast<const uint8_t*>(a.window_codes) + o, gin, k * q.h, q.w, k * q.oh, q.ow);
    else max2x2_bwd_plane(g, reinterpret_cast<const int64_t*>(a.indices) + o, gin, q.h, q.w, q.oh, q.ow);
  });
}

void max_pool_2x2(const PoolArgs& a) {
  const Pool2dParams q = a.q;
  for_each_plane(a, [&](auto s, int64_t i, int64_t o, int64_t k) {
    using S = decltype(s);
    const S* in = reinterpret_cast<const S*>(a.in) + i;
    S* out = reinterpret_cast<S*>(a.out) + o;
    const auto same = [](auto v) { return v; };
    if (a.window_codes) max2x2_rows(in, q.w, out, reinterpret_cast<uint8_t*>(a.window_codes) + o, k * q.oh, q.ow, same);
    else max2x2_rows(in, q.w, out, reinterpret_cast<int64_t*>(a.indices) + o, q.oh, q.ow, same);
  });
}

// conv_relu_maxpool_backward's pass, per (image, channel) plane: the pooled gradient gated as
// torch's relu backward (threshold_backward: nothing where the relu output is <= 0, a NaN
// passes), scattered into the conv-output plane, and summed for the bias gradient (planes of
// a channel then added in image order, so the bits do not depend on the thread count).
void relu_pool_backward(const ConvPoolArgs& a) {
  const Pool2dParams& q = a.pool;
  const int64_t in_sz = q.h * q.w, out_sz = q.oh * q.ow, planes = q.n * q.c;
  dispatch_dtype(a.conv.dtype, [&](auto s) {
    using S = decltype(s);
    using A = compute_t<S>;
    const S* gout = reinterpret_cast<const S*>(a.grad_out);
    const S* y = reinterpret_cast<const S*>(a.out);
    S* gconv = reinterpret_cast<S*>(a.grad_conv);
    S* gb = reinterpret_cast<S*>(a.conv.grad_bias);
    // new[], not std::vector: no inline library code compiled for this ISA (see conv_pack.h)
    const std::unique_ptr<A[]> sums(gb ? new A[planes] : nullptr);
    auto task = [&](int64_t p) {
      const int64_t o = p * out_sz;
      S* gated = static_cast<S*>(conv_scratch(0, out_sz * sizeof(S)));
      for (int64_t e = 0; e < out_sz; ++e) store(gated, e, load(y, o + e) <= A(0) ? A(0) : load(gout, o + e));
      if (gb) sums[p] = plane_sum(gated, out_sz);
      if (a.window_codes)
        max2x2_bwd_plane(gated, reinterpret_cast<const uint8_t*>(a.window_codes) + o, gconv + p * in_sz, q.h, q.w,
                         q.oh, q.ow);
      else max_bwd_plane<S>(q, gated, reinterpret_cast<const int64_t*>(a.indices) + o, gconv + p * in_sz);
    };
    parallel_for(a.conv.num_threads, planes, task);
    for (int64_t c = 0; gb && c < q.c; ++c) {
      A total = A(0);
      for (int64_t n = 0; n < q.n; ++n) total = total + sums[n * q.c + c];
      store(gb, c, total);
    }
  });
}

}  // namespace fusekit::cpu::FK_ISA
