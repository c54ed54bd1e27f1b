"""FusedOptimizer: the torch.optim.Optimizer subclass every fusekit optimizer builds on.

One step = validate everything (no writes) -> create missing state -> one kernel call per
(param group, device, dtype) that updates params and all state in a single pass.
"""
from __future__ import annotations

from collections import defaultdict
from itertools import chain

import torch
from torch.optim import Optimizer
from torch.optim import optimizer as _torch_optimizer

from .. import _C
from ..clip import AutoClip, GradNormMonitor, norm_and_coef
from .._backend import DTYPE_CODES, as_real, cuda_available, current_stream, device_index, flat_compatible, real_dtype

_CPU = torch.device("cpu")
_SCALAR_STATE = ("step", "mu_product")
_SUPPORTED = frozenset(DTYPE_CODES) | {torch.complex64, torch.complex128}
_CUDA_OK = cuda_available
_GLOBAL_PRE_HOOKS = getattr(_torch_optimizer, "_global_optimizer_pre_hooks", {})
_GLOBAL_POST_HOOKS = getattr(_torch_optimizer, "_global_optimizer_post_hooks", {})


def check_impl_flags(name: str, defaults: dict) -> None:
    """foreach / fused / capturable are accepted (fusekit is always fused); these are not."""
    if defaults.get("differentiable"):
        raise ValueError(
            f"{name}: differentiable=True is not supported by fusekit's fused kernels "
            f"(use torch.optim.{name} to differentiate through the step)"
        )
    if defaults.get("fused") and defaults.get("foreach"):
        raise ValueError(f"{name}: fused=True and foreach=True cannot be set together")


def make_hyper(cls, **fields):
    """A _C.*Hyper struct with the given fields (floats and bools from a param group)."""
    h = cls()
    for k, v in fields.items():
        setattr(h, k, bool(v) if isinstance(v, bool) else float(v))
    return h


def check_lr(lr) -> None:
    if isinstance(lr, torch.Tensor) and lr.numel() != 1:
        raise ValueError("Tensor lr must be 1-element")
    if not 0.0 <= lr:
        raise ValueError(f"Invalid learning rate: {lr}")


def check_betas(betas) -> tuple:
    betas = tuple(float(b) if isinstance(b, torch.Tensor) else b for b in betas)
    if len(betas) != 2:
        raise ValueError(f"betas must be a pair, got {betas}")
    for i, b in enumerate(betas):
        if not 0.0 <= b < 1.0:
            raise ValueError(f"Invalid beta parameter at index {i}: {b}")
    return betas


def check_nonneg(**values) -> None:
    for name, v in values.items():
        if not 0.0 <= v:
            raise ValueError(f"Invalid {name} value: {v}")


