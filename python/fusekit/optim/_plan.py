"""GroupPlan: what an eager step does for one param group, built after validation: a
StepTable (the hot path), or the general path over lists of tensors (strided tensors)."""
from __future__ import annotations

import functools

import torch

from .._backend import current_stream, local
from .._backend import norm as _norm


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
            from ._base import run_plan_lists
            return run_plan_lists(self, lr, grad_scale, found_inf, coef)
        threads = torch.get_num_threads()
        for b, device in enumerate(self.table.devices):
            keep = []

            def ptr(t):
                if t is None:
                    return 0
                t = t.detach().to(device=device, dtype=torch.float32)
                keep.append(t)
                return t.data_ptr()
            cuda = device.type == "cuda"
            capturable = cuda and self.capturable
            tensor_lr = isinstance(lr, torch.Tensor)
            lr_ptr = ptr(lr.reshape(())) if tensor_lr and capturable else 0
            lr_value = 0.0 if lr_ptr else float(lr)
            self.table.table.launch(b, lr_value, lr_ptr, capturable, ptr(grad_scale), ptr(found_inf), ptr(coef),
                                    threads, current_stream(device))

    @staticmethod
    def norm_of_tables(tables: list, tail):
        """(unscaled, coef) over the gradients of tables sharing one device."""
        device = tables[0].devices[0]
        real = functools.reduce(torch.promote_types, (t.real for t in tables))
        return _norm.norm_of_tables([t.table for t in tables], real, device, tail)
