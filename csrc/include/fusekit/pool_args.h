// Arguments of the pooling kernels: contiguous NCHW tensors as raw pointers.
#pragma once
#include <cstdint>

#include "fusekit/dtype.h"
#include "fusekit/math/pool.h"

namespace fusekit {

struct PoolArgs {
  int device = -1;
  // CPU only: every tensor is NHWC (channels_last) instead of NCHW; indices keep torch's
  // per-plane values y * w + x.
  bool channels_last = false;
  uintptr_t stream = 0;
  int num_threads = 1;
  DType dtype = DType::Float32;
  Pool2dParams q;
  uintptr_t in = 0, out = 0;             // forward
  uintptr_t indices = 0;                 // int64, max pool (written forward, read backward)
  // Instead of indices, CPU 2x2/2 max pool only (pool2d_window_codes; NCHW or NHWC): uint8 per output, the
  // maximum's place in its window (dy * 2 + dx). What autograd saves when no indices are asked for:
  // 1 byte per output instead of 8 to write and read back.
  uintptr_t window_codes = 0;
  uintptr_t grad_out = 0, grad_in = 0;   // backward
  // Byte size of the tensor behind each pointer, checked against q (buffers.h).
  int64_t in_nbytes = 0, out_nbytes = 0, indices_nbytes = 0, window_codes_nbytes = 0;
  int64_t grad_out_nbytes = 0, grad_in_nbytes = 0;
};

enum class PoolOp : int { MaxForward = 0, MaxBackward = 1, AvgForward = 2, AvgBackward = 3 };

void pool2d(PoolOp op, const PoolArgs& args);
// Whether window_codes can stand in for indices for these parameters on the CPU.
bool pool2d_window_codes(const Pool2dParams& q);

namespace cuda {
void pool2d(PoolOp op, const PoolArgs& args);
}

}  // namespace fusekit
