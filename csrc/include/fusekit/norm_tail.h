// What follows a total gradient norm, the same on the CPU and in the CUDA finishing kernel:
// unscale it (AMP), derive the clip coefficient torch's way, and record both in the
// GradNormMonitor rings (architecture.md §3: log the unclipped norm every step). A plain struct of
// pointers, so a kernel can take it by value; every pointer is in the call's memory space.
#pragma once
#include <cmath>
#include <cstdint>

#include "fusekit/math/norm.h"
#include "fusekit/norm_args.h"

namespace fusekit {

struct NormTail {
  DType dtype;                 // torch's result dtype: rounding of the total and coefficient
  const float* grad_scale;     // nullptr: not scaled
  double max_norm;             // threshold, unless max_norm_ptr
  const float* max_norm_ptr;
  double* total_unscaled_out;  // nullptr: not wanted
  bool want_coef;              // a threshold applies (else the coefficient is 1, recorded as inf)
  double* coef_out;            // nullptr: not written
  float* history_norms;        // nullptr: no telemetry
  float* history_thresholds;
  int64_t* history_count;
  int64_t history_len;
  const float* found_inf;      // nonzero: the step is skipped, nothing is recorded
};

inline NormTail norm_tail_of(const NormArgs& a) {
  return {a.total_dtype,
          reinterpret_cast<const float*>(a.grad_scale),
          a.max_norm,
          reinterpret_cast<const float*>(a.max_norm_ptr),
          reinterpret_cast<double*>(a.total_unscaled_out),
          a.coef_out != 0 || a.clip,
          reinterpret_cast<double*>(a.coef_out),
          reinterpret_cast<float*>(a.history_norms),
          reinterpret_cast<float*>(a.history_thresholds),
          reinterpret_cast<int64_t*>(a.history_count),
          a.history_len,
          reinterpret_cast<const float*>(a.found_inf)};
}

// Returns the coefficient min(1, max_norm / (unscaled + 1e-6)) (1 without a threshold).
FK_HOST_DEVICE double norm_tail(const NormTail& t, double total) {
  const double unscaled = t.grad_scale ? round_to(t.dtype, total / *t.grad_scale) : total;
  if (t.total_unscaled_out) *t.total_unscaled_out = unscaled;
  const double thr = t.max_norm_ptr ? static_cast<double>(*t.max_norm_ptr) : t.max_norm;
  const double coef = t.want_coef ? clip_coefficient(t.dtype, unscaled, thr) : 1.0;
  if (t.coef_out) *t.coef_out = coef;
  if (t.history_norms && !(t.found_inf && *t.found_inf != 0.f)) {
    const int64_t slot = *t.history_count % t.history_len;
    t.history_norms[slot] = static_cast<float>(unscaled);
    t.history_thresholds[slot] = t.want_coef ? static_cast<float>(thr) : INFINITY;
    *t.history_count += 1;
  }
  return coef;
}

// A total computed elsewhere (a cross-device or cross-rank combination): its tail, on the
// device that holds it (device -1: host memory). total: double*.
void finish_norm(int device, uintptr_t stream, uintptr_t total, const NormArgs& tail_args);

namespace cuda {
void finish_norm(uintptr_t stream, const double* total, const NormTail& tail);
}

}  // namespace fusekit
