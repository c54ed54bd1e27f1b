// The tail of a gradient norm computed elsewhere (reference: fusekit::finish_norm on the
// CPU, csrc/cpu/norm.cpp; both run norm_tail of norm_tail.h): one thread, so a total that
// lives in device memory (after an all-reduce across ranks or devices) gets its
// coefficient and telemetry without a host sync.
#include <cuda_runtime.h>

#include "cuda/check.h"
#include "fusekit/norm_tail.h"

namespace fusekit::cuda {
namespace {

__global__ void tail_kernel(const double* total, const NormTail t) { norm_tail(t, *total); }

}  // namespace

void finish_norm(uintptr_t stream, const double* total, const NormTail& tail) {
  tail_kernel<<<1, 1, 0, reinterpret_cast<cudaStream_t>(stream)>>>(total, tail);
  FK_CUDA_CHECK(cudaGetLastError());
}

}  // namespace fusekit::cuda
