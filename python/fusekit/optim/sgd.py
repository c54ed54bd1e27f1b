"""fusekit.optim.SGD: torch.optim.SGD (momentum, dampening, Nesterov) in one fused pass."""
from __future__ import annotations

import torch

from .. import _C
from ._base import FusedOptimizer, make_hyper, check_lr


class SGD(FusedOptimizer):
    """Drop-in for torch.optim.SGD (torch 2.13 signature, defaults, state and semantics).

    The momentum buffer is created on a parameter's first step as the (weight-decayed)
    gradient, exactly as torch does; `foreach` and `fused` are accepted and ignored.
    Math: csrc/include/fusekit/math/sgd.h.
    """

    _kernel = "sgd_step"
    _has_step = False

    def __init__(self, params, lr: float | torch.Tensor = 1e-3, momentum: float = 0, dampening: float = 0,
                 weight_decay: float | torch.Tensor = 0, nesterov: bool = False, *, maximize: bool = False,
                 foreach: bool | None = None, differentiable: bool = False, fused: bool | None = None,
                 max_grad_norm=None, track_grad_norm: bool = False, grad_norm_history: int = 1000) -> None:
        check_lr(lr)
        if momentum < 0.0:
            raise ValueError(f"Invalid momentum value: {momentum}")
        if weight_decay < 0.0:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                        nesterov=nesterov, maximize=maximize, foreach=foreach,
                        differentiable=differentiable, fused=fused)
        super().__init__(params, defaults, max_grad_norm=max_grad_norm, track_grad_norm=track_grad_norm,
                         grad_norm_history=grad_norm_history)

    def _state_names(self, group):
        return ["momentum_buffer"] if group["momentum"] != 0 else []

    def _init_state(self, p, group, state):
        if group["momentum"] != 0 and state.get("momentum_buffer") is None:
            state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["_fk_first"] = True

    def _first_flags(self, params, group):
        if group["momentum"] == 0:
            return []
        return [self.state[p].pop("_fk_first", False) for p in params]

    def _hyper(self, group):
        return make_hyper(_C.SGDHyper, momentum=group["momentum"], dampening=group["dampening"],
                          weight_decay=group["weight_decay"], nesterov=group["nesterov"], maximize=group["maximize"])