// CUDA entry of the fused optimizer step: device scope and dtype dispatch to the
// per-(rule, dtype) launchers of optim_kernel.cuh.
#include "cuda/check.h"
#include "cuda/optim_launch.h"
#include "fusekit/optim_step.h"

namespace fusekit::cuda {

template <class Rule> void optimizer_step(const StepArgs& a, const typename Rule::Hyper& h) {
  if (a.count == 0) return;
  DeviceGuard guard(a.device);
  const auto stream = reinterpret_cast<cudaStream_t>(a.stream);
  dispatch_dtype(a.dtype, [&](auto s) { step_typed<Rule, decltype(s)>(a, h, stream); });
}

#define FK_INSTANTIATE(Rule) template void optimizer_step<Rule>(const StepArgs&, const Rule::Hyper&);
FK_FOR_EACH_RULE(FK_INSTANTIATE)
#undef FK_INSTANTIATE

}  // namespace fusekit::cuda
