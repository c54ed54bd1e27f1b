"""fusekit.optim.Adagrad: torch.optim.Adagrad (dense gradients) in one fused pass."""
from __future__ import annotations

import torch

from . import _checks as C
from ._base import FusedOptimizer


class Adagrad(FusedOptimizer):
    """Drop-in for torch.optim.Adagrad (torch 2.13 signature, defaults, state and semantics).

    Like torch, state (`step`, `sum`) is created for every parameter at construction.
    Sparse gradients are rejected (use torch.optim.Adagrad or SparseAdam for those).
    Math: csrc/include/fusekit/math/adagrad.h.
    """

    _rule = "adagrad"

    def __init__(self, params, lr: float | torch.Tensor = 1e-2, lr_decay: float = 0, weight_decay: float = 0,
                 initial_accumulator_value: float = 0, eps: float = 1e-10, foreach: bool | None = None, *,
                 maximize: bool = False, differentiable: bool = False, fused: bool | None = None,
                 max_grad_norm=None, track_grad_norm: bool = False, grad_norm_history: int = 1000,
                 state_dtype: torch.dtype | None = None, master_weights: bool = False) -> None:
        defaults = dict(lr=lr, lr_decay=lr_decay, eps=eps, weight_decay=weight_decay,
                        initial_accumulator_value=initial_accumulator_value, foreach=foreach,
                        maximize=maximize, differentiable=differentiable, fused=fused)
        super().__init__(params, defaults, max_grad_norm=max_grad_norm, track_grad_norm=track_grad_norm,
                         grad_norm_history=grad_norm_history, state_dtype=state_dtype,
                         master_weights=master_weights)
        for group in self.param_groups:
            for p in group["params"]:
                self._init_state(p, group, self.state[p])

    def _check_options(self, group, where):
        C.check_lr(group["lr"], where)
        C.check_range(where, lr_decay=group["lr_decay"], weight_decay=group["weight_decay"],
                      initial_accumulator_value=group["initial_accumulator_value"], epsilon=group["eps"])

    def _state_names(self, group):
        return ["sum"]

    def _init_state(self, p, group, state):
        if len(state) == 0:
            fused = group["fused"] and p.device.type == "cuda"
            state["step"] = torch.zeros((), dtype=torch.float32, device=p.device if fused else "cpu")
            init = group["initial_accumulator_value"]
            if p.is_complex():
                state["sum"] = torch.full_like(p, complex(init, init), memory_format=torch.preserve_format)
            else:
                state["sum"] = self._new_state(p, init)
        return False

    def _hyper_fields(self, group):
        return dict(lr_decay=group["lr_decay"], weight_decay=group["weight_decay"], eps=group["eps"],
                    maximize=group["maximize"])
