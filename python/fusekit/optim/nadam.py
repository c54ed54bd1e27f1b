"""fusekit.optim.NAdam: torch.optim.NAdam in one fused pass (torch has no fused NAdam)."""
from __future__ import annotations

import torch

from .. import _C
from ._base import FusedOptimizer, check_betas, check_lr, check_nonneg


class NAdam(FusedOptimizer):
    """Drop-in for torch.optim.NAdam (torch 2.13 signature, defaults, state and semantics).

    folded_bias_correction=True uses the source documents' NAdam (DESIGN.md §3): a
    constant beta1 look-ahead with Adam's folded bias correction,
    theta -= lr * sqrt(1-b2^t)/(1-b1^t) * (b1*m + (1-b1)*g) / (sqrt(v) + eps);
    momentum_decay and mu_product are then unused. Math: csrc/include/fusekit/math/nadam.h.
    """

    _kernel = "nadam_step"
    _has_mu_product = True

    def __init__(self, params, lr: float | torch.Tensor = 2e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0, momentum_decay: float = 4e-3, decoupled_weight_decay: bool = False,
                 *, foreach: bool | None = None, maximize: bool = False, capturable: bool = False,
                 differentiable: bool = False, folded_bias_correction: bool = False) -> None:
        check_lr(lr)
        check_nonneg(epsilon=eps, weight_decay=weight_decay, momentum_decay=momentum_decay)
        betas = check_betas(betas)
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, momentum_decay=momentum_decay,
                        decoupled_weight_decay=decoupled_weight_decay, maximize=maximize, foreach=foreach,
                        capturable=capturable, differentiable=differentiable,
                        folded_bias_correction=folded_bias_correction)
        super().__init__(params, defaults)

    def _state_names(self, group):
        return ["exp_avg", "exp_avg_sq"]

    def _init_state(self, p, group, state):
        if len(state) == 0:
            state["step"] = torch.tensor(0.0, dtype=torch.float32)
            state["mu_product"] = torch.tensor(1.0, dtype=torch.float32)
            state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)

    def _hyper(self, group):
        h = _C.NAdamHyper()
        h.beta1, h.beta2 = (float(b) for b in group["betas"])
        h.eps = float(group["eps"])
        h.weight_decay = float(group["weight_decay"])
        h.momentum_decay = float(group["momentum_decay"])
        h.decoupled = bool(group["decoupled_weight_decay"])
        h.maximize = bool(group["maximize"])
        h.folded = bool(group["folded_bias_correction"])
        return h
