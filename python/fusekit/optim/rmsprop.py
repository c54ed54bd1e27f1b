"""fusekit.optim.RMSprop: torch.optim.RMSprop in one fused pass (torch has no fused RMSprop)."""
from __future__ import annotations

import torch

from . import _checks as C
from ._base import FusedOptimizer


class RMSprop(FusedOptimizer):
    """Drop-in for torch.optim.RMSprop (torch 2.13 signature, defaults, state and semantics).

    The source documents' RMSProp (architecture.md §3) is reachable with
    square_avg_init=1.0, eps_in_sqrt=True, lr_in_momentum=True:
    v_0 = 1;  m <- momentum*m + lr/sqrt(v + eps) * g;  theta <- theta - m.
    Each option can also be used alone. `fused` (not in torch's RMSprop, which has no fused
    form) opts into unscaling inside the kernel under GradScaler, as for Adam.
    Math: csrc/include/fusekit/math/rmsprop.h.
    """

    _rule = "rmsprop"

    def __init__(self, params, lr: float | torch.Tensor = 1e-2, alpha: float = 0.99, eps: float = 1e-8,
                 weight_decay: float = 0, momentum: float = 0, centered: bool = False, capturable: bool = False,
                 foreach: bool | None = None, maximize: bool = False, differentiable: bool = False, *,
                 fused: bool | None = None, square_avg_init: float = 0.0, eps_in_sqrt: bool = False, lr_in_momentum: bool = False,
                 max_grad_norm=None, track_grad_norm: bool = False, grad_norm_history: int = 1000,
                 state_dtype: torch.dtype | None = None, master_weights: bool = False) -> None:
        defaults = dict(lr=lr, momentum=momentum, alpha=alpha, eps=eps, centered=centered,
                        weight_decay=weight_decay, capturable=capturable, foreach=foreach, maximize=maximize,
                        differentiable=differentiable, fused=fused, square_avg_init=square_avg_init,
                        eps_in_sqrt=eps_in_sqrt, lr_in_momentum=lr_in_momentum)
        super().__init__(params, defaults, max_grad_norm=max_grad_norm, track_grad_norm=track_grad_norm,
                         grad_norm_history=grad_norm_history, state_dtype=state_dtype,
                         master_weights=master_weights)

    def _check_options(self, group, where):
        C.check_lr(group["lr"], where)
        C.check_range(where, epsilon=group["eps"], momentum=group["momentum"], weight_decay=group["weight_decay"],
                      square_avg_init=group["square_avg_init"])
        C.check_unit("alpha", group["alpha"], where)

    def _state_names(self, group):
        return (["square_avg"] + (["momentum_buffer"] if group["momentum"] > 0 else [])
                + (["grad_avg"] if group["centered"] else []))

    def _init_state(self, p, group, state):
        if len(state) == 0:
            state["step"] = torch.zeros((), dtype=torch.float32)
            state["square_avg"] = self._new_state(p, group["square_avg_init"])
        if group["momentum"] > 0 and "momentum_buffer" not in state:
            state["momentum_buffer"] = self._new_state(p)
        if group["centered"] and "grad_avg" not in state:
            state["grad_avg"] = self._new_state(p)
        return False

    def _hyper_fields(self, group):
        return dict(alpha=group["alpha"], eps=group["eps"], weight_decay=group["weight_decay"],
                    momentum=group["momentum"], centered=group["centered"], maximize=group["maximize"],
                    eps_in_sqrt=group["eps_in_sqrt"], lr_in_momentum=group["lr_in_momentum"])
