// Arguments of one fused optimizer step call: a list of tensors of one dtype on one device,
// as raw pointers (architecture.md §2.1: the core never sees a torch::Tensor).
#pragma once
#include <cstdint>
#include <vector>

#include "fusekit/dtype.h"

namespace fusekit {

// How the state slots (2 ..) of a step are stored (architecture.md §2.10): like the
// parameters, as float32 or bfloat16 whatever the parameters' dtype (math in float32, stored
// rounded to nearest even), or as 8-bit codes of bitsandbytes' dynamic maps with one float32
// absmax per block of kQuantBlock elements (state slot 2 on the signed map, slot 3 on the
// unsigned one: Adam's m and v).
enum class StateFormat : int32_t { Param = 0, Float32 = 1, BFloat16 = 2, Block8 = 3 };
constexpr int64_t kQuantBlock = 256;

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
  StateFormat state_format = StateFormat::Param;
  std::vector<uintptr_t> absmax;        // Block8: (nslots - 2) * count float*, slot-major
  std::vector<int64_t> absmax_nbytes;
  // float* float32 master copy of each (16-bit) parameter, or empty: the step reads and
  // writes the master and stores the parameter rounded from it.
  std::vector<uintptr_t> master;
  std::vector<int64_t> master_nbytes;
};

// Bytes of one element of a state slot in a format (Block8: the code).
inline int64_t state_elem_size(StateFormat f, DType param) {
  switch (f) {
    case StateFormat::Float32: return 4;
    case StateFormat::BFloat16: return 2;
    case StateFormat::Block8: return 1;
    default: return dtype_size(param);
  }
}

}  // namespace fusekit
