"""Validation of optimizer arguments, parameters, gradients and state: every rule once,
run before anything is written (at construction, add_param_group, load_state_dict, and
when a param group's table is (re)built; the hot path re-checks natively only that
nothing changed since)."""
from __future__ import annotations

import math
from itertools import chain

import torch

from ..clip import AutoClip
from .._backend import DTYPE_CODES, cuda_available, device_index, local

SUPPORTED = frozenset(DTYPE_CODES) | {torch.complex64, torch.complex128}
SCALAR_STATE = ("step", "mu_product")


def check_impl_flags(name: str, defaults: dict) -> None:
    """foreach / fused / capturable are accepted (fusekit is always fused); these are not."""
    if defaults.get("differentiable"):
        raise ValueError(
            f"{name}: differentiable=True is not supported by fusekit's fused kernels "
            f"(use torch.optim.{name} to differentiate through the step)"
        )
    if defaults.get("fused") and defaults.get("foreach"):
        raise ValueError(f"{name}: fused=True and foreach=True cannot be set together")


def number(value, name: str, where: str = "") -> float:
    """A real number (a float, an int or a 1-element tensor); TypeError otherwise."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"Tensor {name}{where} must be 1-element, got shape {tuple(value.shape)}")
        if value.is_complex() or not (value.is_floating_point() or value.dtype in (torch.int32, torch.int64)):
            raise TypeError(f"{name}{where} must be a real number, got a tensor of dtype {value.dtype}")
        return float(value) if not value.is_cuda else math.nan
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name}{where} must be a number, got {type(value).__name__} {value!r}")
    return float(value)


def check_lr(lr, where: str = "") -> None:
    v = number(lr, "lr", where)
    if isinstance(lr, torch.Tensor) and lr.is_cuda:
        return  # read by the kernel; checking it here would sync with the device
    if not 0.0 <= v < math.inf:
        raise ValueError(f"Invalid learning rate{where}: {lr} (must be finite and >= 0)")


def check_range(where: str = "", **values) -> None:
    """Each value finite and >= 0 (torch's 'Invalid <name> value' messages)."""
    for name, v in values.items():
        x = number(v, name, where)
        if not 0.0 <= x < math.inf:
            raise ValueError(f"Invalid {name} value{where}: {v} (must be finite and >= 0)")


def check_betas(betas, where: str = "") -> tuple:
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise ValueError(f"betas{where} must be a pair of numbers, got {betas!r}")
    out = tuple(number(b, f"betas[{i}]", where) for i, b in enumerate(betas))
    for i, b in enumerate(out):
        if not 0.0 <= b < 1.0:
            raise ValueError(f"Invalid beta parameter at index {i}{where}: {betas[i]} (must be in [0, 1))")
    return tuple(betas)


def check_max_grad_norm(value):
    """None, a positive finite number, a positive 0-d tensor (checked on the host for CPU
    tensors) or an AutoClip."""
    if value is None or isinstance(value, AutoClip):
        return value
    v = number(value, "max_grad_norm")
    if not (v > 0 and v < math.inf) and not (isinstance(value, torch.Tensor) and value.is_cuda):
        raise ValueError(f"Invalid max_grad_norm value: {value} (must be finite and > 0)")
    return value if isinstance(value, torch.Tensor) else float(value)


def check_history(value) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"grad_norm_history must be an int, got {value!r}")
    if value < 1:
        raise ValueError(f"grad_norm_history must be >= 1, got {value}")
    return value


def check_amp_scalars(grad_scale, found_inf) -> None:
    for name, t in (("grad_scale", grad_scale), ("found_inf", found_inf)):
        if t is not None and (not torch.is_tensor(t) or t.numel() != 1):
            raise ValueError(f"{name} must be a 1-element tensor, got {t!r}")


def check_param(opt, p: torch.Tensor, gi: int, i: int, names: list[str], state) -> None:
    """A parameter with a gradient, and whatever state it already has."""
    name = type(opt).__name__
    where = f"parameter {i} of param group {gi}"
    g = p.grad
    pl, gl = local(p), local(g)
    if g.is_sparse or gl.layout != torch.strided:
        raise RuntimeError(f"{name} does not support sparse gradients ({where})")
    if p.dtype not in SUPPORTED:
        raise TypeError(f"{name}: {where} has dtype {p.dtype}; supported: float32, float64, float16, bfloat16 and "
                        "complex64/complex128")
    if g.dtype != p.dtype:
        raise TypeError(f"{name}: gradient dtype {g.dtype} does not match dtype {p.dtype} of {where}")
    if g.shape != p.shape or gl.shape != pl.shape:
        raise ValueError(f"{name}: gradient shape {tuple(g.shape)} does not match shape {tuple(p.shape)} of {where}")
    if pl.device.type not in ("cpu", "cuda"):
        device_index(pl.device)  # raises: not a CPU or CUDA tensor
    if pl.is_cuda and not cuda_available():
        device_index(pl.device)  # raises: no CUDA kernels / device
    if gl.device != pl.device:
        raise ValueError(f"{name}: gradient is on {gl.device} but {where} is on {pl.device}; one kernel call cannot "
                         "mix devices")
    if not state:
        return
    for key in names:
        t = state.get(key)
        if t is None:
            continue
        tl = local(t) if torch.is_tensor(t) else t
        if not torch.is_tensor(t) or t.shape != p.shape or t.dtype != p.dtype or tl.device != pl.device \
                or tl.shape != pl.shape:
            raise ValueError(
                f"{name}: state {key!r} of {where} is "
                + (f"{t.dtype} {tuple(t.shape)} on {tl.device}" if torch.is_tensor(t) else repr(t))
                + f"; expected {p.dtype} {tuple(p.shape)} on {pl.device}")
    for key in SCALAR_STATE:
        v = state.get(key)
        if v is not None and torch.is_tensor(v) and v.numel() != 1:
            raise ValueError(f"{name}: state {key!r} of {where} must be a scalar, got shape {tuple(v.shape)}")


def check_loaded_state(opt, state_dict: dict) -> None:
    """A state_dict about to be loaded: the same groups and sizes, state shaped like its
    parameter (torch checks only the group sizes)."""
    saved_groups = state_dict["param_groups"]
    if len(saved_groups) != len(opt.param_groups) or any(
            len(g["params"]) != len(s["params"]) for g, s in zip(opt.param_groups, saved_groups)):
        return  # torch's own load_state_dict raises its error for these
    saved_ids = chain.from_iterable(g["params"] for g in saved_groups)
    params = chain.from_iterable(g["params"] for g in opt.param_groups)
    for index, (pid, p) in enumerate(zip(saved_ids, params)):
        for key, value in state_dict["state"].get(pid, {}).items():
            if torch.is_tensor(value) and key not in SCALAR_STATE and value.shape != p.shape:
                raise ValueError(
                    f"loaded state_dict has state {key!r} of shape {tuple(value.shape)} for "
                    f"parameter {index}, which has shape {tuple(p.shape)}"
                )
