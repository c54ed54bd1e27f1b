// FK_HOST_DEVICE marks math that runs both in the CPU fallback and in CUDA kernels, so
// one definition serves both (architecture.md §2.2).
#pragma once

#if defined(__CUDACC__)
#define FK_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define FK_HOST_DEVICE inline __attribute__((always_inline))
#endif
