"""FusedOptimizer: the torch.optim.Optimizer subclass every fusekit optimizer builds on.

An eager step validates everything before any write, then updates every tensor of a
param group in one kernel call per (device, dtype). The hot path runs on cached tables
(_backend/optim.StepTable): built once per param group after full validation, re-checked
natively each step (pointers, gradients' layouts, state entries) and rebuilt when anything
changed. Under torch.compile the step is instead one fusekit::<rule>_step_ custom op per
group over lists of tensors, as torch's own fused optimizers (architecture.md §2.6).
"""
from __future__ import annotations

from itertools import chain

import torch
from torch.optim import Optimizer
from torch.optim import optimizer as _torch_optimizer

from ..clip import AutoClip, GradNormMonitor, global_norm
from .._backend import local
from .._backend import norm as _norm
from .._backend.optim import StepTable, make_hyper
from . import _checks as C
from ._plan import GroupPlan
from ._state import tracked
from ._storage import F, Storage, is_side_entry

_GLOBAL_PRE_HOOKS = getattr(_torch_optimizer, "_global_optimizer_pre_hooks", {})
_GLOBAL_POST_HOOKS = getattr(_torch_optimizer, "_global_optimizer_post_hooks", {})
_CPU = torch.device("cpu")


class FusedOptimizer(Optimizer):
    """Subclasses set _rule (a key of _backend.optim.RULES) and implement _state_names,
    _hyper_fields, _check_options and _init_state; optimizers without a `step` state
    clear _has_step, NAdam sets _has_mu_product."""

    _rule: str = ""
    _has_step = True
    _has_mu_product = False
    _lazy_state: tuple = ()  # state entries created on a later step if missing (SGD's momentum_buffer)

    def __init__(self, params, defaults: dict, *, max_grad_norm=None, track_grad_norm: bool = False,
                 grad_norm_history: int = 1000, state_dtype=None, master_weights: bool = False,
                 min_8bit_size: int | None = None) -> None:
        name = type(self).__name__
        C.check_impl_flags(name, defaults)
        self._storage = Storage(name, state_dtype, master_weights, min_8bit_size)
        self._check_options(defaults, "")
        super().__init__(params, defaults)
        # AMP as torch: in-kernel unscaling only for fused=True (GradScaler then hands over
        # grad_scale / found_inf); otherwise GradScaler unscales, as for torch's foreach path.
        self._step_supports_amp_scaling = bool(defaults.get("fused"))
        self.max_grad_norm = C.check_max_grad_norm(max_grad_norm)
        if not isinstance(track_grad_norm, bool):
            raise TypeError(f"{name}: track_grad_norm must be a bool, got {track_grad_norm!r}")
        history = C.check_history(grad_norm_history)
        if isinstance(self.max_grad_norm, AutoClip):
            history = max(history, self.max_grad_norm.history)
        self.grad_norms = GradNormMonitor(history) if (max_grad_norm is not None or track_grad_norm) else None
        self._fk_init()

    def _fk_init(self) -> None:
        self.state = tracked(self.state)
        self._fk_plans: dict = {}    # param group index -> GroupPlan
        self._fk_fresh: set = set()  # SGD: params whose momentum buffer starts on their next step
        self._fk_first_flags: dict = {}  # compiled steps: group index -> those flags as a tensor
        self._fk_cuda = False  # any CUDA parameter seen (the capture check runs only then)
        self._last_norm = None

    # ---- subclass API ------------------------------------------------------------------
    def _state_names(self, group: dict) -> list[str]:
        raise NotImplementedError

    def _hyper_fields(self, group: dict) -> dict:
        raise NotImplementedError

    def _check_options(self, group: dict, where: str) -> None:
        """Raises for an invalid hyper-parameter of a group (where: ' of param group i')."""
        raise NotImplementedError

    def _init_state(self, p: torch.Tensor, group: dict, state: dict) -> bool:
        """Creates the state of a parameter seen with a gradient for the first time; returns
        True when a buffer starts on this step (SGD's momentum)."""
        raise NotImplementedError

    # ---- torch.optim.Optimizer API -----------------------------------------------------
    @property
    def last_grad_norm(self):
        """The last step's unclipped global gradient norm (a 0-d tensor), with max_grad_norm
        or track_grad_norm; None before the first such step."""
        return self._last_norm

    def __getstate__(self) -> dict:
        state = super().__getstate__()
        state.update(max_grad_norm=self.max_grad_norm, grad_norms=self.grad_norms, _storage=self._storage)
        return state

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        for k in ("max_grad_norm", "grad_norms"):
            self.__dict__.setdefault(k, None)
        if "_storage" not in self.__dict__:
            self._storage = Storage(type(self).__name__)
        self._step_supports_amp_scaling = bool(self.defaults.get("fused"))
        self._fk_init()
        # Groups loaded from torch.optim (or older fusekit) lack fusekit-only keys.
        for group in self.param_groups:
            for k, v in self.defaults.items():
                group.setdefault(k, v)

    def add_param_group(self, param_group: dict) -> None:
        n = len(self.param_groups)
        super().add_param_group(param_group)  # torch's own checks, and its defaults filled in
        try:
            C.check_unique(self.param_groups[-1]["params"], f" {n}")
            self._check_options(self.param_groups[-1], f" of param group {n}")
        except Exception:
            self.param_groups.pop()
            raise

    def _scalar_keys(self) -> tuple:
        return ("step",) * self._has_step + ("mu_product",) * self._has_mu_product

    def state_dict(self) -> dict:
        sd = super().state_dict()
        if self.grad_norms is not None:
            sd["grad_norms"] = self.grad_norms.state_dict()
        return sd

    def load_state_dict(self, state_dict: dict) -> None:
        C.check_loaded_state(self, state_dict)
        super().load_state_dict(state_dict)
        if not self._storage.plain:
            self._restore_formats(state_dict)
        self._fk_plans.clear()
        if self.grad_norms is not None and "grad_norms" in state_dict:
            self.grad_norms.load_state_dict(state_dict["grad_norms"])

    def step(self, closure=None):
        """One fused optimizer step (same contract as torch.optim.Optimizer.step)."""
        # torch wraps step() in record_function + hooks (_patch_step_function); fusekit does
        # the same here, entering record_function only while a profiler runs (it costs tens
        # of microseconds per step on small models).
        args, kwargs = (self,), ({} if closure is None else {"closure": closure})
        if _GLOBAL_PRE_HOOKS or self._optimizer_step_pre_hooks:
            for hook in chain(_GLOBAL_PRE_HOOKS.values(), self._optimizer_step_pre_hooks.values()):
                result = hook(self, args, kwargs)
                if result is not None:
                    if not (isinstance(result, tuple) and len(result) == 2):
                        raise RuntimeError(f"step pre-hook must return None or (args, kwargs), got {result}")
                    args, kwargs = result
        if torch.compiler.is_compiling():
            out = self._traced_step(*args[1:], **kwargs)
        elif torch.autograd._profiler_enabled():
            with torch.autograd.profiler.record_function(f"Optimizer.step#{type(self).__name__}.step"):
                out = self._eager_step(*args[1:], **kwargs)
        else:
            out = self._eager_step(*args[1:], **kwargs)
        self._optimizer_step_code()
        if self._optimizer_step_post_hooks or _GLOBAL_POST_HOOKS:
            for hook in chain(self._optimizer_step_post_hooks.values(), _GLOBAL_POST_HOOKS.values()):
                hook(self, args, kwargs)
        return out

    step.hooked = True  # tells torch.optim.Optimizer not to wrap it again

    # ---- eager steps -------------------------------------------------------------------
    def _prologue(self, closure):
        """(loss, grad_scale, found_inf): the closure's loss, and the AMP scalars GradScaler
        hands fused optimizers, checked."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        grad_scale = getattr(self, "grad_scale", None)
        found_inf = getattr(self, "found_inf", None)
        C.check_amp_scalars(self, grad_scale, found_inf)
        return loss, grad_scale, found_inf

    def _eager_step(self, closure=None):
        loss, grad_scale, found_inf = self._prologue(closure)
        plans, stale, checked = self._current_plans()
        self._capture_check(plans)
        if found_inf is not None:
            # On CUDA found_inf is read by the kernels; on the host only where state or a
            # buffer would start this step (a skipped step creates and consumes nothing).
            fresh = bool(stale) or any(p.fresh for p in plans if p is not None)
            if (found_inf.is_cpu or fresh) and float(found_inf) != 0.0:
                return loss
        plans = self._build_stale(plans, stale, checked)
        coef = self._grad_norm_pass(plans, grad_scale, found_inf)
        for plan in plans:
            plan.launch(grad_scale, found_inf, coef)
            if plan.fresh:
                self._fk_fresh.difference_update(plan.params)
                plan.fresh = False
        return loss

    def _capture_check(self, plans) -> None:
        """As torch: a step captured into a CUDA graph must be capturable (its step counts
        and lr read on the device), or every replay would repeat the captured values."""
        if not self._fk_cuda or not torch.cuda.is_current_stream_capturing():
            return
        for gi, group in enumerate(self.param_groups):
            if not (group.get("capturable") or group.get("fused")):
                raise RuntimeError(f"Attempting CUDA graph capture of step() for an instance of {type(self).__name__} "
                                   f"but param_groups' capturable is False (param group {gi}); pass capturable=True "
                                   "or fused=True")

    def _current_plans(self):
        """(plans, stale, checked): each group's cached plan where nothing changed, None
        where it must be rebuilt (stale: those indices); checked: the stale groups'
        validated parameters. Every stale group is validated before any state is created,
        so a raising step writes nothing."""
        plans, stale = [], []
        for gi, group in enumerate(self.param_groups):
            C.check_lr(group["lr"], gi)  # lr is not part of a plan: checked each step
            plan = self._fk_plans.get(gi)
            if plan is None or not plan.current(group):
                stale.append(gi)
                plan = None
            plans.append(plan)
        checked = {gi: self._check_group(gi, self.param_groups[gi]) for gi in stale} if stale else {}
        return plans, stale, checked

    def _build_stale(self, plans, stale, checked) -> list[GroupPlan]:
        if not stale:  # current plans all have a table, so parameters
            return plans
        for gi in stale:
            plans[gi] = self._fk_plans[gi] = self._build_plan(gi, self.param_groups[gi], checked[gi])
        for p in plans:  # the builds may have added state entries (each param is in one group only)
            p.state_version = self.state.version
        return [p for p in plans if p.params]

    def _check_group(self, gi: int, group: dict) -> list:
        """Validates a group's options, parameters, gradients and existing state; returns
        [(index, param)] of the parameters with a gradient. Writes nothing."""
        where = f" of param group {gi}"
        self._check_options(group, where)
        C.check_unique(group["params"], f" {gi}")
        names = self._state_names(group)
        out = []
        for i, p in enumerate(group["params"]):
            if p.grad is None:
                continue
            self._storage.check_param(p, f"parameter {i} of param group {gi}")
            C.check_param(self, p, gi, i, names, self.state.get(p))
            out.append((i, p))
        return out

    def _build_plan(self, gi: int, group: dict, members: list) -> GroupPlan:
        names = self._state_names(group)
        storage = self._storage
        rows = []
        for i, p in members:
            st = self.state[p]
            if self._init_state(p, group, st):
                self._fk_fresh.add(p)
            if not storage.plain:
                for key, t in storage.extra_state(p, names).items():
                    st.setdefault(key, t)
            if self._has_step:
                self._scalar_state(p, group, st, "step")
            if self._has_mu_product:
                self._scalar_state(p, group, st, "mu_product")
            if local(p).device.type != "meta":  # meta tensors hold no data: state, but no kernel
                rows.append((i, p, st))
            self._fk_cuda = self._fk_cuda or local(p).is_cuda
        hyper = make_hyper(self._rule, self._hyper_fields(group))
        fresh = bool(self._fk_fresh) and any(p in self._fk_fresh for _, p, _ in rows)
        keys = [storage.keys(p, names) for _, p, _ in rows]
        # per row the tensors laid out like the param (absmax runs per block of its memory)
        laid = [[p, p.grad] + [st[k] for k in ks if not k.startswith("absmax")] for (_, p, st), ks in zip(rows, keys)]
        table = None
        if rows and StepTable.applies(laid):
            table = StepTable(self._rule, hyper, group, self.state, len(names), self._has_step,
                              self._has_mu_product, [(i, p, st, storage.format(p) if names else F.Param, ks)
                                                     for (i, p, st), ks in zip(rows, keys)], self._fk_fresh)
        elif rows and not storage.plain:
            raise NotImplementedError(f"{type(self).__name__}: low-precision state and master weights need "
                                      "dense parameters, each with its gradient in the same layout")
        return GroupPlan(self, group, rows, names, hyper, table, fresh)

    def _restore_formats(self, state_dict: dict) -> None:
        """torch's load_state_dict casts every floating state tensor to its parameter's
        dtype; states stored in another format (bfloat16, float32 master weights, 8-bit
        codes and absmax) are taken again from the saved values, cast once to their own."""
        saved_ids = chain.from_iterable(g["params"] for g in state_dict["param_groups"])
        params = chain.from_iterable(g["params"] for g in self.param_groups)
        for pid, p in zip(saved_ids, params):
            saved = state_dict["state"].get(pid)
            if not saved or p not in self.state:
                continue
            st = self.state[p]
            for key, value in saved.items():
                if torch.is_tensor(value) and key not in C.SCALAR_STATE:
                    dtype = self._storage.entry_dtype(p, key)
                    st[key] = value.to(device=local(p).device if is_side_entry(key) else p.device, dtype=dtype)

    def _new_state(self, p, fill: float = 0.0) -> torch.Tensor:
        """A state tensor for p, zero (or fill), stored as this optimizer stores state."""
        return self._storage.zeros(p, fill)

    def _scalar_state(self, p, group: dict, state: dict, key: str) -> torch.Tensor:
        """step / mu_product as a float32 0-d tensor: on the param's CUDA device for
        capturable or fused groups (torch's convention), else on the CPU."""
        t = state[key]
        pl = local(p)
        on_device = pl.is_cuda and (group.get("capturable") or group.get("fused"))
        want = pl.device if on_device else _CPU
        if not (torch.is_tensor(t) and t.dtype is torch.float32 and t.dim() == 0 and t.device == want):
            t = torch.tensor(float(t), dtype=torch.float32, device=want)
            state[key] = t
        return t

    def _grad_norm_pass(self, plans, grad_scale, found_inf):
        """With max_grad_norm or track_grad_norm: the global L2 norm of all gradients (all
        groups), recorded; returns the clip coefficient (a 0-d float32 tensor) or None."""
        if self.grad_norms is None:
            return None
        thr = self.max_grad_norm
        if isinstance(thr, AutoClip):
            thr = self.grad_norms.threshold_tensor(thr, self._norm_device(plans))
        tail = _norm.Tail(max_norm=thr, grad_scale=grad_scale, history=self.grad_norms, found_inf=found_inf)
        tables = [p.table for p in plans]
        if all(t is not None for t in tables) and len({d for p in plans for d in p.table.devices}) == 1 \
                and not any(p.dtensor for p in plans):
            unscaled, coef = GroupPlan.norm_of_tables(tables, tail)
        else:
            grads = [p.grad for plan in plans for p in plan.params]
            _, unscaled, coef = global_norm(grads, 2.0, tail)
        self._last_norm = unscaled
        return coef

    def _norm_device(self, plans) -> torch.device:
        for plan in plans:
            if plan.params:
                return local(plan.params[0]).device
        return _CPU

    # ---- compiled steps (torch.compile) ----------------------------------------------
    def _init_group(self, group: dict, params: list, grads: list, state0: list, state1: list, state2: list,
                    steps: list, mus: list, first: list) -> bool:
        """Validates the group, creates missing state and fills the op's lists (local
        shards for DTensors; `first` gets the group's first-step flags tensor, which the op
        reads and clears). Called eagerly by Dynamo, as torch's optimizers' _init_group."""
        gi = next(i for i, g in enumerate(self.param_groups) if g is group)
        members = self._check_group(gi, group)
        plan = self._build_plan(gi, group, members)
        names = plan.names
        lists = (state0, state1, state2)
        for _, p, st in plan.rows:
            params.append(local(p))
            grads.append(local(p.grad))
            for k, n in enumerate(names):
                lists[k].append(local(st[n]))
            if self._has_step:
                steps.append(st["step"])
            if self._has_mu_product:
                mus.append(st["mu_product"])
        if self.grad_norms is not None and plan.params:
            self.grad_norms.rings(local(plan.params[0]).device)  # made here, not inside the graph
        flags = torch.tensor([p in self._fk_fresh for p in plan.params], dtype=torch.uint8)
        self._fk_fresh.difference_update(plan.params)
        self._fk_first_flags[gi] = flags  # the compiled graph holds it by weak reference
        first.append(flags)
        return plan.complex

    def _traced_step(self, closure=None):
        if not self._storage.plain:  # no op for low-precision state: the eager step, outside the graph
            return self._eager_step_outside_graph(closure)
        loss, grad_scale, found_inf = self._prologue(closure)
        work = []
        for group in self.param_groups:
            params, grads, s0, s1, s2, steps, mus, first = [], [], [], [], [], [], [], []
            self._init_group(group, params, grads, s0, s1, s2, steps, mus, first)
            if params:
                work.append((group, params, grads, s0, s1, s2, steps, mus, first[0]))
        coef = None
        if self.grad_norms is not None and work:
            coef = self._traced_norm([g for w in work for g in w[2]], grad_scale, found_inf)
        op = getattr(torch.ops.fusekit, f"{self._rule}_step_")
        for group, params, grads, s0, s1, s2, steps, mus, first in work:
            lr = group["lr"]
            # A float lr as a tensor, made by an addition: Dynamo then traces the float as an
            # input (after one recompile, as for torch's optimizers) instead of baking each
            # value a scheduler sets (torch.tensor(lr) and kin specialise it).
            lr = lr if isinstance(lr, torch.Tensor) else torch.zeros((), dtype=torch.float64) + lr
            op(params, grads, s0, s1, s2, steps, mus, first, lr=0.0, lr_tensor=lr, grad_scale=grad_scale,
               found_inf=found_inf, clip_coef=coef, **self._hyper_fields(group))
        return loss

    def _traced_norm(self, grads, grad_scale, found_inf):
        device = grads[0].device
        norms, thresholds, count = self.grad_norms.rings(device)
        thr = self.max_grad_norm
        if isinstance(thr, AutoClip):
            thr = self.grad_norms.threshold_tensor(thr, device)
        tensor_thr = isinstance(thr, torch.Tensor)
        _, unscaled, coef = torch.ops.fusekit.grad_norm_(
            grads, 2.0, None if tensor_thr or thr is None else float(thr), thr if tensor_thr else None, grad_scale,
            found_inf, norms, thresholds, count)
        self._last_norm = unscaled
        return coef if thr is not None else None


FusedOptimizer._eager_step_outside_graph = torch.compiler.disable(FusedOptimizer._eager_step)