class FusedOptimizer(Optimizer):
    """Subclasses set _kernel (a _C step function) and implement _state_names,
    _hyper and _init_state; optimizers with a `step` state set _has_step."""

    _step_supports_amp_scaling = True
    _kernel: str = ""
    _has_step = True
    _has_mu_product = False

    def __init__(self, params, defaults: dict, *, max_grad_norm=None, track_grad_norm: bool = False,
                 grad_norm_history: int = 1000) -> None:
        check_impl_flags(type(self).__name__, defaults)
        super().__init__(params, defaults)
        if max_grad_norm is not None and not isinstance(max_grad_norm, (AutoClip, torch.Tensor)):
            max_grad_norm = float(max_grad_norm)
            if not max_grad_norm > 0:
                raise ValueError(f"Invalid max_grad_norm value: {max_grad_norm} (must be positive)")
        if isinstance(max_grad_norm, torch.Tensor) and max_grad_norm.numel() != 1:
            raise ValueError("Tensor max_grad_norm must be 1-element")
        self.max_grad_norm = max_grad_norm
        self.last_grad_norm = None
        history = max(grad_norm_history, max_grad_norm.history if isinstance(max_grad_norm, AutoClip) else 0)
        self.grad_norms = GradNormMonitor(history) if (max_grad_norm is not None or track_grad_norm) else None

    # ---- subclass API ------------------------------------------------------------------
    def _state_names(self, group: dict) -> list[str]:
        raise NotImplementedError

    def _hyper(self, group: dict):
        raise NotImplementedError

    def _init_state(self, p: torch.Tensor, group: dict, state: dict) -> None:
        """Create the state of a parameter seen with a gradient for the first time."""
        raise NotImplementedError

    def _first_flags(self, params: list, group: dict) -> list[bool]:
        return []

    # ---- torch.optim.Optimizer API -----------------------------------------------------
    def __getstate__(self) -> dict:
        state = super().__getstate__()
        state.update(max_grad_norm=self.max_grad_norm, grad_norms=self.grad_norms)
        return state

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        for k in ("max_grad_norm", "grad_norms", "last_grad_norm"):
            self.__dict__.setdefault(k, None)
        # Groups loaded from torch.optim (or older fusekit) lack fusekit-only keys.
        for group in self.param_groups:
            for k, v in self.defaults.items():
                group.setdefault(k, v)

    def state_dict(self) -> dict:
        sd = super().state_dict()
        if self.grad_norms is not None:
            sd["grad_norms"] = self.grad_norms.state_dict()
        return sd

    def load_state_dict(self, state_dict: dict) -> None:
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) == len(self.param_groups) and all(
            len(g["params"]) == len(s["params"]) for g, s in zip(self.param_groups, saved_groups)
        ):
            saved_ids = chain.from_iterable(g["params"] for g in saved_groups)
            params = chain.from_iterable(g["params"] for g in self.param_groups)
            for index, (pid, p) in enumerate(zip(saved_ids, params)):
                for key, value in state_dict["state"].get(pid, {}).items():
                    if torch.is_tensor(value) and key not in _SCALAR_STATE and value.shape != p.shape:
                        raise ValueError(
                            f"loaded state_dict has state {key!r} of shape {tuple(value.shape)} for "
                            f"parameter {index}, which has shape {tuple(p.shape)}"
                        )
        super().load_state_dict(state_dict)
        if self.grad_norms is not None and "grad_norms" in state_dict:
            self.grad_norms.load_state_dict(state_dict["grad_norms"])

    def step(self, closure=None):
        """One fused optimizer step (same contract as torch.optim.Optimizer.step)."""
        # torch wraps step() in record_function + hooks (_patch_step_function); fusekit
        # does the same here but enters record_function only while a profiler is
        # running, which saves tens of microseconds per step on small models.
        pre = chain(_GLOBAL_PRE_HOOKS.values(), self._optimizer_step_pre_hooks.values())
        args, kwargs = (self,), ({} if closure is None else {"closure": closure})
        for hook in pre:
            result = hook(self, args, kwargs)
            if result is not None:
                if not (isinstance(result, tuple) and len(result) == 2):
                    raise RuntimeError(f"step pre-hook must return None or (args, kwargs), got {result}")
                args, kwargs = result
        if torch.autograd._profiler_enabled():
            with torch.autograd.profiler.record_function(f"Optimizer.step#{type(self).__name__}.step"):
                out = self._step(*args[1:], **kwargs)
        else:
            out = self._step(*args[1:], **kwargs)
        self._optimizer_step_code()
        for hook in chain(self._optimizer_step_post_hooks.values(), _GLOBAL_POST_HOOKS.values()):
            hook(self, args, kwargs)
        return out

    step.hooked = True  # tells torch.optim.Optimizer not to wrap it again

    def _step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        grad_scale = getattr(self, "grad_scale", None)
        found_inf = getattr(self, "found_inf", None)
        # Pass 1 checks every group before anything is written.
        work = [(g, self._collect(gi, g)) for gi, g in enumerate(self.param_groups)]
        if found_inf is not None:
            if not torch.is_tensor(found_inf) or found_inf.numel() != 1:
                raise ValueError("found_inf must be a 1-element tensor")
            # Reading found_inf costs nothing on the CPU; on CUDA only when state must be
            # created, so a skipped first step creates none (e.g. SGD's momentum buffers).
            needs_state = any(len(self.state.get(p, ())) == 0 for _, ps in work for p in ps)
            if (found_inf.is_cpu or needs_state) and float(found_inf) != 0.0:
                return loss
        # The kernels write raw memory outside autograd; only state creation and staging
        # copies touch autograd-visible tensors, and those run under no_grad themselves.
        coef = self._grad_norm_pass(work, grad_scale)
        for group, params in work:
            if params:
                self._run_group(group, params, grad_scale, found_inf, coef)
        return loss

    def _grad_norm_pass(self, work: list, grad_scale):
        """With max_grad_norm or track_grad_norm: the global L2 norm of all gradients (one
        read), recorded; returns the clip coefficient as a 0-d device tensor, or None."""
        if self.grad_norms is None:
            return None
        grads = [p.grad for _, ps in work for p in ps]
        if not grads:
            return None
        thr = self.max_grad_norm
        if isinstance(thr, AutoClip):
            n = min(self.grad_norms.count, thr.history)
            thr = self.grad_norms.threshold_tensor(thr.percentile, thr.history) if n >= thr.min_history else None
        total, coef = norm_and_coef(grads, 2.0, max_norm=thr, grad_scale=grad_scale)
        self.last_grad_norm = total
        self.grad_norms.record(total, thr)
        return coef

    # ---- internals ---------------------------------------------------------------------
    def _collect(self, gi: int, group: dict) -> list:
        """Checks every parameter with a gradient; writes nothing. Cheap tensor properties
        only (is_cuda, get_device), since this runs for every parameter on every step."""
        name = type(self).__name__
        names = self._state_names(group)
        states = self.state
        out = []
        for i, p in enumerate(group["params"]):
            g = p.grad
            if g is None:
                continue
            pd = p.dtype
            if g.is_sparse:
                raise RuntimeError(f"{name} does not support sparse gradients (parameter {i} of param group {gi})")
            if pd not in _SUPPORTED:
                raise TypeError(f"{name}: parameter {i} of param group {gi} has dtype {pd}; supported: float32, "
                                "float64, float16, bfloat16 and complex64/complex128")
            if g.dtype is not pd:
                raise TypeError(f"{name}: gradient dtype {g.dtype} does not match dtype {pd} of parameter {i} "
                                f"of param group {gi}")
            if g.shape != p.shape:
                raise ValueError(f"{name}: gradient shape {tuple(g.shape)} does not match shape "
                                 f"{tuple(p.shape)} of parameter {i} of param group {gi}")
            dev = p.get_device() if p.is_cuda else -1
            if dev < 0:
                if not p.is_cpu:
                    device_index(p.device)  # raises: not a CPU or CUDA tensor
            elif not _CUDA_OK():
                device_index(p.device)  # raises: no CUDA kernels / device
            if (g.get_device() if g.is_cuda else (-1 if g.is_cpu else -2)) != dev:
                raise ValueError(f"{name}: gradient is on {g.device} but parameter {i} of param group {gi} is on "
                                 f"{p.device}; one kernel call cannot mix devices")
            state = states.get(p)
            if state:
                for key in names:
                    t = state.get(key)
                    if t is not None and (t.shape != p.shape or t.dtype is not pd or
                                          (t.get_device() if t.is_cuda else -1) != dev):
                        raise ValueError(
                            f"{name}: state {key!r} of parameter {i} of param group {gi} is {t.dtype} "
                            f"{tuple(t.shape)} on {t.device}; expected {pd} {tuple(p.shape)} on {p.device}")
            out.append(p)
        return out

    def _scalar_state(self, p: torch.Tensor, group: dict, state: dict, key: str) -> torch.Tensor:
        """step / mu_product as a float32 0-d tensor: on the param's CUDA device for
        capturable or fused groups (torch's convention), else on the CPU."""
        t = state[key]
        on_device = p.is_cuda and (group.get("capturable") or group.get("fused"))
        if (torch.is_tensor(t) and t.dtype is torch.float32 and t.dim() == 0 and
                (t.is_cuda and t.get_device() == p.get_device() if on_device else t.is_cpu)):
            return t
        t = torch.tensor(float(t), dtype=torch.float32, device=p.device if on_device else _CPU)
        state[key] = t
        return t

    def _run_group(self, group: dict, params: list, grad_scale, found_inf, coef) -> None:
        names = self._state_names(group)
        states = self.state
        for p in params:  # factory functions: no autograd involvement, no no_grad needed
            self._init_state(p, group, states[p])
        first = self._first_flags(params, group)
        buckets = defaultdict(list)
        for j, p in enumerate(params):
            buckets[(p.get_device() if p.is_cuda else -1, p.dtype)].append(j)
        # The hyper struct is rebuilt only when the group's options change (lr is separate).
        key = tuple(v for k, v in group.items() if k not in ("params", "lr") and not isinstance(v, torch.Tensor))
        cache = self.__dict__.setdefault("_fk_hyper_cache", {})
        cached = cache.get(id(group))
        hyper = cached[2] if cached is not None and cached[0] is group and cached[1] == key else None
        if hyper is None:
            hyper = self._hyper(group)
            cache[id(group)] = (group, key, hyper)
        kernel = getattr(_C, self._kernel)
        nslots = 2 + len(names)
        for (dev, dtype), idx in buckets.items():
            device = params[idx[0]].device
            count = len(idx)
            slots = [None] * (nslots * count)  # slot-major: all params, all grads, each state
            staged = []
            complex_ = dtype.is_complex
            for c, j in enumerate(idx):
                p = params[j]
                st = states[p]
                ts = [p, p.grad]
                contiguous = p.is_contiguous() and ts[1].is_contiguous()
                for n in names:
                    t = st[n]
                    ts.append(t)
                    contiguous = contiguous and t.is_contiguous()
                if complex_:
                    ts = [as_real(t) for t in ts]
                if not contiguous and not flat_compatible(ts):
                    staged.append(ts)
                    ts = [t.contiguous() for t in ts]
                    staged.append(ts)
                for k, t in enumerate(ts):
                    slots[k * count + c] = t
            args = _C.StepArgs()
            args.device = dev
            args.stream = current_stream(device)
            args.num_threads = torch.get_num_threads()
            args.dtype = DTYPE_CODES[real_dtype(dtype)]
            args.nslots = nslots
            args.count = count
            args.ptrs = [t.data_ptr() for t in slots]
            args.numels = [t.numel() for t in slots[:count]]
            if self._has_step:
                steps = [self._scalar_state(params[j], group, states[params[j]], "step") for j in idx]
                args.steps = [s.data_ptr() for s in steps]
                args.capturable = steps[0].is_cuda
            if self._has_mu_product:
                args.mu_products = [self._scalar_state(params[j], group, states[params[j]], "mu_product").data_ptr()
                                    for j in idx]
            if first:
                args.first = [first[j] for j in idx]
            keep = _set_lr(args, group["lr"], device)
            if grad_scale is not None:
                keep = (keep, grad_scale.to(device=device, dtype=torch.float32))
                args.grad_scale = keep[1].data_ptr()
            if found_inf is not None and dev >= 0:
                keep = (keep, found_inf.to(device=device, dtype=torch.float32))
                args.found_inf = keep[1].data_ptr()
            if coef is not None:
                keep = (keep, coef.to(device=device))
                args.clip_coef = keep[1].data_ptr()
            kernel(args, hyper)
            del keep
            # Copy staged (non-dense) tensors back: param, state, and grad if it was unscaled.
            if staged:
                with torch.no_grad():
                    for orig, tmp in zip(staged[0::2], staged[1::2]):
                        for k, (o, t) in enumerate(zip(orig, tmp)):
                            if t is not o and (k != 1 or grad_scale is not None):
                                o.copy_(t)


def _set_lr(args, lr, device: torch.device):
    """A CUDA lr tensor is read by the kernel (capturable); anything else on the host."""
    if isinstance(lr, torch.Tensor):
        if lr.device.type == "cuda" and args.capturable:
            lr32 = lr.detach().reshape(()).to(device=device, dtype=torch.float32)
            args.lr_ptr = lr32.data_ptr()
            return lr32
        args.lr = float(lr)
        return None
    args.lr = float(lr)
    return None
