"""Optimizer benchmark: each fusekit optimizer against torch's best implementation
(fused where torch has one for the device, else foreach) in the same run."""
from __future__ import annotations

import torch

import fusekit.optim as fo

from .timing import stream_bandwidth, time_alternating
from .workloads import WORKLOADS, make_params

# (kwargs, tensors read+written per element per step) -- for effective GB/s.
OPTIMIZERS = {
    "SGD": (dict(lr=0.01, momentum=0.9), 5),
    "Adam": (dict(lr=1e-3), 7),
    "AdamW": (dict(lr=1e-3, weight_decay=0.1), 7),
    "NAdam": (dict(lr=1e-3), 7),
    "RMSprop": (dict(lr=1e-3), 5),
    "Adagrad": (dict(lr=1e-2), 5),
}


def torch_best(name: str, params, kw: dict, device: str):
    """torch's fastest implementation of the optimizer on this device, and its label."""
    cls = getattr(torch.optim, name)
    try:
        opt = cls(params, fused=True, **kw)
        opt.step()  # fused may exist in the signature but not for this device (raises then)
        return opt, "fused"
    except (RuntimeError, TypeError, ValueError):
        return cls(params, foreach=True, **kw), "foreach"


def run(workload: str, device: str, names: list[str], warmup: int, reps: int, probe: float | None) -> list[dict]:
    shapes = WORKLOADS[workload]()
    rows = []
    for name in names:
        kw, touches = OPTIMIZERS[name]
        pf = make_params(shapes, device)
        pt = make_params(shapes, device)
        ours = getattr(fo, name)(pf, **kw)
        ref, impl = torch_best(name, pt, kw, device)
        med = time_alternating({"fusekit": ours.step, "torch": ref.step}, device, warmup, reps)
        nbytes = sum(p.numel() * p.element_size() for p in pf) * touches
        gbs = nbytes / med["fusekit"] / 1e9
        rows.append(dict(suite="optim", workload=workload, device=device, optimizer=name, torch_impl=impl,
                         params=sum(p.numel() for p in pf), tensors=len(pf), fusekit_ms=med["fusekit"] * 1e3,
                         torch_ms=med["torch"] * 1e3, speedup=med["torch"] / med["fusekit"], fusekit_gbs=gbs,
                         bw_fraction=(gbs / probe) if probe else None))
        del pf, pt, ours, ref
    return rows
