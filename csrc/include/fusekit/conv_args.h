// Arguments of the conv2d kernels: contiguous NCHW input/output, OIHW weight, raw pointers.
#pragma once
#include <cstdint>

#include "fusekit/dtype.h"
#include "fusekit/math/conv.h"

namespace fusekit {

struct ConvArgs {
  int device = -1;
  uintptr_t stream = 0;
  int num_threads = 1;
  DType dtype = DType::Float32;
  Conv2dParams q;
  uintptr_t input = 0, weight = 0, bias = 0, out = 0;       // forward (bias optional)
  uintptr_t grad_out = 0, grad_input = 0, grad_weight = 0, grad_bias = 0;  // backward (each optional)
};

void conv2d_forward(const ConvArgs& args);
void conv2d_backward(const ConvArgs& args);

namespace cuda {
void conv2d_forward(const ConvArgs& args);
void conv2d_backward(const ConvArgs& args);
}

}  // namespace fusekit
