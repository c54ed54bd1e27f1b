// A plane's sum in a fixed order (16 lanes, then the lanes in order), for the bias gradients:
// the same bits on every ISA and thread count. Included only by per-ISA files, so it lives in
// the ISA's namespace.
#pragma once
#include <cstdint>

#include "fusekit/dtype.h"

namespace fusekit::cpu::FK_ISA {

template <class S> compute_t<S> plane_sum(const S* src, int64_t n) {
  using A = compute_t<S>;
  constexpr int L = 16;
  A lane[L] = {};
  int64_t e = 0;
  for (; e + L <= n; e += L)
    for (int l = 0; l < L; ++l) lane[l] = lane[l] + load(src, e + l);
  for (int l = 0; e + l < n; ++l) lane[l] = lane[l] + load(src, e + l);
  A s = A(0);
  for (int l = 0; l < L; ++l) s = s + lane[l];
  return s;
}

}  // namespace fusekit::cpu::FK_ISA
