// The CPU convolution kernels (register-blocked GEMMs over packed column blocks), built once
// per ISA in conv_gemm_isa.cpp; conv.cpp picks one at run time.
#pragma once
#include <cstddef>

#include "fusekit/conv_args.h"

namespace fusekit::cpu {

// Per-thread scratch (slot 0..2) that only grows; built for the baseline ISA.
void* conv_scratch(int slot, size_t bytes);

#define FK_DECLARE_CONV_ISA(ns)                            \
  namespace ns {                                           \
  void conv_forward(const ConvArgs& args);                 \
  void conv_backward(const ConvArgs& args);                \
  void conv_relu_maxpool(const ConvPoolArgs& args);        \
  /* conv_wgrad_isa.cpp, conv_dgrad_isa.cpp; false: not their case (strides, 16-bit types) */ \
  bool weight_grad_rows(const ConvArgs& args);             \
  bool input_grad_rows(const ConvArgs& args);              \
  bool forward_rows(const ConvArgs& args); /* conv_dgrad_isa.cpp */ \
  }
FK_DECLARE_CONV_ISA(scalar)
FK_DECLARE_CONV_ISA(avx2)
FK_DECLARE_CONV_ISA(avx512)
#undef FK_DECLARE_CONV_ISA

}  // namespace fusekit::cpu
