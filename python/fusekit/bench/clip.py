"""Clipping benchmarks against torch in the same run:
- clip: fusekit.nn.utils.clip_grad_norm_ vs torch.nn.utils.clip_grad_norm_;
- clip+AdamW: AdamW(max_grad_norm=...) (norm pass + fused step) vs torch's
  clip_grad_norm_ followed by AdamW(fused=True), or foreach where fused is unavailable."""
from __future__ import annotations

import torch

import fusekit.nn.utils as fnu
import fusekit.optim as fo

from .optim import torch_best
from .timing import time_alternating
from .workloads import WORKLOADS, make_params


def run(workload: str, device: str, warmup: int, reps: int, max_norm: float) -> list[dict]:
    shapes = WORKLOADS[workload]()
    rows = []
    # clip_grad_norm_ alone, in two regimes. "clips": every call scales the gradients (each
    # call's threshold is 0.9x the previous one); "no clip": the norm is within max_norm, so
    # fusekit only reads the gradients while torch still multiplies them by 1.
    pf, pt = make_params(shapes, device), make_params(shapes, device)
    start = float(torch.nn.utils.get_total_norm([p.grad for p in pt]))
    calls = {"fusekit": 0, "torch": 0}

    def shrinking(fn, params, who):
        def call():
            calls[who] += 1
            fn(params, start * 0.9 ** calls[who])
        return call

    med = time_alternating({"fusekit": shrinking(fnu.clip_grad_norm_, pf, "fusekit"),
                            "torch": shrinking(torch.nn.utils.clip_grad_norm_, pt, "torch")}, device, warmup, reps)
    rows.append(_row("clip_grad_norm_ (clips)", workload, device, pf, med, "torch.nn.utils"))
    med = time_alternating({"fusekit": lambda: fnu.clip_grad_norm_(pf, 1e30),
                            "torch": lambda: torch.nn.utils.clip_grad_norm_(pt, 1e30)}, device, warmup, reps)
    rows.append(_row("clip_grad_norm_ (no clip)", workload, device, pf, med, "torch.nn.utils"))
    del pf, pt

    pf, pt = make_params(shapes, device), make_params(shapes, device)
    # fusekit does not write clipped gradients back, so every step clips; torch's first
    # clip_grad_norm_ rescales its gradients in place, and it multiplies them on every call.
    ours = fo.AdamW(pf, lr=1e-3, max_grad_norm=max_norm)
    ref, impl = torch_best("AdamW", pt, dict(lr=1e-3), device)

    def torch_step():
        torch.nn.utils.clip_grad_norm_(pt, max_norm)
        ref.step()

    med = time_alternating({"fusekit": ours.step, "torch": torch_step}, device, warmup, reps)
    rows.append(_row("clip+AdamW", workload, device, pf, med, f"clip_grad_norm_ + AdamW({impl})"))
    return rows


def _row(what, workload, device, params, med, torch_impl):
    return dict(suite="clip", workload=workload, device=device, optimizer=what, torch_impl=torch_impl,
                params=sum(p.numel() for p in params), tensors=len(params), fusekit_ms=med["fusekit"] * 1e3,
                torch_ms=med["torch"] * 1e3, speedup=med["torch"] / med["fusekit"])
