// The CUDA optimizer step per (rule, storage type): defined in optim_kernel.cuh and built
// in one generated translation unit per pair; optim_step.cu dispatches to them.
#pragma once
#include <cuda_runtime.h>

#include "fusekit/step_args.h"

namespace fusekit::cuda {

template <class Rule, class S> void step_typed(const StepArgs& a, const typename Rule::Hyper& h, cudaStream_t stream);

}  // namespace fusekit::cuda
