// StepTable (step_table.h): the cached argument tables of eager optimizer steps.
#include "py/step_table.h"

#include <pybind11/stl.h>

#include <algorithm>
#include <stdexcept>

#include "py/bindings.h"

namespace py = pybind11;

namespace fusekit::bind {
namespace {

// A TensorBase attribute with its getset descriptor: read through the C getter when that
// descriptor is what the attribute resolves to on the object's type (a subclass may
// override it), else through the generic protocol.
struct Attr {
  PyObject* name = nullptr;
  PyObject* descr = nullptr;  // nullptr: not a getset descriptor, always generic
  getter get = nullptr;
  void* closure = nullptr;
};

// torch.Tensor methods and attributes, resolved once. data_ptr and the Attrs are called
// through their C functions (below); the other methods through their descriptors
// (vectorcall), which skips the bound-method object of t.is_contiguous().
struct TensorApi {
  PyObject *data_ptr, *is_contiguous, *numel, *get_device, *stride, *nbytes, *local;
  Attr grad, dtype, shape, is_cuda;
  PyTypeObject* base;        // torch._C.TensorBase
  PyCFunction data_ptr_fn;   // TensorBase.data_ptr's C function (METH_NOARGS), or nullptr
};

const TensorApi& api() {
  static const TensorApi a = [] {
    py::module_ torch = py::module_::import("torch");
    py::object base = torch.attr("_C").attr("TensorBase");
    auto keep = [](py::object o) { return o.release().ptr(); };  // immortal for the process
    TensorApi t{};
    t.data_ptr = keep(base.attr("data_ptr"));
    t.is_contiguous = keep(base.attr("is_contiguous"));
    t.numel = keep(base.attr("numel"));
    t.get_device = keep(base.attr("get_device"));
    t.stride = keep(base.attr("stride"));
    t.nbytes = keep(py::str("nbytes"));
    t.local = keep(py::str("_local_tensor"));
    t.base = reinterpret_cast<PyTypeObject*>(keep(base));
    // The hot path calls torch's C functions directly: the generic call and attribute
    // protocols around them cost about as much as torch's own work for a data_ptr() or a
    // .grad.
    if (Py_IS_TYPE(t.data_ptr, &PyMethodDescr_Type)) {
      PyMethodDef* def = reinterpret_cast<PyMethodDescrObject*>(t.data_ptr)->d_method;
      if ((def->ml_flags & (METH_VARARGS | METH_KEYWORDS | METH_NOARGS | METH_O | METH_FASTCALL)) == METH_NOARGS)
        t.data_ptr_fn = def->ml_meth;
    }
    auto resolve = [&](const char* name) {
      Attr at;
      at.name = keep(py::str(name));
      PyObject* d = _PyType_Lookup(t.base, at.name);
      if (d != nullptr && Py_IS_TYPE(d, &PyGetSetDescr_Type)) {
        Py_INCREF(d);
        at.descr = d;
        at.get = reinterpret_cast<PyGetSetDescrObject*>(d)->d_getset->get;
        at.closure = reinterpret_cast<PyGetSetDescrObject*>(d)->d_getset->closure;
      }
      return at;
    };
    t.grad = resolve("grad");
    t.dtype = resolve("dtype");
    t.shape = resolve("shape");
    t.is_cuda = resolve("is_cuda");
    return t;
  }();
  return a;
}

// o.<at>, a new reference, or throws.
py::object get(py::handle o, const Attr& at) {
  PyObject* r;
  if (at.get != nullptr && _PyType_Lookup(Py_TYPE(o.ptr()), at.name) == at.descr &&
      PyObject_TypeCheck(o.ptr(), api().base))  // the check the descriptor protocol makes
    r = at.get(o.ptr(), at.closure);
  else
    r = PyObject_GetAttr(o.ptr(), at.name);
  if (r == nullptr) throw py::error_already_set();
  return py::reinterpret_steal<py::object>(r);
}

PyObject* call0(PyObject* method, PyObject* self) {
  PyObject* r = PyObject_Vectorcall(method, &self, 1, nullptr);
  if (r == nullptr) throw py::error_already_set();
  return r;
}

int64_t call_int(PyObject* method, PyObject* self) {
  PyObject* r = call0(method, self);
  const long long v = PyLong_AsLongLong(r);
  Py_DECREF(r);
  if (v == -1 && PyErr_Occurred()) throw py::error_already_set();
  return v;
}

// State keys as the interned strings Python's own literals are, so a state dict lookup
// matches by identity instead of comparing characters.
py::object interned(const std::string& s) {
  PyObject* o = PyUnicode_InternFromString(s.c_str());
  if (o == nullptr) throw py::error_already_set();
  return py::reinterpret_steal<py::object>(o);
}

// TensorBase.data_ptr(t) (the base method, as before: a subclass cannot redirect it).
uintptr_t data_ptr(py::handle t) {
  const TensorApi& a = api();
  PyObject* r;
  if (a.data_ptr_fn != nullptr && PyObject_TypeCheck(t.ptr(), a.base)) {
    r = a.data_ptr_fn(t.ptr(), nullptr);
    if (r == nullptr) throw py::error_already_set();
  } else {
    r = call0(a.data_ptr, t.ptr());  // raises the usual TypeError for a non-tensor
  }
  // PyLong_AsVoidPtr reads the int's digits directly; PyLong_AsUnsignedLongLong goes
  // through a byte-array conversion that cost ~8% of a step over many small tensors.
  void* v = PyLong_AsVoidPtr(r);
  Py_DECREF(r);
  if (v == nullptr && PyErr_Occurred()) throw py::error_already_set();
  return reinterpret_cast<uintptr_t>(v);
}

bool is_contiguous(py::handle t) {
  PyObject* r = call0(api().is_contiguous, t.ptr());
  const bool v = r == Py_True;
  Py_DECREF(r);
  return v;
}

// getattr that returns a new reference or throws.
py::object attr(py::handle o, PyObject* name) {
  PyObject* r = PyObject_GetAttr(o.ptr(), name);
  if (r == nullptr) throw py::error_already_set();
  return py::reinterpret_steal<py::object>(r);
}

// dict item (borrowed) or nullptr; never raises for a missing key.
PyObject* item(py::handle d, py::handle key) {
  PyObject* r = PyDict_GetItemWithError(d.ptr(), key.ptr());
  if (r == nullptr && PyErr_Occurred()) throw py::error_already_set();
  return r;
}

// The object a weak reference (or None) points to, borrowed; nullptr once it is gone.
PyObject* seen(const py::object& ref) {
  if (ref.is_none()) return nullptr;
#if PY_VERSION_HEX >= 0x030D0000
  PyObject* o = nullptr;
  if (PyWeakref_GetRef(ref.ptr(), &o) < 0) throw py::error_already_set();
  Py_XDECREF(o);  // only compared by address while the caller holds the candidate
  return o;
#else
  PyObject* o = PyWeakref_GET_OBJECT(ref.ptr());
  return o == Py_None ? nullptr : o;
#endif
}

template <class Rule> void run_typed(const StepArgs& a, py::handle h, ChunkPlan* plan) {
  const auto& hyper = h.cast<const typename Rule::Hyper&>();
  py::gil_scoped_release release;
  optimizer_step<Rule>(a, hyper, plan);
}

}  // namespace

void run_rule(Rule rule, const StepArgs& a, py::handle h, ChunkPlan* plan) {
  switch (rule) {
    case Rule::SGD: return run_typed<SGDRule>(a, h, plan);
    case Rule::Adam: return run_typed<AdamRule>(a, h, plan);
    case Rule::NAdam: return run_typed<NAdamRule>(a, h, plan);
    case Rule::RMSprop: return run_typed<RMSpropRule>(a, h, plan);
    case Rule::Adagrad: return run_typed<AdagradRule>(a, h, plan);
    case Rule::GradOp: return run_typed<GradOpRule>(a, h, plan);
  }
  throw std::invalid_argument("unknown optimizer rule");
}

StepTable::StepTable(Rule rule, py::object hyper, py::list params, py::dict state, bool has_step, bool has_mu)
    : rule_(rule), hyper_(std::move(hyper)), params_(std::move(params)), state_(std::move(state)),
      step_key_(interned("step")), mu_key_(interned("mu_product")), has_step_(has_step), has_mu_(has_mu) {
  for (int64_t i = 0; i < static_cast<int64_t>(py::len(params_)); ++i) without_grad_.push_back(i);
}

int StepTable::add_bucket(int dtype, int device, StateFormat format, int nstates, bool master) {
  if (dtype < 0 || dtype > 3) throw py::value_error("unknown dtype code");
  Bucket b;
  b.args.dtype = static_cast<DType>(dtype);
  b.args.device = device;
  b.args.nslots = 2 + nstates;
  b.args.state_format = format;
  b.nstates = nstates;
  b.master = master;
  buckets_.push_back(std::move(b));
  return static_cast<int>(buckets_.size()) - 1;
}

void StepTable::add_member(int64_t index, int bucket, std::vector<std::string> keys, py::list holders,
                           py::list locals, int64_t numel, py::object step, py::object mu, bool first, bool dtensor) {
  if (bucket < 0 || bucket >= buckets()) throw py::index_error("bucket");
  if (index < 0 || index >= static_cast<int64_t>(py::len(params_))) throw py::index_error("param index");
  const Bucket& bk = buckets_[bucket];
  const size_t want = bk.nstates * (bk.args.state_format == StateFormat::Block8 ? 2 : 1) + (bk.master ? 1 : 0);
  if (keys.size() != want || py::len(holders) != want || py::len(locals) != want + 2)
    throw py::value_error("one key and holder per state entry, and param, grad and one local per entry");
  if (has_step_ == step.is_none() || has_mu_ == mu.is_none()) throw py::value_error("scalar state mismatch");
  Bucket& b = buckets_[bucket];
  Member m;
  m.index = index;
  m.bucket = bucket;
  m.slot = b.args.count++;
  m.param = params_[index];
  m.param_local = locals[0];
  PyObject* sd = item(state_, m.param);
  if (sd == nullptr) throw py::value_error("the parameter has no state entry");
  m.state_dict = py::reinterpret_borrow<py::object>(sd);
  for (const auto& k : keys) m.keys.push_back(interned(k));
  for (auto h : holders) m.holders.push_back(py::reinterpret_borrow<py::object>(h));
  for (auto l : locals) {
    m.ptrs.push_back(data_ptr(l));
    m.nbytes.push_back(attr(l, api().nbytes).cast<int64_t>());
    m.locals.push_back(py::reinterpret_borrow<py::object>(l));
  }
  py::handle grad = locals[1];
  m.grad_dtype = get(grad, api().dtype);
  m.grad_shape = get(grad, api().shape);
  // A dense non-contiguous layout (channels_last) was checked to be the param's and its
  // states' (Python side): later gradients must have exactly these strides.
  if (!is_contiguous(grad)) m.grad_strides = py::reinterpret_steal<py::object>(call0(api().stride, grad.ptr()));
  m.locals[1] = py::none();  // holding a gradient would keep its memory alive (see check_grad)
  remember_grad(m, grad);
  m.step = step;
  m.mu = mu;
  m.numel = numel;
  m.dtensor = dtensor;
  b.args.numels.push_back(numel);
  b.args.first.push_back(first ? 1 : 0);
  if (has_step_) b.args.steps.push_back(data_ptr(step));
  if (has_mu_) b.args.mu_products.push_back(data_ptr(mu));
  members_.push_back(std::move(m));
  without_grad_.erase(std::remove(without_grad_.begin(), without_grad_.end(), index), without_grad_.end());
  laid_out_ = false;
}

// Pointer and byte tables are slot-major, so they are laid out once every member is known.
void StepTable::lay_out() {
  for (Bucket& bk : buckets_) {
    StepArgs& a = bk.args;
    a.ptrs.assign(a.nslots * a.count, 0);
    a.nbytes.assign(a.nslots * a.count, 0);
    const int nabs = a.state_format == StateFormat::Block8 ? bk.nstates : 0;
    a.absmax.assign(nabs * a.count, 0);
    a.absmax_nbytes.assign(nabs * a.count, 0);
    a.master.assign(bk.master ? a.count : 0, 0);
    a.master_nbytes.assign(bk.master ? a.count : 0, 0);
  }
  for (const Member& mm : members_)
    for (size_t k = 0; k < mm.ptrs.size(); ++k)
      place(buckets_[mm.bucket], mm.slot, static_cast<int>(k), mm.ptrs[k], mm.nbytes[k]);
  laid_out_ = true;
}

// Local k of a member (0 param, 1 grad, 2.. its keys) goes to the slot, absmax or master table.
void StepTable::place(Bucket& bk, int64_t slot, int k, uintptr_t ptr, int64_t nbytes) {
  StepArgs& a = bk.args;
  const int nabs = static_cast<int>(a.absmax.size() / std::max<int64_t>(a.count, 1));
  if (k < a.nslots) {
    a.ptrs[k * a.count + slot] = ptr;
    a.nbytes[k * a.count + slot] = nbytes;
  } else if (k < a.nslots + nabs) {
    a.absmax[(k - a.nslots) * a.count + slot] = ptr;
    a.absmax_nbytes[(k - a.nslots) * a.count + slot] = nbytes;
  } else {
    a.master[slot] = ptr;
    a.master_nbytes[slot] = nbytes;
  }
}

bool StepTable::check_grad(const Member& m, py::handle g) const {
  // Gradients are new tensors each step after zero_grad(set_to_none=True), so each is
  // checked against what the table was built with: dtype, size, device (the kernel's
  // reads depend on them) and the strided layout of the build. Only a weak reference to it is
  // kept (remember_grad): a strong one would keep its memory alive through the next backward.
  if (get(g, api().dtype).ptr() != m.grad_dtype.ptr()) return false;
  const int same_shape = PyObject_RichCompareBool(get(g, api().shape).ptr(), m.grad_shape.ptr(), Py_EQ);
  if (same_shape < 0) throw py::error_already_set();
  if (!same_shape) return false;
  const int device = buckets_[m.bucket].args.device;
  if ((get(g, api().is_cuda).ptr() == Py_True) != (device >= 0)) return false;
  if (device >= 0 && call_int(api().get_device, g.ptr()) != device) return false;
  if (m.grad_strides.is_none()) return is_contiguous(g);  // False for sparse layouts too
  py::object strides = py::reinterpret_steal<py::object>(call0(api().stride, g.ptr()));
  const int same = PyObject_RichCompareBool(strides.ptr(), m.grad_strides.ptr(), Py_EQ);
  if (same < 0) throw py::error_already_set();
  return same == 1;
}

void StepTable::remember_grad(Member& m, py::handle g) {
  PyObject* ref = PyWeakref_NewRef(g.ptr(), nullptr);
  if (ref == nullptr) {
    PyErr_Clear();  // not weakly referenceable: checked in full every step
    m.grad_seen = py::none();
  } else {
    m.grad_seen = py::reinterpret_steal<py::object>(ref);
  }
}

bool StepTable::refresh_member(Member& m) {
  StepArgs& a = buckets_[m.bucket].args;
  const int64_t n = a.count;
  // the param itself, and its local shard for DTensors
  if (PyList_GET_ITEM(params_.ptr(), m.index) != m.param.ptr()) return false;
  if (m.dtensor && attr(m.param, api().local).ptr() != m.param_local.ptr()) return false;
  if (data_ptr(m.param_local) != a.ptrs[m.slot]) return false;
  // the gradient: a new tensor each step after zero_grad(set_to_none=True)
  py::object g = get(m.param, api().grad);
  if (g.is_none()) return false;
  if (m.dtensor) g = attr(g, api().local);
  const uintptr_t grad_ptr = data_ptr(g);
  // The gradient checked last step, unmoved, is held to the standard of the param and the
  // state tensors: its address. A new gradient tensor gets the full check.
  if (!(seen(m.grad_seen) == g.ptr() && grad_ptr == a.ptrs[n + m.slot])) {
    if (!check_grad(m, g)) return false;
    remember_grad(m, g);
  }
  a.ptrs[n + m.slot] = grad_ptr;
  // the optimizer state: the same entries as at build, at the same addresses (the mapping
  // param -> state dict is versioned in Python: optim/_state.py)
  for (size_t k = 0; k < m.keys.size(); ++k) {
    if (item(m.state_dict, m.keys[k]) != m.holders[k].ptr()) return false;
    if (m.dtensor && attr(m.holders[k], api().local).ptr() != m.locals[k + 2].ptr()) return false;
    if (data_ptr(m.locals[k + 2]) != m.ptrs[k + 2]) return false;
  }
  if (has_step_ && (item(m.state_dict, step_key_) != m.step.ptr() || data_ptr(m.step) != a.steps[m.slot])) return false;
  if (has_mu_ && (item(m.state_dict, mu_key_) != m.mu.ptr() || data_ptr(m.mu) != a.mu_products[m.slot])) return false;
  return true;
}

bool StepTable::refresh() {
  if (!laid_out_) lay_out();
  try {
    if (static_cast<size_t>(PyList_GET_SIZE(params_.ptr())) != members_.size() + without_grad_.size()) return false;
    for (int64_t i : without_grad_)
      if (!get(PyList_GET_ITEM(params_.ptr(), i), api().grad).is_none()) return false;
    for (Member& m : members_)
      if (!refresh_member(m)) return false;
    return true;
  } catch (py::error_already_set&) {
    // Anything that cannot even be read the usual way (a sparse gradient's data_ptr, say)
    // is a change: the caller's full validation then raises the proper error.
    PyErr_Clear();
    return false;
  }
}

void StepTable::launch(int bucket, double lr, uintptr_t lr_ptr, bool capturable, uintptr_t grad_scale,
                       uintptr_t found_inf, uintptr_t clip_coef, int num_threads, uintptr_t stream) {
  if (!laid_out_) lay_out();
  StepArgs& a = buckets_.at(bucket).args;
  a.lr = lr;
  a.lr_ptr = lr_ptr;
  a.capturable = capturable;
  a.grad_scale = grad_scale;
  a.found_inf = found_inf;
  a.clip_coef = clip_coef;
  a.num_threads = num_threads;
  a.stream = stream;
  run_rule(rule_, a, hyper_, &buckets_.at(bucket).plan);
  std::fill(a.first.begin(), a.first.end(), 0);
}

void StepTable::launch_cpu(double lr, int num_threads) {
  for (const Bucket& b : buckets_)
    if (b.args.device >= 0) throw py::value_error("launch_cpu: a bucket is on a CUDA device");
  for (int b = 0; b < buckets(); ++b) launch(b, lr, 0, false, 0, 0, 0, num_threads, 0);
}

void StepTable::append_grads(NormArgs& out) {
  if (!laid_out_) lay_out();
  for (const Member& m : members_) {
    const StepArgs& a = buckets_[m.bucket].args;
    out.ptrs.push_back(a.ptrs[a.count + m.slot]);
    out.numels.push_back(m.numel);
    out.nbytes.push_back(a.nbytes[a.count + m.slot]);
    out.dtypes.push_back(static_cast<int32_t>(a.dtype));
    ++out.count;
  }
}

bool StepTable::has_first() const {
  for (const Bucket& b : buckets_)
    for (uint8_t f : b.args.first)
      if (f) return true;
  return false;
}

void bind_step_table(py::module_& m) {
  py::enum_<Rule>(m, "Rule")
      .value("SGD", Rule::SGD)
      .value("Adam", Rule::Adam)
      .value("NAdam", Rule::NAdam)
      .value("RMSprop", Rule::RMSprop)
      .value("Adagrad", Rule::Adagrad)
      .value("GradOp", Rule::GradOp);
  m.def("optimizer_step", [](Rule rule, const StepArgs& a, py::object hyper) { run_rule(rule, a, hyper); },
        py::arg("rule"), py::arg("args"), py::arg("hyper"));
  py::class_<StepTable>(m, "StepTable")
      .def(py::init<Rule, py::object, py::list, py::dict, bool, bool>(), py::arg("rule"), py::arg("hyper"),
           py::arg("params"), py::arg("state"), py::arg("has_step"), py::arg("has_mu"))
      .def("add_bucket", &StepTable::add_bucket, py::arg("dtype"), py::arg("device"), py::arg("state_format"),
           py::arg("nstates"), py::arg("master"))
      .def("add_member", &StepTable::add_member, py::arg("index"), py::arg("bucket"), py::arg("keys"),
           py::arg("holders"), py::arg("locals"), py::arg("numel"), py::arg("step"), py::arg("mu"), py::arg("first"),
           py::arg("dtensor"))
      .def("refresh", &StepTable::refresh)
      .def("launch", &StepTable::launch, py::arg("bucket"), py::arg("lr"), py::arg("lr_ptr"), py::arg("capturable"),
           py::arg("grad_scale"), py::arg("found_inf"), py::arg("clip_coef"), py::arg("num_threads"),
           py::arg("stream"))
      .def("launch_cpu", &StepTable::launch_cpu, py::arg("lr"), py::arg("num_threads"))
      .def_property_readonly("buckets", &StepTable::buckets)
      .def("bucket_device", &StepTable::bucket_device, py::arg("bucket"))
      .def_property_readonly("has_first", &StepTable::has_first);
  m.def("table_grad_numels", [](const std::vector<StepTable*>& tables) {
    NormArgs a;
    for (StepTable* t : tables) t->append_grads(a);
    return a.numels;
  }, py::arg("tables"));
  m.def("norm_of_tables", [](const std::vector<StepTable*>& tables, NormArgs a) {
    a.ptrs.clear(), a.numels.clear(), a.nbytes.clear(), a.dtypes.clear(), a.count = 0;
    for (StepTable* t : tables) t->append_grads(a);
    NormResult r;
    {
      py::gil_scoped_release release;
      r = tensor_norms(a);
    }
    return py::make_tuple(r.total, r.coef);
  }, py::arg("tables"), py::arg("args"));
}

}  // namespace fusekit::bind
