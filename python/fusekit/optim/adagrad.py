"""fusekit.optim.Adagrad: torch.optim.Adagrad (dense gradients) in one fused pass."""
from __future__ import annotations

import torch

from .. import _C
from ._base import FusedOptimizer, make_hyper, check_lr, check_nonneg


class Adagrad(FusedOptimizer):
    """Drop-in for torch.optim.Adagrad (torch 2.13 signature, defaults, state and semantics).

    Like torch, state (`step`, `sum`) is created for every parameter at construction.
    Sparse gradients are rejected (use torch.optim.Adagrad or SparseAdam for those).
    Math: csrc/include/fusekit/math/adagrad.h.
    """

    _kernel = "adagrad_step"

    def __init__(self, params, lr: float | torch.Tensor = 1e-2, lr_decay: float = 0, weight_decay: float = 0,
                 initial_accumulator_value: float = 0, eps: float = 1e-10, foreach: bool | None = None, *,
                 maximize: bool = False, differentiable: bool = False, fused: bool | None = None,
                 max_grad_norm=None, track_grad_norm: bool = False, grad_norm_history: int = 1000) -> None:
        check_lr(lr)
        check_nonneg(lr_decay=lr_decay, weight_decay=weight_decay,
                     initial_accumulator_value=initial_accumulator_value, epsilon=eps)
        defaults = dict(lr=lr, lr_decay=lr_decay, eps=eps, weight_decay=weight_decay,
                        initial_accumulator_value=initial_accumulator_value, foreach=foreach,
                        maximize=maximize, differentiable=differentiable, fused=fused)
        super().__init__(params, defaults, max_grad_norm=max_grad_norm, track_grad_norm=track_grad_norm,
                         grad_norm_history=grad_norm_history)
        for group in self.param_groups:
            for p in group["params"]:
                self._init_state(p, group, self.state[p])

    def _state_names(self, group):
        return ["sum"]

    def _init_state(self, p, group, state):
        if len(state) == 0:
            fused = group["fused"] and p.device.type == "cuda"
            state["step"] = torch.zeros((), dtype=torch.float32, device=p.device if fused else "cpu")
            init = group["initial_accumulator_value"]
            init = complex(init, init) if p.is_complex() else init
            state["sum"] = torch.full_like(p, init, memory_format=torch.preserve_format)

    def _hyper(self, group):
        return make_hyper(_C.AdagradHyper, lr_decay=group["lr_decay"], weight_decay=group["weight_decay"],
                          eps=group["eps"], maximize=group["maximize"])