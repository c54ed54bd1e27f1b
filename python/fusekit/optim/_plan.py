"""GroupPlan: what an eager step does for one param group, built after validation: a
StepTable (the hot path), or the general path over lists of tensors (strided tensors)."""
from __future__ import annotations

import functools

import torch

from .._backend import local
from .._backend import norm as _norm
from .._backend.optim import run_lists


def options_key(group: dict) -> tuple:
    """A group's options apart from params and lr (lr changes every step and is read then)."""
    return tuple((k, v) for k, v in group.items() if k not in ("params", "lr") and not isinstance(v, torch.Tensor))


class GroupPlan:
    def __init__(self, opt, group: dict, rows: list, names: list[str], hyper, table, fresh: bool) -> None:
        self.opt, self.group, self.rows, self.names, self.hyper, self.table = opt, group, rows, names, hyper, table
        self.fresh = fresh
        self.params = [p for _, p, _ in rows]
        self.key = options_key(group)
        self.dtensor = any(local(p) is not p for p in self.params)
        self.complex = any(p.is_complex() for p in self.params)
        self.capturable = bool(group.get("capturable") or group.get("fused"))
        self.state = opt.state
        self.state_version = opt.state.version

    def current(self, group: dict) -> bool:
        """True while nothing changed since the build: the same group and options, and (the
        table's native check) the same tensors. Plans on the general path are rebuilt."""
        state = self.opt.state
        return (self.table is not None and group is self.group and state is self.state
                and state.version == self.state_version and options_key(group) == self.key
                and self.table.table.refresh())

    def launch(self, grad_scale, found_inf, coef) -> None:
        lr = self.group["lr"]
        if self.table is None:
            return run_plan_lists(self, lr, grad_scale, found_inf, coef)
        self.table.launch(lr, grad_scale, found_inf, coef, self.capturable)

    @staticmethod
    def norm_of_tables(tables: list, tail):
        """(unscaled, coef) over the gradients of tables sharing one device."""
        device = tables[0].devices[0]
        real = functools.reduce(torch.promote_types, (t.real for t in tables))
        return _norm.norm_of_tables([t.table for t in tables], real, device, tail)


def run_plan_lists(plan: GroupPlan, lr, grad_scale, found_inf, coef) -> None:
    """A group's step on the general path (strided tensors, capturable CUDA scalars)."""
    rows, names = plan.rows, plan.names
    slots = [[p for _, p, _ in rows], [p.grad for _, p, _ in rows]] + [[st[n] for _, _, st in rows] for n in names]
    opt = plan.opt
    steps = [st["step"] for _, _, st in rows] if opt._has_step else None
    mus = [st["mu_product"] for _, _, st in rows] if opt._has_mu_product else None
    first = [p in opt._fk_fresh for _, p, _ in rows] if plan.fresh else None
    tensor_lr = isinstance(lr, torch.Tensor)
    run_lists(opt._rule, plan.hyper, slots, steps=steps, mus=mus, first=first, lr=0.0 if tensor_lr else lr,
              lr_tensor=lr if tensor_lr else None, grad_scale=grad_scale, found_inf=found_inf, clip_coef=coef)
