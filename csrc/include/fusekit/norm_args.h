// Arguments of one multi-tensor norm call (get_total_norm / clip_grad_norm_ / the norm pass
// of an optimizer step with max_grad_norm): raw pointers, per-tensor dtypes, one device.
#pragma once
#include <cstdint>
#include <vector>

#include "fusekit/dtype.h"

namespace fusekit {

struct NormArgs {
  int device = -1;
  uintptr_t stream = 0;
  int num_threads = 1;
  int64_t count = 0;
  std::vector<uintptr_t> ptrs;
  std::vector<int64_t> numels;
  std::vector<int64_t> nbytes;     // bytes of the tensor behind each pointer (checked)
  std::vector<int32_t> dtypes;     // DType code per tensor
  double norm_type = 2.0;          // p > 0, inf or -inf
  DType total_dtype = DType::Float32;  // torch's result dtype: rounding of the total and coefficient
  uintptr_t workspace = 0;         // CUDA: double[norm_chunk_count(numels)]: chunk partials, scratch
  uintptr_t norms_out = 0;         // double[count]: per-tensor norms (required on CUDA)
  uintptr_t total_out = 0;         // double*: the total norm (host or device memory)
  // Clip coefficient, written when coef_out != 0:
  //   coef = min(1, max_norm / (total / grad_scale + 1e-6)), rounded like torch.
  double max_norm = 0;
  uintptr_t max_norm_ptr = 0;      // float* threshold in device/host memory (AutoClip), else max_norm
  uintptr_t grad_scale = 0;        // float*: the grads are scaled by it (AMP); the total is unscaled
  uintptr_t total_unscaled_out = 0;  // double*: total / grad_scale (the norm that is logged)
  uintptr_t coef_out = 0;          // double* (float64 gradients keep their precision)
  bool clip = false;               // CPU: compute the coefficient and scale the tensors by it in place
  // Telemetry (GradNormMonitor): the unscaled total and the threshold (inf without one) go
  // to slot *history_count % history_len of two float rings, and the count advances; all in
  // the call's own memory space, so recording never syncs with the host. A nonzero
  // *found_inf (AMP skipped the step) records nothing.
  uintptr_t history_norms = 0, history_thresholds = 0;  // float[history_len]
  uintptr_t history_count = 0;     // int64*
  int64_t history_len = 0;
  uintptr_t found_inf = 0;         // float*
};

constexpr int64_t kNormChunkElems = 16384;  // fixed element count: the result must not depend on dtype mix

// Workspace doubles a CUDA norm call needs: max(chunks, tensors).
int64_t norm_chunk_count(const std::vector<int64_t>& numels);
// Returns {total, coefficient} on the CPU (NaN on CUDA: the results stay in device memory).
struct NormResult {
  double total, coef;
};
NormResult tensor_norms(const NormArgs& args);

namespace cuda {
void tensor_norms(const NormArgs& args);
}

}  // namespace fusekit
