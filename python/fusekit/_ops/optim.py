"""Custom ops of the fused optimizer steps and of the gradient norm, for compiled steps
(torch.compile of a function calling opt.step() gives one graph with these ops in place,
as torch's own _fused_adam_). Eager steps reach the kernels through cached tables
instead (fusekit/_backend/optim.py): a dispatcher call over lists of hundreds of tensors
costs more than the whole step on small models.

fusekit::<rule>_step_(params, grads, state0, state1, state2, steps, mu_products, first, *,
lr, lr_tensor, <the rule's hyper-parameters>, grad_scale, found_inf, clip_coef): unused
state lists are empty; lr_tensor, when given, overrides lr (read on the device for
capturable CUDA steps). `first` is a uint8 CPU tensor of one flag per parameter (SGD: the
momentum buffer starts on this step), read and cleared by the op: a compiled graph then
serves the first step and all later ones (flags baked into a graph could not change).
"""
from __future__ import annotations

import torch

from .._backend import norm as _norm
from .._backend.optim import RULES, make_hyper, run_lists
from .library import define


def _step_impl(rule: str, fields: tuple):
    def impl(params, grads, state0, state1, state2, steps, mu_products, first, *, lr, lr_tensor, grad_scale,
             found_inf, clip_coef, **hyper):
        if not params:
            return
        flags = first.tolist() if first.numel() else None
        if flags is not None and any(flags) and found_inf is not None and float(found_inf) != 0.0:
            return  # a skipped step must not consume the first-step flags
        slots = [params, grads] + [s for s in (state0, state1, state2) if s]
        run_lists(rule, make_hyper(rule, hyper), slots, steps=steps or None, mus=mu_products or None,
                  first=flags, lr=lr, lr_tensor=lr_tensor, grad_scale=grad_scale, found_inf=found_inf,
                  clip_coef=clip_coef)
        if flags is not None:
            first.zero_()
    return impl


def _step_fake(params, grads, state0, state1, state2, steps, mu_products, first, **kwargs):
    return None


def _define_steps() -> None:
    for rule, (_, hyper_cls, fields) in RULES.items():
        if rule == "grad_op":
            continue
        h = hyper_cls()
        hyper = ", ".join(f"{'bool' if isinstance(getattr(h, f), bool) else 'float'} {f}" for f in fields)
        define(f"{rule}_step_(Tensor(a!)[] params, Tensor(b!)[] grads, Tensor(c!)[] state0, Tensor(d!)[] state1, "
               f"Tensor(e!)[] state2, Tensor(f!)[] steps, Tensor(g!)[] mu_products, Tensor(h!) first, *, float lr, "
               f"Tensor? lr_tensor, {hyper}, Tensor? grad_scale, Tensor? found_inf, Tensor? clip_coef) -> ()",
               _step_impl(rule, fields), _step_fake)


_define_steps()


def _norm_impl(tensors, norm_type, max_norm, max_norm_tensor, grad_scale, found_inf, history_norms,
               history_thresholds, history_count):
    """(total, unscaled total, coef) of dense real tensors on one device, with the native
    tail: coefficient (if max_norm or max_norm_tensor) and telemetry (if the rings are non-empty)."""
    real = _norm.result_dtype(tensors)
    thr = max_norm_tensor if max_norm_tensor is not None else (None if max_norm is None else max_norm)
    rings = _Rings(history_norms, history_thresholds, history_count) if history_norms.numel() else None
    tail = _norm.Tail(max_norm=thr, grad_scale=grad_scale, found_inf=found_inf, history=rings)
    total, unscaled, coef = _norm.norm([_norm.readable(t) for t in tensors], norm_type, real, tail)
    if coef is None:
        coef = torch.ones((), dtype=torch.float64, device=total.device)
    return total, unscaled, coef


class _Rings:
    """A GradNormMonitor's rings as the op receives them (empty rings: no telemetry)."""

    def __init__(self, norms, thresholds, count) -> None:
        self.t = (norms, thresholds, count)

    def rings(self, device):
        return self.t


def _norm_fake(tensors, norm_type, max_norm, max_norm_tensor, grad_scale, found_inf, history_norms,
               history_thresholds, history_count):
    real = _norm.result_dtype(tensors)
    dev = tensors[0].device
    return (torch.empty((), dtype=real, device=dev), torch.empty((), dtype=real, device=dev),
            torch.empty((), dtype=torch.float64, device=dev))


define("grad_norm_(Tensor[] tensors, float norm_type, float? max_norm, Tensor? max_norm_tensor, Tensor? grad_scale, "
       "Tensor? found_inf, Tensor(a!) history_norms, Tensor(b!) history_thresholds, Tensor(c!) history_count) "
       "-> (Tensor, Tensor, Tensor)", _norm_impl, _norm_fake)
