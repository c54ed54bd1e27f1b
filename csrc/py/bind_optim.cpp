// Bindings of the fused optimizer steps, the element-wise gradient ops and the multi-tensor
// norm, and of the host-side work partition (tested from Python).
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "fusekit/launch_plan.h"
#include "fusekit/multi_tensor.h"
#include "fusekit/norm_replay.h"
#include "fusekit/math/norm.h"
#include "fusekit/math/quant8.h"
#include "fusekit/norm_args.h"
#include "fusekit/norm_tail.h"
#include "fusekit/optim_step.h"
#include "py/bindings.h"

namespace py = pybind11;

namespace fusekit::bind {

void bind_optim(py::module_& m) {
  py::enum_<StateFormat>(m, "StateFormat")
      .value("Param", StateFormat::Param)
      .value("Float32", StateFormat::Float32)
      .value("BFloat16", StateFormat::BFloat16)
      .value("Block8", StateFormat::Block8);
  m.attr("QUANT_BLOCK") = kQuantBlock;
  // bitsandbytes' dynamic maps as the kernels hold them (saved as qmap1/qmap2 in checkpoints)
  py::dict maps;
  maps["signed"] = std::vector<float>(DynMap<true>::code(), DynMap<true>::code() + 256);
  maps["unsigned"] = std::vector<float>(DynMap<false>::code(), DynMap<false>::code() + 256);
  m.attr("QUANT_MAPS") = maps;
  m.def("quant8_mismatches", &quant8_mismatches, py::arg("stride"),
        "8-bit block encoder/decoder of the CPU ISA in use vs the scalar reference (0 = all equal)");
  auto step = py::class_<StepArgs>(m, "StepArgs").def(py::init<>());
  def_dtype(step, &StepArgs::dtype);
  step
      .def_readwrite("device", &StepArgs::device)
      .def_readwrite("stream", &StepArgs::stream)
      .def_readwrite("num_threads", &StepArgs::num_threads)
      .def_readwrite("nslots", &StepArgs::nslots)
      .def_readwrite("count", &StepArgs::count)
      .def_readwrite("ptrs", &StepArgs::ptrs)
      .def_readwrite("numels", &StepArgs::numels)
      .def_readwrite("nbytes", &StepArgs::nbytes)
      .def_readwrite("state_format", &StepArgs::state_format)
      .def_readwrite("absmax", &StepArgs::absmax)
      .def_readwrite("absmax_nbytes", &StepArgs::absmax_nbytes)
      .def_readwrite("master", &StepArgs::master)
      .def_readwrite("master_nbytes", &StepArgs::master_nbytes)
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


  py::class_<GradOpHyper>(m, "GradOpHyper")
      .def(py::init<>())
      .def_readwrite("clip_value", &GradOpHyper::clip_value)
      .def_readwrite("clamp", &GradOpHyper::clamp);

  auto norm = py::class_<NormArgs>(m, "NormArgs").def(py::init<>());
  def_dtype(norm, &NormArgs::total_dtype, "total_dtype");
  norm
      .def_readwrite("device", &NormArgs::device)
      .def_readwrite("stream", &NormArgs::stream)
      .def_readwrite("num_threads", &NormArgs::num_threads)
      .def_readwrite("count", &NormArgs::count)
      .def_readwrite("ptrs", &NormArgs::ptrs)
      .def_readwrite("numels", &NormArgs::numels)
      .def_readwrite("nbytes", &NormArgs::nbytes)
      .def_readwrite("dtypes", &NormArgs::dtypes)
      .def_readwrite("norm_type", &NormArgs::norm_type)
      .def_readwrite("workspace", &NormArgs::workspace)
      .def_readwrite("norms_out", &NormArgs::norms_out)
      .def_readwrite("total_out", &NormArgs::total_out)
      .def_readwrite("max_norm", &NormArgs::max_norm)
      .def_readwrite("max_norm_ptr", &NormArgs::max_norm_ptr)
      .def_readwrite("grad_scale", &NormArgs::grad_scale)
      .def_readwrite("total_unscaled_out", &NormArgs::total_unscaled_out)
      .def_readwrite("coef_out", &NormArgs::coef_out)
      .def_readwrite("clip", &NormArgs::clip)
      .def_readwrite("history_norms", &NormArgs::history_norms)
      .def_readwrite("history_thresholds", &NormArgs::history_thresholds)
      .def_readwrite("history_count", &NormArgs::history_count)
      .def_readwrite("history_len", &NormArgs::history_len)
      .def_readwrite("found_inf", &NormArgs::found_inf);
  m.def("tensor_norms", [](const NormArgs& a) {
    NormResult r;
    {
      py::gil_scoped_release release;
      r = tensor_norms(a);
    }
    return py::make_tuple(r.total, r.coef);
  }, py::arg("args"));
  m.def("norm_chunk_count", &norm_chunk_count);
  m.def("finish_norm", &finish_norm, py::arg("device"), py::arg("stream"), py::arg("total"), py::arg("args"),
        py::call_guard<py::gil_scoped_release>());
  m.def("clip_coefficient", [](int dtype, double total, double max_norm) {
    if (dtype < 0 || dtype > 3) throw py::value_error("unknown dtype code");
    return clip_coefficient(static_cast<DType>(dtype), total, max_norm);
  }, py::arg("dtype"), py::arg("total"), py::arg("max_norm"));

  m.def("chunk_elems", [](int d) { return chunk_elems(static_cast<DType>(d)); });
  auto as_tuples = [](const std::vector<Chunk>& chunks) {
    std::vector<std::tuple<int64_t, int64_t, int64_t>> out;
    for (const Chunk& c : chunks) out.emplace_back(c.tensor, c.start, c.len);
    return out;
  };
  m.def("build_chunks", [as_tuples](const std::vector<int64_t>& numels, int64_t chunk) {
    return as_tuples(build_chunks(numels.data(), static_cast<int64_t>(numels.size()), chunk));
  });
  py::class_<ChunkPlan>(m, "ChunkPlan")  // for tests: the cache a StepTable bucket keeps
      .def(py::init<>())
      .def("get", [as_tuples](ChunkPlan& p, const std::vector<int64_t>& numels, int64_t chunk) {
        return as_tuples(p.get(numels.data(), static_cast<int64_t>(numels.size()), chunk));
      });
  // CUDA launch geometry, walked on the host by the kernels' own index functions (tests).
  m.def("launch_schedule", &launch_schedule, py::arg("numels"), py::arg("chunk_elems"), py::arg("max_entries"),
        py::arg("max_chunks"), py::arg("grid"));
  m.def("set_launch_limits", &set_launch_limits, py::arg("max_entries") = 0, py::arg("max_chunks") = 0,
        "Caps the CUDA launches' entries and chunks (self-tests: split tensors with small data); 0 = default.");
  m.attr("table_entries") = kTableEntries;
  m.def("norm_chunk_partials", &norm_chunk_partials, py::arg("ptr"), py::arg("numel"), py::arg("dtype"),
        py::arg("norm_type"), py::arg("gpu_order"));
}

}  // namespace fusekit::bind
