// Entry points of the fused optimizer steps (CPU or CUDA by StepArgs::device).
#pragma once
#include "fusekit/math/adagrad.h"
#include "fusekit/math/adam.h"
#include "fusekit/math/grad_ops.h"
#include "fusekit/math/nadam.h"
#include "fusekit/math/rmsprop.h"
#include "fusekit/math/sgd.h"
#include "fusekit/launch_plan.h"
#include "fusekit/step_args.h"

// Every rule run by the optimizer machinery, for explicit instantiations.
#define FK_FOR_EACH_RULE(X) X(SGDRule) X(AdamRule) X(NAdamRule) X(RMSpropRule) X(AdagradRule) X(GradOpRule)

namespace fusekit {

// Validates sizes, then applies Rule to every tensor of the list: advances the per-tensor
// step state, reads grad_scale / found_inf, updates params and state in one pass. plan: the
// CPU's chunk list kept by a caller that steps the same tensor list again (or nullptr).
template <class Rule>
void optimizer_step(const StepArgs& args, const typename Rule::Hyper& hyper, ChunkPlan* plan = nullptr);

// Chunk length in elements for a dtype: a fixed byte size, so work is split by bytes.
int64_t chunk_elems(DType dtype);

const char* cpu_isa();
// The CPU's 8-bit block encoder/decoder (the ISA in use) against quant8.h's scalar functions
// on every stride-th float32 in [-1, 1] plus every entry and midpoint's neighbourhood: the
// number of differing codes or decoded values (0 expected).
int64_t quant8_mismatches(int64_t stride);
bool cuda_built();
int cuda_device_count();  // 0 without CUDA kernels, driver or device

namespace cuda {
template <class Rule> void optimizer_step(const StepArgs& args, const typename Rule::Hyper& hyper);
int device_count();
}  // namespace cuda

}  // namespace fusekit
