// The one pybind11 module. Its pieces live in csrc/py/: bind_optim.cpp (optimizer steps,
// grad ops, norms), bind_layers.cpp (conv / pooling), step_table.cpp (the eager hot path).
#include <pybind11/pybind11.h>

#include "fusekit/optim_step.h"
#include "cpu/thread_pool.h"
#include "py/bindings.h"

namespace py = pybind11;
using namespace fusekit;

PYBIND11_MODULE(_C, m) {
  m.doc() = "fusekit kernels (raw pointers in; see python/fusekit/_backend/)";
  bind::bind_optim(m);
  bind::bind_layers(m);
  bind::bind_step_table(m);
  m.def("cpu_isa", &cpu_isa);
  m.def("thread_backend", &cpu::thread_backend);
  m.def("cuda_built", &cuda_built);
  m.def("cuda_device_count", &cuda_device_count);
  m.attr("compiler") = FK_COMPILER;
  m.attr("cuda_version") = FK_CUDA_VERSION;
  m.attr("cuda_archs") = FK_CUDA_ARCHS;
}
