// Arguments of the pooling kernels: contiguous NCHW tensors as raw pointers.
#pragma once
#include <cstdint>

#include "fusekit/dtype.h"
#include "fusekit/math/pool.h"

namespace fusekit {

struct PoolArgs {
  int device = -1;
  uintptr_t stream = 0;
  int num_threads = 1;
  DType dtype = DType::Float32;
  Pool2dParams q;
  uintptr_t in = 0, out = 0;             // forward
  uintptr_t indices = 0;                 // int64, max pool (written forward, read backward)
  uintptr_t grad_out = 0, grad_in = 0;   // backward
};

enum class PoolOp : int { MaxForward = 0, MaxBackward = 1, AvgForward = 2, AvgBackward = 3 };

void pool2d(PoolOp op, const PoolArgs& args);

namespace cuda {
void pool2d(PoolOp op, const PoolArgs& args);
}

}  // namespace fusekit
