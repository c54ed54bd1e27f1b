"""Clipping suite against torch in the same run:
- clip_grad_norm_: fusekit.nn.utils.clip_grad_norm_ vs torch.nn.utils.clip_grad_norm_ (foreach),
  when it clips and when the norm is within max_norm;
- clip+AdamW: AdamW(max_grad_norm=...) (norm pass + fused step) vs torch's
  clip_grad_norm_ followed by its best eager AdamW (fused, else foreach)."""
from __future__ import annotations

import torch

import fusekit.nn.utils as fnu
import fusekit.optim as fo

from .candidates import Candidate, measure
from .peers import torch_best
from .workloads import WORKLOADS, make_params

CASES = ["clip_grad_norm_ (clips)", "clip_grad_norm_ (no clip)", "clip+AdamW"]


def run(workload: str, device: str, case: str, cfg, max_norm: float) -> dict:
    shapes = WORKLOADS[workload]()
    pf, pt = make_params(shapes, device), make_params(shapes, device)
    base = dict(suite="clip", case=case, workload=workload, device=device, tensors=len(pf),
                params=sum(p.numel() for p in pf))
    if case == "clip_grad_norm_ (clips)":
        # Every call scales the gradients: each call's threshold is 0.9x the previous one.
        start = float(torch.nn.utils.get_total_norm([p.grad for p in pt]))
        calls = {"fusekit": 0, "torch": 0}

        def shrinking(fn, params, who):
            def call():
                calls[who] += 1
                fn(params, start * 0.9 ** calls[who])
            return call

        cands = [Candidate("fusekit", shrinking(fnu.clip_grad_norm_, pf, "fusekit")),
                 Candidate("torch foreach", shrinking(torch.nn.utils.clip_grad_norm_, pt, "torch"))]
    elif case == "clip_grad_norm_ (no clip)":
        # The norm is within max_norm: fusekit only reads the gradients, torch still multiplies by 1.
        cands = [Candidate("fusekit", lambda: fnu.clip_grad_norm_(pf, 1e30)),
                 Candidate("torch foreach", lambda: torch.nn.utils.clip_grad_norm_(pt, 1e30))]
    else:
        # fusekit does not write clipped gradients back, so every step clips; torch's first
        # clip_grad_norm_ rescales its gradients in place, and it multiplies them on every call.
        ours = fo.AdamW(pf, lr=1e-3, max_grad_norm=max_norm)
        ref, impl = torch_best("AdamW", pt, dict(lr=1e-3), device)

        def torch_step():
            torch.nn.utils.clip_grad_norm_(pt, max_norm)
            ref.step()

        cands = [Candidate("fusekit", ours.step), Candidate(f"torch clip + AdamW {impl}", torch_step)]
    for c, peer in zip(cands, ("fusekit", "torch")):
        c.extra["peer"] = peer
    return measure(base, cands, device, cfg.warmup, cfg.reps, cfg.budget_s)
