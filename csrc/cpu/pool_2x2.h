// The 2x2 / stride-2 max-pool forward over rows, shared by the pooling kernel (pool_isa.cpp)
// and the fused conv+ReLU+pool block (conv_gemm_isa.cpp). Included only by per-ISA files, so
// it lives in the ISA's namespace. Same tie/NaN rule as max_window: the first maximum, the
// last NaN.
#pragma once
#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "fusekit/dtype.h"
#include "fusekit/math/pool.h"

namespace fusekit::cpu::FK_ISA {

// out[oy][ox] = max over the window of f(in element), rows of in ld elements apart. idx gets
// the flat index 2*oy*ld + ... (I = int64_t) or the window code dy * 2 + dx (I = uint8_t).
// T is the input's storage type (the tensor's, or the compute type of a scratch buffer).
template <class T, class S, class I, class F>
void max2x2_rows(const T* __restrict in, int64_t ld, S* __restrict out, I* __restrict idx, int64_t oh, int64_t ow,
                 F f) {
  using A = compute_t<S>;
  // Codes computed in lanes as wide as the values, then narrowed in a loop of their own: one
  // loop with byte stores vectorizes 64 outputs at a time and leaves rows of 16 scalar.
  using Code = std::conditional_t<sizeof(I) == 1, std::conditional_t<sizeof(A) == 8, int64_t, int32_t>, int64_t>;
  constexpr int64_t kRun = 256;
  Code codes[kRun];
  for (int64_t oy = 0; oy < oh; ++oy)
    for (int64_t x0 = 0; x0 < ow; x0 += kRun) {
      const int64_t x1 = std::min(ow, x0 + kRun), base = 2 * oy * ld;
      const T* r0 = in + base;
      const T* r1 = r0 + ld;
      S* o = out + oy * ow;
      I* ix = idx + oy * ow;
#pragma GCC ivdep
      for (int64_t ox = x0; ox < x1; ++ox) {
        A best = f(load(r0, 2 * ox));
        Code code = 0;
        max_step(f(load(r0, 2 * ox + 1)), Code(1), best, code);
        max_step(f(load(r1, 2 * ox)), Code(2), best, code);
        max_step(f(load(r1, 2 * ox + 1)), Code(3), best, code);
        store(o, ox, best);
        if constexpr (sizeof(I) == 1) codes[ox - x0] = code;
        else ix[ox] = base + 2 * ox + (code >> 1) * ld + (code & 1);
      }
      if constexpr (sizeof(I) == 1)
        for (int64_t ox = x0; ox < x1; ++ox) ix[ox] = static_cast<I>(codes[ox - x0]);
    }
}

}  // namespace fusekit::cpu::FK_ISA
