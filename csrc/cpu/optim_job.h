// One CPU optimizer step, ready to run: resolved pointers, per-tensor coefficients and the
// chunk table. optim_step.cpp fills it; optim_step_isa.cpp (built once per ISA) runs it.
#pragma once
#include <cstdint>

#include "fusekit/dtype.h"
#include "fusekit/launch_plan.h"
#include "fusekit/step_args.h"
#include "fusekit/math/adagrad.h"
#include "fusekit/math/adam.h"
#include "fusekit/math/grad_ops.h"
#include "fusekit/math/nadam.h"
#include "fusekit/math/rmsprop.h"
#include "fusekit/math/sgd.h"

namespace fusekit::cpu {

struct CpuJob {
  DType dtype;
  int variant;
  int nslots;
  int64_t count;
  const uintptr_t* ptrs;   // slot-major, nslots * count
  const void* coeffs;      // Rule::Coeffs<compute type>[count]
  const float* grad_scale; // nullptr: grads are not scaled
  const double* clip_coef; // nullptr: no clipping (double: float64 gradients keep their precision)
  const Chunk* chunks;
  int64_t nchunks;
  int num_threads;
  StateFormat state_format;  // of slots 2.. (Block8: chunks start on kQuantBlock boundaries)
  const uintptr_t* absmax;   // Block8: float* per (state slot, tensor), slot-major
  const uintptr_t* master;   // float* float32 master weights per tensor, or nullptr
};

enum class Isa : int { Scalar = 0, Avx2 = 1, Avx512 = 2 };
Isa detect_isa();
const char* isa_name(Isa isa);

#define FK_DECLARE_ISA(ns)                                   \
  namespace ns {                                             \
  template <class Rule> void run_job(const CpuJob& job);     \
  int64_t quant8_mismatches(int64_t stride);                 \
  }
FK_DECLARE_ISA(scalar)
FK_DECLARE_ISA(avx2)
FK_DECLARE_ISA(avx512)
#undef FK_DECLARE_ISA

}  // namespace fusekit::cpu
