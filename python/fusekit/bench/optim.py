"""Optimizer suite: each fusekit optimizer's step against its peers (peers.py) on one
shared parameter list (ResNet-18-, GPT-2-small-like or Nielsen's net, workloads.py).
The candidates step the same parameters and gradients, each with its own state: the
work is the same, and the largest list fits in memory beside five optimizer states."""
from __future__ import annotations

import fusekit.optim as fo

from . import peers as P
from .candidates import Candidate, measure
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



def run(workload: str, device: str, name: str, peers: list[str], cfg, probe: float, status=print) -> dict:
    """One row: fusekit's step and each listed peer's (those covering this optimizer)."""
    kw, touches = OPTIMIZERS[name]
    params = make_params(WORKLOADS[workload](), device)
    cands = [Candidate("fusekit", getattr(fo, name)(params, **kw).step, extra=dict(peer="fusekit"))]
    for peer in peers:
        if P.covers(peer, name):
            status(f"{workload} {name}: setting up {peer}")
            cands.append(P.build(peer, name, params, kw, device))
    status(f"{workload} {name}: timing {len(cands)} candidates")
    nbytes = sum(p.numel() * p.element_size() for p in params) * touches
    base = dict(suite="optim", case=name, workload=workload, device=device, tensors=len(params),
                params=sum(p.numel() for p in params), bytes_per_step=nbytes)
    return measure(base, cands, device, cfg.warmup, cfg.reps, cfg.budget_s, nbytes=nbytes, probe=probe)
