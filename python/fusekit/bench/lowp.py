"""Low-precision state suite: fusekit's AdamW with 8-bit state (AdamW8bit) and with bfloat16
state against torch's best eager fp32 AdamW (fused on the CPU) and bitsandbytes' AdamW8bit,
on one parameter list. The candidates move different numbers of bytes, so each row reports
every candidate's own bytes per step, its GB/s and that as a fraction of the streaming probe
(the fraction of its bytes-moved bound), and the optimizer state it holds per parameter."""
from __future__ import annotations

import torch

import fusekit.optim as fo

from . import peers as P
from .candidates import Candidate, measure, quiet
from .workloads import WORKLOADS, make_params

KW = dict(lr=1e-3, weight_decay=0.1)
# bytes per element and step: param read+write, gradient read, each state read+write
# (8-bit: one code byte per state plus a float32 absmax per 256 elements)
TRAFFIC = {"fp32": 4 * 2 + 4 + 2 * (4 * 2), "bf16": 4 * 2 + 4 + 2 * (2 * 2), "8bit": 4 * 2 + 4 + 2 * (1 + 4 / 256) * 2}
CASES = {"AdamW8bit": "8bit", "AdamW bf16 state": "bf16"}


def state_bytes_per_param(opt, params) -> float:
    """Optimizer state bytes per parameter (codes, absmax, bf16/fp32 states; not the step
    counters or the shared maps)."""
    total = 0
    for p in params:
        for k, v in opt.state[p].items():
            if torch.is_tensor(v) and v.dim() > 0 and not k.startswith("qmap"):
                total += v.numel() * v.element_size()
    return total / sum(p.numel() for p in params)


def _bnb8(params):
    with quiet():  # bitsandbytes warns at import about optional CPU kernels it cannot load
        import bitsandbytes as bnb
    return bnb.optim.AdamW8bit(params, **KW)


def run(workload: str, device: str, case: str, peers: list[str], cfg, probe: float, status=print) -> dict:
    kind = CASES[case]
    params = make_params(WORKLOADS[workload](), device)
    n = sum(p.numel() for p in params)
    ours = fo.AdamW8bit(params, **KW) if kind == "8bit" else fo.AdamW(params, state_dtype=torch.bfloat16, **KW)
    opts = [("fusekit", ours, kind, "fusekit")]
    theirs, impl = P.torch_best("AdamW", params, KW, device)
    opts.append((f"torch {impl} (fp32 state)", theirs, "fp32", "torch"))
    if kind == "8bit" and "bitsandbytes" in peers:
        status(f"{workload} {case}: setting up bitsandbytes")
        opts.append(("bnb AdamW8bit", _bnb8(params), "8bit", "bitsandbytes"))
    cands = []
    for name, opt, traffic, peer in opts:  # peer: the key the plot colours by
        opt.step()  # state exists before timing (and its size can be read)
        per = state_bytes_per_param(opt, params)
        cands.append(Candidate(name, opt.step, note=f"state {per:.2f} B/param",
                               extra=dict(peer=peer, state=traffic, state_bytes_per_param=per)))
    status(f"{workload} {case}: timing {len(cands)} candidates")
    base = dict(suite="lowp", case=case, workload=workload, device=device, tensors=len(params), params=n)
    row = measure(base, cands, device, cfg.warmup, cfg.reps, cfg.budget_s)
    for c in row["candidates"]:  # each candidate's own traffic
        c["bytes_per_step"] = TRAFFIC[c["state"]] * n
        c["gbs"] = c["bytes_per_step"] / (c["median"] / 1e3) / 1e9
        c["bw_fraction"] = c["gbs"] / probe if probe else None
    return row
