"""Drop-ins for torch.nn.utils' clipping functions, on fusekit's fused norm kernels.

The kernels read and write raw memory, outside autograd, so the hot functions need no
torch.no_grad() (whose context manager costs microseconds on small models).

Same signatures, defaults and return values as torch 2.13: clip_grad_norm_,
clip_grad_value_, get_total_norm, clip_grads_with_norm_. `foreach` is accepted (fusekit
always processes all tensors of a device in one kernel call).
"""
from __future__ import annotations

import types
import warnings
from typing import Iterable, Union

import torch

from .. import clip as _clip

_tensor_or_tensors = Union[torch.Tensor, Iterable[torch.Tensor]]

__all__ = ["clip_grad_norm_", "clip_grad_value_", "get_total_norm", "clip_grads_with_norm_"]


def _nonfinite_error(total: torch.Tensor, norm_type: float) -> None:
    if torch.logical_or(total.isnan(), total.isinf()):
        raise RuntimeError(
            f"The total norm of order {float(norm_type)} for gradients from `parameters` is non-finite, so it "
            "cannot be clipped. To disable this error and scale the gradients by the non-finite norm anyway, "
            "set `error_if_nonfinite=False`")


def get_total_norm(tensors: _tensor_or_tensors, norm_type: float = 2.0, error_if_nonfinite: bool = False,
                   foreach: bool | None = None) -> torch.Tensor:
    """Norm of the norms of `tensors` (as if concatenated into one vector), like torch's."""
    tensors = [tensors] if isinstance(tensors, torch.Tensor) else list(tensors)
    if len(tensors) == 0:
        return torch.tensor(0.0)
    total, _ = _clip.norm_and_coef(tensors, norm_type)
    if error_if_nonfinite:
        _nonfinite_error(total, norm_type)
    return total


@torch.no_grad()
def clip_grads_with_norm_(parameters: _tensor_or_tensors, max_norm: float, total_norm: torch.Tensor,
                          foreach: bool | None = None) -> None:
    """grad *= min(max_norm / (total_norm + 1e-6), 1), in one pass per device and dtype."""
    parameters = [parameters] if isinstance(parameters, torch.Tensor) else list(parameters)
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return
    coef = torch.clamp(float(max_norm) / (total_norm + 1e-6), max=1.0)
    _clip.scale_(grads, coef if coef.device.type == "cuda" else float(coef))


def clip_grad_norm_(parameters: _tensor_or_tensors, max_norm: float, norm_type: float = 2.0,
                    error_if_nonfinite: bool = False, foreach: bool | None = None) -> torch.Tensor:
    """Clips the gradients' global norm to max_norm in place; returns the (unclipped) norm.

    One read of all gradients for the norm; the scaling pass is skipped on the CPU when the
    norm is already within max_norm (torch multiplies by 1.0 then).
    """
    if isinstance(parameters, torch.Tensor):
        parameters = [parameters]
    else:
        is_generator = isinstance(parameters, types.GeneratorType)
        parameters = list(parameters)
        if is_generator and len(parameters) == 0:
            warnings.warn("`parameters` is an empty generator, no gradient clipping will occur.", stacklevel=3)
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return torch.tensor(0.0)
    if error_if_nonfinite:
        total, _ = _clip.norm_and_coef(grads, norm_type)
        _nonfinite_error(total, norm_type)
        clip_grads_with_norm_(parameters, max_norm, total)
        return total
    # One call on the CPU: norm, coefficient, and the scaling pass only if it is below 1.
    total, _ = _clip.norm_and_coef(grads, norm_type, max_norm=float(max_norm), clip_in_place=True)
    return total


@torch.no_grad()
def clip_grad_value_(parameters: _tensor_or_tensors, clip_value: float, foreach: bool | None = None) -> None:
    """Clamps every gradient to [-clip_value, clip_value] in place, in one pass."""
    parameters = [parameters] if isinstance(parameters, torch.Tensor) else list(parameters)
    grads = [p.grad for p in parameters if p.grad is not None]
    if grads:
        _clip.clamp_(grads, float(clip_value))
