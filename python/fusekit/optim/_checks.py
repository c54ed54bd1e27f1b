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
from ..errors import error
from ._storage import MASTER_KEY, Storage, is_side_entry

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
        raise RuntimeError(f"{name}: `fused` and `foreach` cannot be `True` together")


def number(value, name: str, where: str = "") -> float:
    """A real number (a float, an int or a 1-element real tensor) as a float; NaN for a
    CUDA tensor (its value is not read here: that would sync with the device)."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"Tensor {name}{where} must be 1-element, got shape {tuple(value.shape)}")
        if value.is_complex() or value.dtype == torch.bool:
            raise TypeError(f"{name}{where} must be a real number, got a tensor of dtype {value.dtype}")
        return float(value) if not value.is_cuda else math.nan
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name}{where} must be a number, got {type(value).__name__} {value!r}")
    return float(value)


def _on_cuda(value) -> bool:
    return isinstance(value, torch.Tensor) and value.is_cuda


def check_lr(lr, where: str | int = "") -> None:
    """where: the text after the name in messages, or a param group's index (formatted only
    when the check fails: the common case is checked every step)."""
    if type(lr) is float and 0.0 <= lr < math.inf:
        return
    if isinstance(where, int):
        where = f" of param group {where}"
    v = number(lr, "lr", where)
    if not _on_cuda(lr) and not 0.0 <= v < math.inf:
        raise ValueError(f"Invalid learning rate{where}: {lr} (must be finite and >= 0)")


def check_range(where: str = "", **values) -> None:
    """Each value finite and >= 0 (torch's 'Invalid <name> value' messages; torch lets NaN
    and inf through, fusekit does not)."""
    for name, v in values.items():
        x = number(v, name, where)
        if not _on_cuda(v) and not 0.0 <= x < math.inf:
            raise ValueError(f"Invalid {name} value{where}: {v} (must be finite and >= 0)")


def check_unit(name: str, value, where: str = "") -> None:
    """A value in [0, 1] (RMSprop's alpha: above 1 the square average goes negative)."""
    x = number(value, name, where)
    if not _on_cuda(value) and not 0.0 <= x <= 1.0:
        raise ValueError(f"Invalid {name} value{where}: {value} (must be in [0, 1])")


def check_betas(betas, where: str = "") -> tuple:
    if not isinstance(betas, (tuple, list)):
        raise TypeError(f"betas{where} must be a pair of numbers, got {type(betas).__name__} {betas!r}")
    if len(betas) != 2:
        # torch raises IndexError (construction) or ValueError (unpacking at step) here
        raise error(f"betas{where} must be a pair of numbers, got {betas!r}", ValueError, IndexError)
    out = tuple(number(b, f"betas[{i}]", where) for i, b in enumerate(betas))
    for i, b in enumerate(out):
        if not _on_cuda(betas[i]) and not 0.0 <= b < 1.0:
            raise ValueError(f"Invalid beta parameter at index {i}{where}: {betas[i]} (must be in [0, 1))")
    return tuple(betas)


def check_max_grad_norm(value):
    """None, a positive finite number, a positive 0-d tensor (its value checked here for CPU
    tensors) or an AutoClip."""
    if value is None or isinstance(value, AutoClip):
        return value
    v = number(value, "max_grad_norm")
    if not (v > 0 and v < math.inf) and not _on_cuda(value):
        raise ValueError(f"Invalid max_grad_norm value: {value} (must be finite and > 0)")
    return value if isinstance(value, torch.Tensor) else float(value)


def check_history(value) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"grad_norm_history must be an int, got {value!r}")
    if value < 1:
        raise ValueError(f"grad_norm_history must be >= 1, got {value}")
    return value


def check_amp_scalars(opt, grad_scale, found_inf) -> None:
    """grad_scale / found_inf (set by GradScaler) are read only by fused optimizers, as in
    torch, whose other implementations assert they are absent."""
    if grad_scale is None and found_inf is None:
        return
    name = type(opt).__name__
    if not opt._step_supports_amp_scaling:
        raise error(f"{name}: grad_scale / found_inf are read only with fused=True (in-kernel unscaling, as "
                    "torch's fused optimizers); without it GradScaler unscales the gradients itself",
                    RuntimeError, AssertionError)
    for what, t in (("grad_scale", grad_scale), ("found_inf", found_inf)):
        if t is not None and (not torch.is_tensor(t) or t.numel() != 1 or not t.is_floating_point()):
            raise RuntimeError(f"{name}: {what} must be a 1-element floating-point tensor, got {t!r}")


def check_unique(params, where: str) -> None:
    """torch warns about a parameter listed twice in a group and updates it twice; one fused
    kernel call cannot, so fusekit refuses it."""
    if len({id(p) for p in params}) != len(params):
        raise ValueError(f"a parameter appears more than once in param group{where}; fusekit updates each "
                         "parameter once per step (torch warns and updates it twice)")


