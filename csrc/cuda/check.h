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

// Makes `device` current for a scope and restores the previous device.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device) {
    FK_CUDA_CHECK(cudaGetDevice(&prev_));
    if (prev_ != device) FK_CUDA_CHECK(cudaSetDevice(device));
  }
  ~DeviceGuard() { cudaSetDevice(prev_); }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int prev_ = 0;
};

int sm_count(int device);

}  // namespace fusekit::cuda
