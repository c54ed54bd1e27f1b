// Arguments of the conv2d kernels: contiguous NCHW input/output, OIHW weight, raw pointers.
#pragma once
#include <cstdint>

#include "fusekit/dtype.h"
#include "fusekit/math/conv.h"
#include "fusekit/math/pool.h"

namespace fusekit {

struct ConvArgs {
  int device = -1;
  uintptr_t stream = 0;
  int num_threads = 1;
  DType dtype = DType::Float32;
  // CPU only: run the element functions the CUDA kernels use (conv_elems.h) instead of the
  // GEMM kernels, so CPU tests check the GPU's math too.
  bool direct = false;
  Conv2dParams q;
  uintptr_t input = 0, weight = 0, bias = 0, out = 0;       // forward (bias optional)
  uintptr_t grad_out = 0, grad_input = 0, grad_weight = 0, grad_bias = 0;  // backward (each optional)
  // Byte size of the tensor behind each pointer, checked against q (buffers.h).
  int64_t input_nbytes = 0, weight_nbytes = 0, bias_nbytes = 0, out_nbytes = 0;
  int64_t grad_out_nbytes = 0, grad_input_nbytes = 0, grad_weight_nbytes = 0, grad_bias_nbytes = 0;
};

void conv2d_forward(const ConvArgs& args);
void conv2d_backward(const ConvArgs& args);

// max_pool(relu(conv(x) + b)) without materialising the convolution output: each
// (image, channel) plane is convolved into a float buffer, rectified and pooled there.
// pool: window/stride of the pooling over the conv output (n, c, h, w = conv output).
// Backward: the ReLU gate, the pool's scatter and the bias gradient in one pass over the
// pooled gradient (writing grad_conv whole), then the convolution's input/weight gradients.
struct ConvPoolArgs {
  ConvArgs conv;       // conv.out unused; backward: conv.grad_input/grad_weight/grad_bias (each optional)
  Pool2dParams pool;
  uintptr_t out = 0;      // pooled output, conv dtype (backward: the saved forward output, the gate)
  uintptr_t indices = 0;  // int64 argmax within each conv-output plane
  // Instead of indices for a 2x2/2 pool (pool2d_window_codes): uint8 dy * 2 + dx per output.
  uintptr_t window_codes = 0;
  uintptr_t grad_out = 0;   // backward: gradient of the pooled output
  uintptr_t grad_conv = 0;  // backward: scratch of the convolution output's size and dtype
  int64_t out_nbytes = 0, indices_nbytes = 0, window_codes_nbytes = 0, grad_out_nbytes = 0, grad_conv_nbytes = 0;
};
void conv_relu_maxpool_forward(const ConvPoolArgs& args);
void conv_relu_maxpool_backward(const ConvPoolArgs& args);

namespace cuda {
void conv2d_forward(const ConvArgs& args);
void conv2d_backward(const ConvArgs& args);
}

}  // namespace fusekit
