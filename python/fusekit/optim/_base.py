"""FusedOptimizer: the torch.optim.Optimizer subclass every fusekit optimizer builds on.

One step = validate everything (no writes) -> create missing state -> one kernel call per
(param group, device, dtype) that updates params and all state in a single pass.
"""
from __future__ import annotations

from collections import defaultdict
from itertools import chain

import torch
from torch.optim import Optimizer

from .. import _C
from .._backend import (
    DTYPE_CODES,
    as_real,
    current_stream,
    device_index,
    flat_compatible,
    real_dtype,
)

_CPU = torch.device("cpu")
_SCALAR_STATE = ("step", "mu_product")


def check_impl_flags(name: str, defaults: dict) -> None:
    """foreach / fused / capturable are accepted (fusekit is always fused); these are not."""
    if defaults.get("differentiable"):
        raise ValueError(
            f"{name}: differentiable=True is not supported by fusekit's fused kernels "
            f"(use torch.optim.{name} to differentiate through the step)"
        )
    if defaults.get("fused") and defaults.get("foreach"):
        raise ValueError(f"{name}: fused=True and foreach=True cannot be set together")


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

    def __init__(self, params, defaults: dict) -> None:
        check_impl_flags(type(self).__name__, defaults)
        super().__init__(params, defaults)

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
    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        # Groups loaded from torch.optim (or older fusekit) lack fusekit-only keys.
        for group in self.param_groups:
            for k, v in self.defaults.items():
                group.setdefault(k, v)

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

    @torch.no_grad()
    def step(self, closure=None):
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
            if (found_inf.device.type == "cpu" or needs_state) and float(found_inf) != 0.0:
                return loss
        for group, params in work:
            if params:
                self._run_group(group, params, grad_scale, found_inf)
        return loss

    # ---- internals ---------------------------------------------------------------------
    def _collect(self, gi: int, group: dict) -> list:
        name = type(self).__name__
        out = []
        for i, p in enumerate(group["params"]):
            g = p.grad
            if g is None:
                continue
            where = f"parameter {i} of param group {gi}"
            if g.is_sparse:
                raise RuntimeError(f"{name} does not support sparse gradients ({where})")
            if real_dtype(p.dtype) not in DTYPE_CODES:
                raise TypeError(f"{name}: {where} has dtype {p.dtype}; supported: float32, float64, "
                                "float16, bfloat16 and complex64/complex128")
            if g.dtype != p.dtype:
                raise TypeError(f"{name}: gradient dtype {g.dtype} does not match dtype {p.dtype} of {where}")
            if g.shape != p.shape:
                raise ValueError(f"{name}: gradient shape {tuple(g.shape)} does not match shape "
                                 f"{tuple(p.shape)} of {where}")
            if g.device != p.device:
                raise ValueError(f"{name}: gradient is on {g.device} but {where} is on {p.device}; "
                                 "one kernel call cannot mix devices")
            device_index(p.device)
            state = self.state.get(p)
            if state:
                for key in self._state_names(group):
                    t = state.get(key)
                    if t is None:
                        continue
                    if t.shape != p.shape or t.dtype != p.dtype or t.device != p.device:
                        raise ValueError(
                            f"{name}: state {key!r} of {where} is {t.dtype} {tuple(t.shape)} on {t.device}; "
                            f"expected {p.dtype} {tuple(p.shape)} on {p.device}"
                        )
            out.append(p)
        return out

    def _scalar_state(self, p: torch.Tensor, group: dict, state: dict, key: str) -> torch.Tensor:
        """step / mu_product as a float32 0-d tensor: on the param's CUDA device for
        capturable or fused groups (torch's convention), else on the CPU."""
        on_device = p.device.type == "cuda" and (group.get("capturable") or group.get("fused"))
        want = p.device if on_device else _CPU
        t = state[key]
        if not (torch.is_tensor(t) and t.dtype == torch.float32 and t.device == want and t.dim() == 0):
            t = torch.tensor(float(t), dtype=torch.float32, device=want)
            state[key] = t
        return t

    def _run_group(self, group: dict, params: list, grad_scale, found_inf) -> None:
        names = self._state_names(group)
        for p in params:
            state = self.state[p]
            self._init_state(p, group, state)
        first = self._first_flags(params, group)
        buckets = defaultdict(list)
        for j, p in enumerate(params):
            buckets[(p.device, real_dtype(p.dtype))].append(j)
        hyper = self._hyper(group)
        kernel = getattr(_C, self._kernel)
        for (device, dtype), idx in buckets.items():
            ps = [params[j] for j in idx]
            slots = [[as_real(p) for p in ps], [as_real(p.grad) for p in ps]]
            slots += [[as_real(self.state[p][n]) for p in ps] for n in names]
            staged = _stage(slots)
            args = _C.StepArgs()
            args.device = device_index(device)
            args.stream = current_stream(device)
            args.num_threads = torch.get_num_threads()
            args.dtype = DTYPE_CODES[dtype]
            args.nslots = len(slots)
            args.count = len(ps)
            args.ptrs = [t.data_ptr() for slot in slots for t in slot]
            args.numels = [t.numel() for t in slots[0]]
            if self._has_step:
                steps = [self._scalar_state(p, group, self.state[p], "step") for p in ps]
                args.steps = [s.data_ptr() for s in steps]
                args.capturable = steps[0].device.type == "cuda"
            if self._has_mu_product:
                args.mu_products = [self._scalar_state(p, group, self.state[p], "mu_product").data_ptr() for p in ps]
            if first:
                args.first = [first[j] for j in idx]
            keep = _set_lr(args, group["lr"], device)
            if grad_scale is not None:
                gs = grad_scale.to(device=device, dtype=torch.float32)
                args.grad_scale = gs.data_ptr()
            if found_inf is not None and device.type == "cuda":
                fi = found_inf.to(device=device, dtype=torch.float32)
                args.found_inf = fi.data_ptr()
            kernel(args, hyper)
            del keep
            _unstage(slots, staged, write_grad=grad_scale is not None)


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


def _stage(slots: list) -> list:
    """Tensors whose layouts differ (e.g. a strided view param) are updated through
    contiguous copies; returns [(index, originals)] to copy back."""
    staged = []
    for j in range(len(slots[0])):
        ts = [slot[j] for slot in slots]
        if not flat_compatible(ts):
            staged.append((j, ts))
            for slot, t in zip(slots, ts):
                slot[j] = t.contiguous()
    return staged


def _unstage(slots: list, staged: list, write_grad: bool) -> None:
    for j, originals in staged:
        for k, (slot, orig) in enumerate(zip(slots, originals)):
            if k == 1 and not write_grad:
                continue
            if slot[j] is not orig:
                orig.copy_(slot[j])
