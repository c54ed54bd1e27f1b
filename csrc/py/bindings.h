// The pieces of the one pybind11 module (csrc/bindings.cpp defines it): plain structs in,
// kernels run with the GIL released.
#pragma once
#include <pybind11/pybind11.h>

#include "fusekit/dtype.h"

namespace fusekit::bind {

// A dtype code property (DType as int, checked) for an args struct with a `dtype` member.
template <class C, class Args> void def_dtype(C& cls, DType Args::*field, const char* name = "dtype") {
  cls.def_property(name, [field](const Args& a) { return static_cast<int>(a.*field); },
                   [field](Args& a, int d) {
                     if (d < 0 || d > 3) throw pybind11::value_error("unknown dtype code");
                     a.*field = static_cast<DType>(d);
                   });
}

void bind_layers(pybind11::module_& m);
void bind_optim(pybind11::module_& m);
void bind_step_table(pybind11::module_& m);

}  // namespace fusekit::bind
