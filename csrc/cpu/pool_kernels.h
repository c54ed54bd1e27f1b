// Pooling kernels built once per ISA (pool_isa.cpp, pool_nhwc_isa.cpp); pool.cpp and conv.cpp
// pick one at run time.
#pragma once
#include "fusekit/conv_args.h"
#include "fusekit/pool_args.h"

namespace fusekit::cpu {

// Throws unless every index lies in [0, plane): the CPU max-pool backward scatters through
// the indices it is handed, so indices from anywhere but fusekit's forward must not reach it.
void check_indices(const int64_t* idx, int64_t count, int64_t plane);

#define FK_DECLARE_POOL_ISA(ns) \
  namespace ns {                \
  void max_pool_2x2(const PoolArgs& args);          \
  void max_pool_2x2_backward(const PoolArgs& args); \
  void pool_nhwc(PoolOp op, const PoolArgs& args);  \
  /* gated scatter + bias gradient of conv_relu_maxpool_backward (pool_isa.cpp) */ \
  void relu_pool_backward(const ConvPoolArgs& args); \
  }
FK_DECLARE_POOL_ISA(scalar)
FK_DECLARE_POOL_ISA(avx2)
FK_DECLARE_POOL_ISA(avx512)
#undef FK_DECLARE_POOL_ISA

}  // namespace fusekit::cpu
