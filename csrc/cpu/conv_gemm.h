// The CPU convolution kernels (register-blocked GEMMs over packed column blocks), built once
// per ISA in conv_gemm_isa.cpp; conv.cpp picks one at run time.
#pragma once
#include <cstddef>

#include "fusekit/conv_args.h"

namespace fusekit::cpu {

// Per-thread scratch (slot 0..2) that only grows; built for the baseline ISA.
void* conv_scratch(int slot, size_t bytes);

// Whether the GEMM kernels may take their channel-tiled path (conv_gemm_isa.cpp); tests
// switch it off to compare both paths, which give the same bits. Process-wide.
bool conv_channel_tiles();
void set_conv_channel_tiles(bool enabled);

// Elements of a packed column block: fits L2 with room for the weight panels.
constexpr int64_t kConvBlockElems = 96 * 1024;

// Whether a GEMM convolution (an operand of c channels read by kh x kw windows with stride
// s and dilation d, upsampled or not, giving m planes of oh x ow) takes the channel-tiled
// path: output positions along the tile rows, output channels along the lanes, so no lane
// computes a padding column. The shifted path computes ow + (kw-1)dw/sw columns per output
// row and drops the rest, most of its work on maps of a few pixels (4 outputs per row under
// a 5x5 kernel). Chosen when its lanes are clearly better used and one image's padded planes
// fit a block; judged with AVX-512's tile (8 rows x 48 lanes) on every ISA, so the kernel an
// input gradient takes, and its bits, do not depend on the ISA.
bool conv_channel_tiled(int64_t c, int64_t oh, int64_t ow, int64_t kh, int64_t kw, int64_t sh, int64_t sw,
                        int64_t dh, int64_t dw, bool upsampled, int64_t m);

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
