// The one pybind11 module: plain structs in, kernels run with the GIL released.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "cpu/memory.h"
#include "cpu/thread_pool.h"
#include "fusekit/launch_plan.h"
#include "fusekit/multi_tensor.h"
#include "fusekit/conv_args.h"
#include "fusekit/norm_args.h"
#include "fusekit/norm_replay.h"
#include "fusekit/pool_args.h"
#include "fusekit/optim_step.h"

namespace py = pybind11;
using namespace fusekit;

template <class Rule> void def_step(py::module_& m, const char* name) {
  m.def(name, &optimizer_step<Rule>, py::arg("args"), py::arg("hyper"),
        py::call_guard<py::gil_scoped_release>());
}

PYBIND11_MODULE(_C, m) {
  m.doc() = "fusekit kernels (raw pointers in; see python/fusekit/_backend.py)";

  py::class_<StepArgs>(m, "StepArgs")
      .def(py::init<>())
      .def_readwrite("device", &StepArgs::device)
      .def_readwrite("stream", &StepArgs::stream)
      .def_readwrite("num_threads", &StepArgs::num_threads)
      .def_property("dtype", [](const StepArgs& a) { return static_cast<int>(a.dtype); },
                    [](StepArgs& a, int d) {
                      if (d < 0 || d > 3) throw py::value_error("unknown dtype code");
                      a.dtype = static_cast<DType>(d);
                    })
      .def_readwrite("nslots", &StepArgs::nslots)
      .def_readwrite("count", &StepArgs::count)
      .def_readwrite("ptrs", &StepArgs::ptrs)
      .def_readwrite("numels", &StepArgs::numels)
      .def_readwrite("steps", &StepArgs::steps)
      .def_readwrite("mu_products", &StepArgs::mu_products)
      .def_readwrite("first", &StepArgs::first)
      .def_readwrite("lr", &StepArgs::lr)
      .def_readwrite("lr_ptr", &StepArgs::lr_ptr)
      .def_readwrite("grad_scale", &StepArgs::grad_scale)
      .def_readwrite("found_inf", &StepArgs::found_inf)
      .def_readwrite("clip_coef", &StepArgs::clip_coef)
      .def_readwrite("capturable", &StepArgs::capturable);

  py::class_<SGDHyper>(m, "SGDHyper")
      .def(py::init<>())
      .def_readwrite("momentum", &SGDHyper::momentum)
      .def_readwrite("dampening", &SGDHyper::dampening)
      .def_readwrite("weight_decay", &SGDHyper::weight_decay)
      .def_readwrite("nesterov", &SGDHyper::nesterov)
      .def_readwrite("maximize", &SGDHyper::maximize);
  py::class_<AdamHyper>(m, "AdamHyper")
      .def(py::init<>())
      .def_readwrite("beta1", &AdamHyper::beta1)
      .def_readwrite("beta2", &AdamHyper::beta2)
      .def_readwrite("eps", &AdamHyper::eps)
      .def_readwrite("weight_decay", &AdamHyper::weight_decay)
      .def_readwrite("amsgrad", &AdamHyper::amsgrad)
      .def_readwrite("maximize", &AdamHyper::maximize)
      .def_readwrite("decoupled", &AdamHyper::decoupled)
      .def_readwrite("folded", &AdamHyper::folded);
  py::class_<NAdamHyper>(m, "NAdamHyper")
      .def(py::init<>())
      .def_readwrite("beta1", &NAdamHyper::beta1)
      .def_readwrite("beta2", &NAdamHyper::beta2)
      .def_readwrite("eps", &NAdamHyper::eps)
      .def_readwrite("weight_decay", &NAdamHyper::weight_decay)
      .def_readwrite("momentum_decay", &NAdamHyper::momentum_decay)
      .def_readwrite("decoupled", &NAdamHyper::decoupled)
      .def_readwrite("maximize", &NAdamHyper::maximize)
      .def_readwrite("folded", &NAdamHyper::folded);
  py::class_<RMSpropHyper>(m, "RMSpropHyper")
      .def(py::init<>())
      .def_readwrite("alpha", &RMSpropHyper::alpha)
      .def_readwrite("eps", &RMSpropHyper::eps)
      .def_readwrite("weight_decay", &RMSpropHyper::weight_decay)
      .def_readwrite("momentum", &RMSpropHyper::momentum)
      .def_readwrite("centered", &RMSpropHyper::centered)
      .def_readwrite("maximize", &RMSpropHyper::maximize)
      .def_readwrite("eps_in_sqrt", &RMSpropHyper::eps_in_sqrt)
      .def_readwrite("lr_in_momentum", &RMSpropHyper::lr_in_momentum);
  py::class_<AdagradHyper>(m, "AdagradHyper")
      .def(py::init<>())
      .def_readwrite("lr_decay", &AdagradHyper::lr_decay)
      .def_readwrite("weight_decay", &AdagradHyper::weight_decay)
      .def_readwrite("eps", &AdagradHyper::eps)
      .def_readwrite("maximize", &AdagradHyper::maximize);

  def_step<SGDRule>(m, "sgd_step");
  def_step<AdamRule>(m, "adam_step");
  def_step<NAdamRule>(m, "nadam_step");
  def_step<RMSpropRule>(m, "rmsprop_step");
  def_step<AdagradRule>(m, "adagrad_step");
  def_step<GradOpRule>(m, "grad_op");

  py::class_<GradOpHyper>(m, "GradOpHyper")
      .def(py::init<>())
      .def_readwrite("clip_value", &GradOpHyper::clip_value)
      .def_readwrite("clamp", &GradOpHyper::clamp);

  py::class_<NormArgs>(m, "NormArgs")
      .def(py::init<>())
      .def_readwrite("device", &NormArgs::device)
      .def_readwrite("stream", &NormArgs::stream)
      .def_readwrite("num_threads", &NormArgs::num_threads)
      .def_readwrite("count", &NormArgs::count)
      .def_readwrite("ptrs", &NormArgs::ptrs)
      .def_readwrite("numels", &NormArgs::numels)
      .def_readwrite("dtypes", &NormArgs::dtypes)
      .def_readwrite("norm_type", &NormArgs::norm_type)
      .def_property("total_dtype", [](const NormArgs& a) { return static_cast<int>(a.total_dtype); },
                    [](NormArgs& a, int d) {
                      if (d < 0 || d > 3) throw py::value_error("unknown dtype code");
                      a.total_dtype = static_cast<DType>(d);
                    })
      .def_readwrite("workspace", &NormArgs::workspace)
      .def_readwrite("norms_out", &NormArgs::norms_out)
      .def_readwrite("total_out", &NormArgs::total_out)
      .def_readwrite("max_norm", &NormArgs::max_norm)
      .def_readwrite("max_norm_ptr", &NormArgs::max_norm_ptr)
      .def_readwrite("grad_scale", &NormArgs::grad_scale)
      .def_readwrite("total_unscaled_out", &NormArgs::total_unscaled_out)
      .def_readwrite("coef_out", &NormArgs::coef_out)
      .def_readwrite("clip", &NormArgs::clip);
  m.def("tensor_norms", [](const NormArgs& a) {
    NormResult r;
    {
      py::gil_scoped_release release;
      r = tensor_norms(a);
    }
    return py::make_tuple(r.total, r.coef);
  }, py::arg("args"));
  m.def("norm_chunk_count", &norm_chunk_count);

  py::class_<Pool2dParams>(m, "Pool2dParams")
      .def(py::init<>())
      .def_readwrite("n", &Pool2dParams::n).def_readwrite("c", &Pool2dParams::c)
      .def_readwrite("h", &Pool2dParams::h).def_readwrite("w", &Pool2dParams::w)
      .def_readwrite("oh", &Pool2dParams::oh).def_readwrite("ow", &Pool2dParams::ow)
      .def_readwrite("kh", &Pool2dParams::kh).def_readwrite("kw", &Pool2dParams::kw)
      .def_readwrite("sh", &Pool2dParams::sh).def_readwrite("sw", &Pool2dParams::sw)
      .def_readwrite("ph", &Pool2dParams::ph).def_readwrite("pw", &Pool2dParams::pw)
      .def_readwrite("dh", &Pool2dParams::dh).def_readwrite("dw", &Pool2dParams::dw)
      .def_readwrite("count_include_pad", &Pool2dParams::count_include_pad)
      .def_readwrite("divisor_override", &Pool2dParams::divisor_override);
  py::class_<PoolArgs>(m, "PoolArgs")
      .def(py::init<>())
      .def_readwrite("device", &PoolArgs::device)
      .def_readwrite("stream", &PoolArgs::stream)
      .def_readwrite("num_threads", &PoolArgs::num_threads)
      .def_property("dtype", [](const PoolArgs& a) { return static_cast<int>(a.dtype); },
                    [](PoolArgs& a, int d) {
                      if (d < 0 || d > 3) throw py::value_error("unknown dtype code");
                      a.dtype = static_cast<DType>(d);
                    })
      .def_readwrite("q", &PoolArgs::q)
      .def_readwrite("input", &PoolArgs::in)
      .def_readwrite("out", &PoolArgs::out)
      .def_readwrite("indices", &PoolArgs::indices)
      .def_readwrite("window_codes", &PoolArgs::window_codes)
      .def_readwrite("channels_last", &PoolArgs::channels_last)
      .def_readwrite("grad_out", &PoolArgs::grad_out)
      .def_readwrite("grad_in", &PoolArgs::grad_in);
  py::class_<Conv2dParams>(m, "Conv2dParams")
      .def(py::init<>())
      .def_readwrite("n", &Conv2dParams::n).def_readwrite("ci", &Conv2dParams::ci)
      .def_readwrite("h", &Conv2dParams::h).def_readwrite("w", &Conv2dParams::w)
      .def_readwrite("co", &Conv2dParams::co).def_readwrite("oh", &Conv2dParams::oh)
      .def_readwrite("ow", &Conv2dParams::ow).def_readwrite("kh", &Conv2dParams::kh)
      .def_readwrite("kw", &Conv2dParams::kw).def_readwrite("sh", &Conv2dParams::sh)
      .def_readwrite("sw", &Conv2dParams::sw).def_readwrite("ph", &Conv2dParams::ph)
      .def_readwrite("pw", &Conv2dParams::pw).def_readwrite("dh", &Conv2dParams::dh)
      .def_readwrite("dw", &Conv2dParams::dw).def_readwrite("groups", &Conv2dParams::groups);
  py::class_<ConvArgs>(m, "ConvArgs")
      .def(py::init<>())
      .def_readwrite("device", &ConvArgs::device)
      .def_readwrite("stream", &ConvArgs::stream)
      .def_readwrite("num_threads", &ConvArgs::num_threads)
      .def_readwrite("direct", &ConvArgs::direct)
      .def_property("dtype", [](const ConvArgs& a) { return static_cast<int>(a.dtype); },
                    [](ConvArgs& a, int d) {
                      if (d < 0 || d > 3) throw py::value_error("unknown dtype code");
                      a.dtype = static_cast<DType>(d);
                    })
      .def_readwrite("q", &ConvArgs::q)
      .def_readwrite("input", &ConvArgs::input).def_readwrite("weight", &ConvArgs::weight)
      .def_readwrite("bias", &ConvArgs::bias).def_readwrite("out", &ConvArgs::out)
      .def_readwrite("grad_out", &ConvArgs::grad_out).def_readwrite("grad_input", &ConvArgs::grad_input)
      .def_readwrite("grad_weight", &ConvArgs::grad_weight).def_readwrite("grad_bias", &ConvArgs::grad_bias);
  py::class_<ConvPoolArgs>(m, "ConvPoolArgs")
      .def(py::init<>())
      .def_readwrite("conv", &ConvPoolArgs::conv)
      .def_readwrite("pool", &ConvPoolArgs::pool)
      .def_readwrite("out", &ConvPoolArgs::out)
      .def_readwrite("indices", &ConvPoolArgs::indices)
      .def_readwrite("window_codes", &ConvPoolArgs::window_codes)
      .def_readwrite("grad_out", &ConvPoolArgs::grad_out)
      .def_readwrite("grad_conv", &ConvPoolArgs::grad_conv);
  m.def("conv_relu_maxpool_forward", &conv_relu_maxpool_forward, py::arg("args"),
        py::call_guard<py::gil_scoped_release>());
  m.def("conv_relu_maxpool_backward", &conv_relu_maxpool_backward, py::arg("args"),
        py::call_guard<py::gil_scoped_release>());
  m.def("advise_huge_pages", &cpu::advise_huge_pages, py::arg("ptr"), py::arg("nbytes"));
  m.def("conv2d_forward", &conv2d_forward, py::arg("args"), py::call_guard<py::gil_scoped_release>());
  m.def("conv2d_backward", &conv2d_backward, py::arg("args"), py::call_guard<py::gil_scoped_release>());
  m.def("pool2d", [](int op, const PoolArgs& a) {
    if (op < 0 || op > 3) throw py::value_error("unknown pooling op");
    py::gil_scoped_release release;
    pool2d(static_cast<PoolOp>(op), a);
  }, py::arg("op"), py::arg("args"));
  m.def("pool2d_window_codes", &pool2d_window_codes, py::arg("q"));

  m.def("chunk_elems", [](int d) { return chunk_elems(static_cast<DType>(d)); });
  m.def("build_chunks", [](const std::vector<int64_t>& numels, int64_t chunk) {
    std::vector<std::tuple<int64_t, int64_t, int64_t>> out;
    for (const Chunk& c : build_chunks(numels.data(), static_cast<int64_t>(numels.size()), chunk))
      out.emplace_back(c.tensor, c.start, c.len);
    return out;
  });
  // CUDA launch geometry, walked on the host by the kernels' own index functions (tests).
  m.def("launch_schedule", &launch_schedule, py::arg("numels"), py::arg("chunk_elems"), py::arg("max_entries"),
        py::arg("max_chunks"), py::arg("grid"));
  m.def("set_launch_limits", &set_launch_limits, py::arg("max_entries") = 0, py::arg("max_chunks") = 0,
        "Caps the CUDA launches' entries and chunks (self-tests: split tensors with small data); 0 = default.");
  m.attr("table_entries") = kTableEntries;
  m.def("norm_chunk_partials", &norm_chunk_partials, py::arg("ptr"), py::arg("numel"), py::arg("dtype"),
        py::arg("norm_type"), py::arg("gpu_order"));
  m.def("cpu_isa", &cpu_isa);
  m.def("thread_backend", &cpu::thread_backend);
  m.def("cuda_built", &cuda_built);
  m.def("cuda_device_count", &cuda_device_count);
  m.attr("compiler") = FK_COMPILER;
  m.attr("cuda_version") = FK_CUDA_VERSION;
  m.attr("cuda_archs") = FK_CUDA_ARCHS;
}
