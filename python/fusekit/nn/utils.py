"""Drop-ins for torch.nn.utils' clipping functions, on fusekit's fused norm kernels.

Same signatures, defaults and return values as torch 2.13: clip_grad_norm_,
clip_grad_value_, get_total_norm, clip_grads_with_norm_. `foreach` is accepted (fusekit
always processes all tensors of a device in one kernel call). DTensor gradients (FSDP2)
give the global norm across their mesh, returned as a replicated DTensor, as torch does.
"""
from __future__ import annotations

import math
import types
import warnings
from typing import Iterable, Union

import torch

from .._backend import local
from .._backend import norm as _norm
from ..clip import global_norm

_tensor_or_tensors = Union[torch.Tensor, Iterable[torch.Tensor]]

__all__ = ["clip_grad_norm_", "clip_grad_value_", "get_total_norm", "clip_grads_with_norm_"]


def _as_list(tensors, what: str) -> list:
    if isinstance(tensors, torch.Tensor):
        return [tensors]
    is_generator = isinstance(tensors, types.GeneratorType)
    out = list(tensors)
    if is_generator and not out:
        warnings.warn(f"`{what}` is an empty generator, no gradient clipping will occur.", stacklevel=3)
    return out


def _grads(parameters) -> list:
    grads = [p.grad for p in parameters if p.grad is not None]
    for g in grads:
        if g.is_sparse or local(g).layout != torch.strided:
            raise NotImplementedError("fusekit's clipping functions support dense gradients only; got a sparse "
                                      f"gradient of shape {tuple(g.shape)}")
    return grads


def _threshold(value, name: str) -> float:
    """max_norm / clip_value: a finite number >= 0 (a number or a 1-element tensor). torch
    turns negative or NaN thresholds into sign-flipped or NaN gradients; fusekit refuses them."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"{name} must be a number or a 1-element tensor, got a tensor of shape "
                             f"{tuple(value.shape)}")
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    if not (value >= 0 and value < math.inf):
        raise ValueError(f"{name} must be finite and >= 0, got {value} (torch would write NaN or sign-flipped "
                         "gradients)")
    return float(value)


def _nonfinite_error(total: torch.Tensor, norm_type: float) -> None:
    if torch.logical_or(total.isnan(), total.isinf()):
        raise RuntimeError(
            f"The total norm of order {float(norm_type)} for gradients from `parameters` is non-finite, so it "
            "cannot be clipped. To disable this error and scale the gradients by the non-finite norm anyway, "
            "set `error_if_nonfinite=False`")


def get_total_norm(tensors: _tensor_or_tensors, norm_type: float = 2.0, error_if_nonfinite: bool = False,
                   foreach: bool | None = None) -> torch.Tensor:
    """Norm of the norms of `tensors` (as if concatenated into one vector), like torch's."""
    tensors = _as_list(tensors, "tensors")
    if not tensors:
        return torch.tensor(0.0)
    total = global_norm(tensors, norm_type)[0]
    if error_if_nonfinite:
        _nonfinite_error(local(total), norm_type)
    return total


@torch.no_grad()
def clip_grads_with_norm_(parameters: _tensor_or_tensors, max_norm: float, total_norm: torch.Tensor,
                          foreach: bool | None = None) -> None:
    """grad *= min(max_norm / (total_norm + 1e-6), 1), in one pass per device and dtype;
    the coefficient is derived natively where total_norm lives (no host sync)."""
    grads = _grads(_as_list(parameters, "parameters"))
    thr = _threshold(max_norm, "max_norm")
    if not isinstance(total_norm, torch.Tensor):
        raise TypeError(f"total_norm must be a Tensor (as get_total_norm returns it), got {total_norm!r}")
    if local(total_norm).numel() != 1:
        raise ValueError(f"total_norm must be a 1-element tensor, got shape {tuple(total_norm.shape)}")
    if not grads:
        return
    _scale_by(grads, thr, total_norm)


def clip_grad_norm_(parameters: _tensor_or_tensors, max_norm: float, norm_type: float = 2.0,
                    error_if_nonfinite: bool = False, foreach: bool | None = None) -> torch.Tensor:
    """Clips the gradients' global norm to max_norm in place; returns the (unclipped) norm.

    One read of all gradients for the norm; on the CPU the scaling pass runs in the same
    call, and only when the norm exceeds max_norm (torch multiplies by 1.0 then).
    """
    grads = _grads(_as_list(parameters, "parameters"))
    thr = _threshold(max_norm, "max_norm")
    if not grads:
        return torch.tensor(0.0)
    if error_if_nonfinite:
        total = global_norm(grads, norm_type)[0]
        _nonfinite_error(local(total), norm_type)
        _scale_by(grads, thr, total)
        return total
    return global_norm(grads, norm_type, _norm.Tail(max_norm=thr), clip_in_place=True)[0]


def _scale_by(grads, thr, total) -> None:
    """grads *= the clip coefficient of a given total norm (derived natively, on its device)."""
    t = local(total) if torch.is_tensor(total) else torch.tensor(float(total))
    _, coef = _norm.finish(t, t.dtype if t.is_floating_point() else torch.float32, _norm.Tail(max_norm=thr))
    _norm.scale_([local(g) for g in grads], coef if coef.is_cuda else float(coef))


@torch.no_grad()
def clip_grad_value_(parameters: _tensor_or_tensors, clip_value: float, foreach: bool | None = None) -> None:
    """Clamps every gradient to [-clip_value, clip_value] in place, in one pass."""
    value = _threshold(clip_value, "clip_value")
    grads = _grads(_as_list(parameters, "parameters"))
    for g in grads:  # every gradient is checked before the first is clamped
        if g.is_complex():
            raise NotImplementedError(f"clip_grad_value_: clamp is not supported for complex gradients, got {g.dtype}")
        if not g.is_floating_point():
            raise RuntimeError(f"clip_grad_value_: gradients must be floating point, got {g.dtype}")
    if grads:
        _norm.clamp_([local(g) for g in grads], value)
