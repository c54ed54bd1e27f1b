// The eager hot path of a fused optimizer step (architecture.md §2.6): one param group's kernel
// argument tables (pointers, sizes, hyper-parameters), built once by Python after full
// validation and reused while every tensor behind them is unchanged.
//
// refresh() re-reads each pointer through the Python C API (no per-tensor Python code):
// the group's param list, each param's data and gradient, its state entries and, for
// DTensors, their local shards (the mapping from params to state dicts is versioned on the
// Python side: optim/_state.py). Anything that differs from the build (a new
// gradient layout, p.data replaced, state swapped or reloaded, a gradient appearing or
// vanishing) makes it return false without writing anything; Python then validates and
// rebuilds. New gradient tensors of the same layout (zero_grad(set_to_none=True)) cost a
// dtype/shape/device/layout check each; the gradient checked last step (held weakly), at
// the same address, costs only that address, as params and state entries do.
#pragma once
#include <pybind11/pybind11.h>

#include <string>
#include <vector>

#include "fusekit/norm_args.h"
#include "fusekit/optim_step.h"
#include "fusekit/step_args.h"

namespace fusekit::bind {

enum class Rule : int { SGD = 0, Adam = 1, NAdam = 2, RMSprop = 3, Adagrad = 4, GradOp = 5 };

// Runs one fused step of `rule` (hyper: the rule's Hyper struct), without the GIL; plan: the
// CPU chunk list of a caller that steps the same tensors again, or nullptr.
void run_rule(Rule rule, const StepArgs& args, pybind11::handle hyper, ChunkPlan* plan = nullptr);

class StepTable {
 public:
  StepTable(Rule rule, pybind11::object hyper, pybind11::list params, pybind11::dict state, bool has_step,
            bool has_mu);

  // One (device, dtype, state storage) bucket; returns its index. Its members carry
  // nstates state tensors, then (Block8) one absmax per state, then, if master, the
  // float32 master copy of the parameter.
  int add_bucket(int dtype, int device, StateFormat format, int nstates, bool master);
  // Param `index` of the group (which has a gradient) in `bucket`. keys: the state entries
  // the kernel touches, in the bucket's order; holders: what state[p][key] held at build;
  // locals: the tensors whose memory the kernel touches (param, grad, then one per key;
  // local shards for DTensors); numel: kernel elements; step / mu: the 0-d float32 scalar
  // state (or None).
  void add_member(int64_t index, int bucket, std::vector<std::string> keys, pybind11::list holders,
                  pybind11::list locals, int64_t numel, pybind11::object step, pybind11::object mu, bool first,
                  bool dtensor);

  bool refresh();
  // Runs bucket b's kernel with this step's scalars. first-step flags are cleared after a
  // launch (the caller skips launches whose found_inf it knows to be set).
  void launch(int bucket, double lr, uintptr_t lr_ptr, bool capturable, uintptr_t grad_scale, uintptr_t found_inf,
              uintptr_t clip_coef, int num_threads, uintptr_t stream);
  // Every bucket's kernel with lr as the only scalar: the common eager step when every
  // bucket is on the CPU (no streams, no device scalars); raises for a CUDA bucket.
  void launch_cpu(double lr, int num_threads);
  // The current gradients as a norm call's tensor list (CPU or one device; see tensor_norms).
  void append_grads(NormArgs& a);
  int buckets() const { return static_cast<int>(buckets_.size()); }
  int bucket_device(int b) const { return buckets_.at(b).args.device; }
  bool has_first() const;

 private:
  struct Member {
    int64_t index;
    int bucket;
    int64_t slot;  // position within the bucket
    pybind11::object param, param_local, state_dict, step, mu;
    std::vector<pybind11::object> keys, holders, locals;  // state keys, their entries, param/grad/entries
    std::vector<uintptr_t> ptrs;   // at build, per tensor slot
    std::vector<int64_t> nbytes;
    pybind11::object grad_dtype, grad_shape;  // what the gradient was at build
    pybind11::object grad_strides = pybind11::none();  // None: contiguous
    // A weak reference to the gradient last checked (None: none yet, or not weakly
    // referenceable): the same tensor at the same address is not checked again.
    pybind11::object grad_seen = pybind11::none();
    int64_t numel;  // kernel elements (real view for complex)
    bool dtensor;
  };
  struct Bucket {
    StepArgs args;
    ChunkPlan plan;  // the CPU chunk list, cut again only when the thread count changes
    int nstates = 0;
    bool master = false;
  };

  bool refresh_member(Member& m);
  bool check_grad(const Member& m, pybind11::handle g) const;
  static void remember_grad(Member& m, pybind11::handle g);
  void lay_out();
  static void place(Bucket& bk, int64_t slot, int k, uintptr_t ptr, int64_t nbytes);

  Rule rule_;
  pybind11::object hyper_;
  pybind11::list params_;
  pybind11::dict state_;
  pybind11::object step_key_, mu_key_;
  bool has_step_, has_mu_;
  std::vector<Member> members_;
  std::vector<int64_t> without_grad_;  // group indices built without a gradient
  std::vector<Bucket> buckets_;
  bool laid_out_ = false;
};

void bind_step_table(pybind11::module_& m);

}  // namespace fusekit::bind
