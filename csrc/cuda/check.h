// CUDA error checking: a failed runtime call becomes a C++ exception (a Python
// RuntimeError through pybind11), never an abort.
#pragma once
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

#define FK_CUDA_CHECK(expr)                                                                   \
  do {                                                                                        \
    const cudaError_t fk_err_ = (expr);                                                       \
    if (fk_err_ != cudaSuccess)                                                               \
      throw std::runtime_error(std::string("CUDA error in ") + #expr + ": " +                 \
                               cudaGetErrorString(fk_err_));                                  \
  } while (0)

namespace fusekit::cuda {

// Makes `device` current for a scope and restores the previous device only if it changed
// it: setting a device that was never used creates a context there (a stray one on GPU 0).
class DeviceGuard {
 public:
  explicit DeviceGuard(int device) {
    FK_CUDA_CHECK(cudaGetDevice(&prev_));
    if (prev_ != device) {
      FK_CUDA_CHECK(cudaSetDevice(device));
      changed_ = true;
    }
  }
  ~DeviceGuard() {
    if (changed_) cudaSetDevice(prev_);
  }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int prev_ = 0;
  bool changed_ = false;
};

int sm_count(int device);

// Whether work queued on `stream` now would be captured into a CUDA graph. An error from the
// query (legacy-stream use while another stream captures) counts as capturing.
inline bool stream_capturing(cudaStream_t stream) {
  cudaStreamCaptureStatus st = cudaStreamCaptureStatusNone;
  if (cudaStreamIsCapturing(stream, &st) != cudaSuccess) {
    cudaGetLastError();
    return true;
  }
  return st != cudaStreamCaptureStatusNone;
}

}  // namespace fusekit::cuda
