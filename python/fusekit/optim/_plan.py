"""GroupPlan: what an eager step does for one param group, built after validation: a
StepTable (the hot path), or the general path over lists of tensors (strided tensors)."""
from __future__ import annotations

import functools
import operator

import torch

from .._backend import local
from .._backend import norm as _norm
from .._backend.optim import run_lists


class Options:
    """A group's options apart from params and lr (lr changes every step and is read then),
    compared each step at C speed: the same keys, each value the same object or equal."""

    def __init__(self, group: dict) -> None:
        keys = tuple(k for k in group if k not in ("params", "lr"))
        # itemgetter returns a tuple for two keys or more (and the value itself for one)
        self.get = operator.itemgetter(*keys) if len(keys) > 1 else (lambda g: tuple(g[k] for k in keys))
        self.values = self.get(group)
        self.size = len(group)

    def same(self, group: dict) -> bool:
        try:
            return len(group) == self.size and self.get(group) == self.values
        except (KeyError, RuntimeError):  # a key removed; a tensor option replaced by a longer one
            return False


class GroupPlan:
    def __init__(self, opt, group: dict, rows: list, names: list[str], hyper, table, fresh: bool) -> None:
        self.opt, self.group, self.rows, self.names, self.hyper, self.table = opt, group, rows, names, hyper, table
        self.fresh = fresh
        self.params = [p for _, p, _ in rows]
        self.options = Options(group)
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
                and state.version == self.state_version and self.options.same(group)
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
