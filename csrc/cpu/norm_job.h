// A CPU multi-tensor norm, ready to run: chunk table in, one partial per chunk out.
#pragma once
#include <cstdint>

#include "fusekit/launch_plan.h"
#include "fusekit/math/norm.h"

namespace fusekit::cpu {

struct NormJob {
  NormKind kind;
  double p;
  const uintptr_t* ptrs;
  const int32_t* dtypes;
  const Chunk* chunks;
  int64_t nchunks;
  double* partials;  // one per chunk, in the chunk's accumulation type widened to double
  int num_threads;
};

#define FK_DECLARE_NORM_ISA(ns) \
  namespace ns {                \
  void norm_partials(const NormJob& job); \
  }
FK_DECLARE_NORM_ISA(scalar)
FK_DECLARE_NORM_ISA(avx2)
FK_DECLARE_NORM_ISA(avx512)
#undef FK_DECLARE_NORM_ISA

}  // namespace fusekit::cpu
