// Host replay of the norm kernels' decomposition, for the tests that pin the GPU's bits on
// the CPU (see math/norm.h for the order both follow).
#pragma once
#include <cstdint>
#include <vector>

namespace fusekit {

// The chunk partials of one tensor (numel elements of dtype code `dtype` at ptr) for norm
// type p: as the CPU kernels compute them (gpu_order = false), or as the CUDA kernel's
// threads, warps and shared-memory tree split the same sums (gpu_order = true).
std::vector<double> norm_chunk_partials(uintptr_t ptr, int64_t numel, int dtype, double p, bool gpu_order);

}  // namespace fusekit
