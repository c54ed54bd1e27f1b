// Arguments of one fused optimizer step call: a list of tensors of one dtype on one device,
// as raw pointers (architecture.md §2.1: the core never sees a torch::Tensor).
#pragma once
#include <cstdint>
#include <vector>

#include "fusekit/dtype.h"

namespace fusekit {

struct StepArgs {
  int device = -1;          // -1: CPU; else the CUDA device ordinal
  uintptr_t stream = 0;     // cudaStream_t
  int num_threads = 1;      // CPU threads (torch.get_num_threads())
  DType dtype = DType::Float32;
  int nslots = 0;           // param, grad, state tensors...
  int64_t count = 0;        // tensors
  std::vector<uintptr_t> ptrs;    // nslots * count, slot-major
  std::vector<int64_t> numels;    // count
  std::vector<int64_t> nbytes;    // nslots * count: bytes of the tensor behind each pointer (checked)
  std::vector<uintptr_t> steps;   // float* step per tensor (empty for SGD)
  std::vector<uintptr_t> mu_products;  // float* per tensor (NAdam)
  std::vector<uint8_t> first;     // SGD: momentum buffer starts this step
  double lr = 0;
  uintptr_t lr_ptr = 0;           // float* lr in device memory (capturable), else 0
  uintptr_t grad_scale = 0;       // float*: grads are divided by it and written back unscaled
  uintptr_t found_inf = 0;        // float*: nonzero skips the whole step, steps included
  uintptr_t clip_coef = 0;        // double*: gradients are multiplied by it (after unscaling)
  bool capturable = false;        // CUDA: steps/lr live on the device; no host reads
};

}  // namespace fusekit
