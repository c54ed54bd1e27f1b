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
            raise RuntimeError("fusekit's clipping functions support dense gradients only; got a sparse gradient "
                               f"of shape {tuple(g.shape)}")
    return grads


def _max_norm(max_norm) -> float:
    if isinstance(max_norm, torch.Tensor):
        max_norm = max_norm.item()
    if isinstance(max_norm, bool) or not isinstance(max_norm, (int, float)):
        raise TypeError(f"max_norm must be a number, got {max_norm!r}")
    if not (max_norm >= 0 and max_norm < math.inf):
        raise ValueError(f"max_norm must be finite and >= 0, got {max_norm} (fusekit rejects what torch turns into "
                         "NaN or sign-flipped gradients)")
    return float(max_norm)


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
    thr = _max_norm(max_norm)
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
    thr = _max_norm(max_norm)
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
    if isinstance(clip_value, bool) or not isinstance(clip_value, (int, float)):
        raise TypeError(f"clip_value must be a number, got {clip_value!r}")
    if not (clip_value >= 0 and clip_value < math.inf):
        raise ValueError(f"clip_value must be finite and >= 0, got {clip_value} (fusekit rejects what torch turns "
                         "into NaN or sign-flipped gradients)")
    grads = _grads(_as_list(parameters, "parameters"))
    for g in grads:
        if not (g.is_floating_point() or g.is_complex()):
            raise RuntimeError(f"clip_grad_value_: gradients must be floating point, got {g.dtype}")
    if grads:
        _norm.clamp_([local(g) for g in grads], float(clip_value))
