"""fusekit.optim.NAdam: torch.optim.NAdam in one fused pass (torch has no fused NAdam)."""
from __future__ import annotations

import torch

from . import _checks as C
from ._base import FusedOptimizer


class NAdam(FusedOptimizer):
    """Drop-in for torch.optim.NAdam (torch 2.13 signature, defaults, state and semantics).

    folded_bias_correction=True uses the source documents' NAdam (architecture.md §3): a
    constant beta1 look-ahead with Adam's folded bias correction,
    theta -= lr * sqrt(1-b2^t)/(1-b1^t) * (b1*m + (1-b1)*g) / (sqrt(v) + eps);
    momentum_decay and mu_product are then unused. `fused` (not in torch's NAdam, which has
    no fused form) opts into unscaling inside the kernel under GradScaler, as for Adam.
    Math: csrc/include/fusekit/math/nadam.h.
    """

    _rule = "nadam"
    _has_mu_product = True

    def __init__(self, params, lr: float | torch.Tensor = 2e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0, momentum_decay: float = 4e-3, decoupled_weight_decay: bool = False,
                 *, foreach: bool | None = None, maximize: bool = False, capturable: bool = False,
                 differentiable: bool = False, fused: bool | None = None, folded_bias_correction: bool = False,
                 max_grad_norm=None, track_grad_norm: bool = False, grad_norm_history: int = 1000,
                 state_dtype: torch.dtype | None = None, master_weights: bool = False) -> None:
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, momentum_decay=momentum_decay,
                        decoupled_weight_decay=decoupled_weight_decay, maximize=maximize, foreach=foreach,
                        capturable=capturable, differentiable=differentiable, fused=fused,
                        folded_bias_correction=folded_bias_correction)
        super().__init__(params, defaults, max_grad_norm=max_grad_norm, track_grad_norm=track_grad_norm,
                         grad_norm_history=grad_norm_history, state_dtype=state_dtype,
                         master_weights=master_weights)

    def _check_options(self, group, where):
        C.check_lr(group["lr"], where)
        C.check_range(where, epsilon=group["eps"], weight_decay=group["weight_decay"],
                      momentum_decay=group["momentum_decay"])
        C.check_betas(group["betas"], where)

    def _state_names(self, group):
        return ["exp_avg", "exp_avg_sq"]

    def _init_state(self, p, group, state):
        if len(state) == 0:
            state["step"] = torch.tensor(0.0, dtype=torch.float32)
            state["mu_product"] = torch.tensor(1.0, dtype=torch.float32)
            state["exp_avg"] = self._new_state(p)
            state["exp_avg_sq"] = self._new_state(p)
        return False

    def _hyper_fields(self, group):
        b1, b2 = group["betas"]
        return dict(beta1=float(b1), beta2=float(b2), eps=group["eps"], weight_decay=group["weight_decay"],
                    momentum_decay=group["momentum_decay"], decoupled=group["decoupled_weight_decay"],
                    maximize=group["maximize"], folded=group["folded_bias_correction"])
