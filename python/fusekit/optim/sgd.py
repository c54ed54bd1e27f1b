"""fusekit.optim.SGD: torch.optim.SGD (momentum, dampening, Nesterov) in one fused pass."""
from __future__ import annotations

import torch

from . import _checks as C
from ._base import FusedOptimizer


class SGD(FusedOptimizer):
    """Drop-in for torch.optim.SGD (torch 2.13 signature, defaults, state and semantics).

    The momentum buffer is created on a parameter's first step as the (weight-decayed)
    gradient, exactly as torch does. Math: csrc/include/fusekit/math/sgd.h.
    """

    _rule = "sgd"
    _has_step = False
    _lazy_state = ("momentum_buffer",)

    def __init__(self, params, lr: float | torch.Tensor = 1e-3, momentum: float = 0, dampening: float = 0,
                 weight_decay: float | torch.Tensor = 0, nesterov: bool = False, *, maximize: bool = False,
                 foreach: bool | None = None, differentiable: bool = False, fused: bool | None = None,
                 max_grad_norm=None, track_grad_norm: bool = False, grad_norm_history: int = 1000,
                 state_dtype: torch.dtype | None = None, master_weights: bool = False) -> None:
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                        nesterov=nesterov, maximize=maximize, foreach=foreach,
                        differentiable=differentiable, fused=fused)
        super().__init__(params, defaults, max_grad_norm=max_grad_norm, track_grad_norm=track_grad_norm,
                         grad_norm_history=grad_norm_history, state_dtype=state_dtype,
                         master_weights=master_weights)

    def _check_options(self, group, where):
        C.check_lr(group["lr"], where)
        C.check_range(where, momentum=group["momentum"], weight_decay=group["weight_decay"])
        damp = C.number(group["dampening"], "dampening", where)
        if damp != damp or abs(damp) == float("inf"):
            raise ValueError(f"Invalid dampening value{where}: {group['dampening']} (must be finite)")
        if group["nesterov"] and (C.number(group["momentum"], "momentum", where) <= 0 or damp != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")

    def _state_names(self, group):
        return ["momentum_buffer"] if group["momentum"] != 0 else []

    def _init_state(self, p, group, state):
        if group["momentum"] != 0 and state.get("momentum_buffer") is None:
            state["momentum_buffer"] = self._new_state(p)
            return True
        return False

    def _hyper_fields(self, group):
        return dict(momentum=group["momentum"], dampening=group["dampening"], weight_decay=group["weight_decay"],
                    nesterov=group["nesterov"], maximize=group["maximize"])
