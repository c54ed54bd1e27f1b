"""fusekit.optim.Adam and AdamW: torch.optim.Adam / AdamW in one fused pass."""
from __future__ import annotations

import torch

from . import _checks as C
from ._base import FusedOptimizer


class Adam(FusedOptimizer):
    """Drop-in for torch.optim.Adam (torch 2.13 signature, defaults, state and semantics).

    folded_bias_correction=True uses the source documents' form (architecture.md §3, Kingma &
    Ba §2): theta -= lr * sqrt(1-b2^t)/(1-b1^t) * m / (sqrt(v) + eps), i.e. eps is added
    to sqrt(v) before bias correction instead of after. Math: csrc/include/fusekit/math/adam.h.
    """

    _rule = "adam"

    def __init__(self, params, lr: float | torch.Tensor = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0, amsgrad: bool = False, *, foreach: bool | None = None,
                 maximize: bool = False, capturable: bool = False, differentiable: bool = False,
                 fused: bool | None = None, decoupled_weight_decay: bool = False,
                 folded_bias_correction: bool = False,
                 max_grad_norm=None, track_grad_norm: bool = False, grad_norm_history: int = 1000,
                 state_dtype: torch.dtype | None = None, master_weights: bool = False) -> None:
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                        maximize=maximize, foreach=foreach, capturable=capturable,
                        differentiable=differentiable, fused=fused,
                        decoupled_weight_decay=decoupled_weight_decay,
                        folded_bias_correction=folded_bias_correction)
        super().__init__(params, defaults, max_grad_norm=max_grad_norm, track_grad_norm=track_grad_norm,
                         grad_norm_history=grad_norm_history, state_dtype=state_dtype,
                         master_weights=master_weights)

    def _check_options(self, group, where):
        C.check_lr(group["lr"], where)
        C.check_range(where, epsilon=group["eps"], weight_decay=group["weight_decay"])
        C.check_betas(group["betas"], where)

    def _state_names(self, group):
        return ["exp_avg", "exp_avg_sq"] + (["max_exp_avg_sq"] if group["amsgrad"] else [])

    def _init_state(self, p, group, state):
        if len(state) == 0:
            state["step"] = torch.tensor(0.0, dtype=torch.float32)
            state["exp_avg"] = self._new_state(p)
            state["exp_avg_sq"] = self._new_state(p)
        if group["amsgrad"] and "max_exp_avg_sq" not in state:
            state["max_exp_avg_sq"] = self._new_state(p)
        return False

    def _hyper_fields(self, group):
        b1, b2 = group["betas"]
        return dict(beta1=float(b1), beta2=float(b2), eps=group["eps"], weight_decay=group["weight_decay"],
                    amsgrad=group["amsgrad"], maximize=group["maximize"],
                    decoupled=group["decoupled_weight_decay"], folded=group["folded_bias_correction"])


class AdamW(Adam):
    """Drop-in for torch.optim.AdamW: Adam with decoupled weight decay (default 1e-2)."""

    def __init__(self, params, lr: float | torch.Tensor = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2, amsgrad: bool = False, *, maximize: bool = False,
                 foreach: bool | None = None, capturable: bool = False, differentiable: bool = False,
                 fused: bool | None = None, folded_bias_correction: bool = False, max_grad_norm=None,
                 track_grad_norm: bool = False, grad_norm_history: int = 1000, state_dtype: torch.dtype | None = None,
                 master_weights: bool = False) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, foreach=foreach, maximize=maximize,
                         capturable=capturable, differentiable=differentiable, fused=fused,
                         decoupled_weight_decay=True, folded_bias_correction=folded_bias_correction,
                         max_grad_norm=max_grad_norm, track_grad_norm=track_grad_norm,
                         grad_norm_history=grad_norm_history, state_dtype=state_dtype, master_weights=master_weights)

    def __setstate__(self, state):
        super().__setstate__(state)
        for group in self.param_groups:
            group["decoupled_weight_decay"] = True