def check_param(opt, p: torch.Tensor, gi: int, i: int, names: list[str], state) -> None:
    """A parameter with a gradient, and whatever state it already has."""
    name = type(opt).__name__
    where = f"parameter {i} of param group {gi}"
    g = p.grad
    pl, gl = local(p), local(g)
    if g.is_sparse or gl.layout != torch.strided:
        raise RuntimeError(f"{name} does not support sparse gradients ({where})")
    if p.dtype not in SUPPORTED:
        raise NotImplementedError(f"{name}: {where} has dtype {p.dtype}; fusekit updates float32, float64, float16, "
                                  "bfloat16 and complex64/complex128 parameters")
    if g.dtype != p.dtype:
        raise RuntimeError(f"{name}: gradient dtype {g.dtype} does not match dtype {p.dtype} of {where}")
    if g.shape != p.shape or gl.shape != pl.shape:
        raise RuntimeError(f"{name}: gradient shape {tuple(g.shape)} does not match shape {tuple(p.shape)} of {where}")
    if pl.device.type not in ("cpu", "cuda", "meta"):
        device_index(pl.device)  # raises: not a CPU or CUDA tensor
    if pl.is_cuda and not cuda_available():
        device_index(pl.device)  # raises: no CUDA kernels / device
    if gl.device != pl.device:
        raise RuntimeError(f"{name}: gradient is on {gl.device} but {where} is on {pl.device}; one kernel call "
                           "cannot mix devices")
    if not state:
        return
    for key in chain(names, opt._scalar_keys()):
        if key not in state and key not in opt._lazy_state:
            raise error(f"{name}: state of {where} has no {key!r} (the state holds {sorted(state)}); torch "
                        "raises KeyError here too", KeyError)
    storage = opt._storage
    for key in storage.keys(p, names):
        t = state.get(key)
        if t is None:
            if key in names or key == MASTER_KEY:  # checked above, or made from the parameter
                continue
            raise error(f"{name}: state of {where} has no {key!r}, which its storage needs", KeyError)
        want_dtype, want_shape = storage.entry_dtype(p, key), storage.entry_shape(p, key)
        tl = local(t) if torch.is_tensor(t) else t
        if not torch.is_tensor(t) or tuple(t.shape) != want_shape or t.dtype != want_dtype or tl.device != pl.device \
                or (not is_side_entry(key) and tl.shape != pl.shape):
            raise RuntimeError(
                f"{name}: state {key!r} of {where} is "
                + (f"{t.dtype} {tuple(t.shape)} on {tl.device}" if torch.is_tensor(t) else repr(t))
                + f"; expected {want_dtype} {want_shape} on {pl.device}")
    for key in opt._scalar_keys():
        check_scalar_state(name, key, state[key], where)


def check_scalar_state(name: str, key: str, v, where: str) -> None:
    """step / mu_product: a number or a 1-element real tensor; step finite and >= 0
    (values of CUDA tensors are not read: that would sync)."""
    if torch.is_tensor(v):
        if v.numel() != 1 or v.is_complex() or v.dtype == torch.bool:
            raise RuntimeError(f"{name}: state {key!r} of {where} must be a real scalar, got {v.dtype} of shape "
                               f"{tuple(v.shape)}")
        if v.is_cuda or v.device.type == "meta":
            return
        x = float(v)
    elif isinstance(v, (int, float)) and not isinstance(v, bool):
        x = float(v)
    else:
        raise TypeError(f"{name}: state {key!r} of {where} must be a number or a scalar tensor, got {v!r}")
    if key == "step" and not 0.0 <= x < math.inf:
        raise ValueError(f"{name}: state 'step' of {where} is {x}; it counts steps taken, so it must be finite and "
                         ">= 0 (torch divides by zero or writes NaN with such a step)")
    if key != "step" and not math.isfinite(x):
        raise ValueError(f"{name}: state {key!r} of {where} is {x}; it must be finite")


def check_loaded_state(opt, state_dict: dict) -> None:
    """A state_dict about to be loaded: the same groups and sizes, state shaped like its
    parameter, options valid (torch checks only the group sizes)."""
    if not isinstance(state_dict, dict) or "state" not in state_dict or "param_groups" not in state_dict:
        raise error("load_state_dict expects a dict with 'state' and 'param_groups' (from state_dict())",
                    ValueError, KeyError)
    saved_groups = state_dict["param_groups"]
    if len(saved_groups) != len(opt.param_groups) or any(
            len(g["params"]) != len(s["params"]) for g, s in zip(opt.param_groups, saved_groups)):
        return  # torch's own load_state_dict raises its ValueError for these
    for gi, (g, s) in enumerate(zip(opt.param_groups, saved_groups)):
        opt._check_options({**g, **{k: v for k, v in s.items() if k != "params"}}, f" of loaded param group {gi}")
    saved_ids = chain.from_iterable(g["params"] for g in saved_groups)
    params = chain.from_iterable(g["params"] for g in opt.param_groups)
    name = type(opt).__name__
    for index, (pid, p) in enumerate(zip(saved_ids, params)):
        for key, value in state_dict["state"].get(pid, {}).items():
            where = f"loaded parameter {index}"
            if key in SCALAR_STATE:
                check_scalar_state(name, key, value, where)
            elif torch.is_tensor(value) and tuple(value.shape) != Storage.entry_shape(p, key):
                raise ValueError(
                    f"loaded state_dict has state {key!r} of shape {tuple(value.shape)} for "
                    f"parameter {index}, which has shape {tuple(p.shape)}"
                    + (f" (expected {Storage.entry_shape(p, key)})" if is_side_entry(key) else "")
                )
