#!/usr/bin/env python3
"""GPU benchmark of fusekit's multi-tensor kernels against torch's best implementation in the
same process: every optimizer vs torch fused (else foreach), clipping inside AdamW vs
clip_grad_norm_ + fused AdamW, and the global norm vs torch's get_total_norm. Each row gives
the median time with its spread (IQR), the ratio to the peer, and effective GB/s as a
fraction of a device-to-device copy measured in the same run.

CUDA: CUDA events after warm-up, L2 flushed (a 256 MiB write) before every repeat, fusekit
and the peer alternating. --device cpu is a dry run of the same code with wall-clock timers
(a CPU copy as the bound).

    python3 tools/gpu_bench.py [--device cuda] [--workload gpt2|small] [--dtype float32,bfloat16] [--reps 15] [--out f.json]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import torch


def gpt2_shapes() -> list:
    """GPT-2 small's parameter list: 148 tensors, 124.4M elements."""
    d, v, ctx, layers = 768, 50257, 1024, 12
    shapes = [(v, d), (ctx, d)]
    for _ in range(layers):
        shapes += [(d,), (d,), (3 * d, d), (3 * d,), (d, d), (d,), (d,), (d,), (4 * d, d), (4 * d,), (d, 4 * d), (d,)]
    return shapes + [(d,), (d,)]


def small_shapes() -> list:
    return [(512, 512), (512,), (1000, 784), (1000,), (10, 1000), (10,), (70001,), (7,)] * 4


class Timer:
    def __init__(self, device: str):
        self.cuda = device == "cuda"
        self.flush = torch.empty(64 << 20, dtype=torch.float32, device=device) if self.cuda else None

    def time(self, fn) -> float:
        if self.cuda:
            self.flush.zero_()  # evict the working set from L2
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            fn()
            b.record()
            b.synchronize()
            return a.elapsed_time(b) / 1e3
        t = time.perf_counter()
        fn()
        return time.perf_counter() - t


def stats(ts: list) -> dict:
    q = statistics.quantiles(ts, n=4) if len(ts) >= 4 else [min(ts), statistics.median(ts), max(ts)]
    return {"median_s": statistics.median(ts), "iqr_s": q[2] - q[0], "n": len(ts)}


def make_params(shapes, dtype, device, seed=0):
    g = torch.Generator(device=device).manual_seed(seed)
    ps = [torch.nn.Parameter(torch.randn(s, generator=g, device=device, dtype=torch.float32).to(dtype) * 0.02)
          for s in shapes]
    for p in ps:
        p.grad = torch.randn(p.shape, generator=g, device=device, dtype=torch.float32).to(dtype) * 0.01
    return ps


def peer_kwargs(name: str, device: str) -> tuple:
    """torch's best eager implementation: fused where torch has one on this device, else foreach."""
    fused = {"SGD", "Adam", "AdamW", "Adagrad"}
    if device == "cuda" and name in fused:
        return {"fused": True}, "torch fused"
    return {"foreach": True}, "torch foreach"


# (label, fusekit class, kwargs, bytes moved per element in units of the dtype's size)
OPTIMIZERS = [
    ("SGD", "SGD", dict(lr=1e-3), 3),
    ("SGD momentum", "SGD", dict(lr=1e-3, momentum=0.9), 5),
    ("Adam", "Adam", dict(lr=1e-3), 7),
    ("AdamW", "AdamW", dict(lr=1e-3, weight_decay=0.1), 7),
    ("NAdam", "NAdam", dict(lr=1e-3), 7),
    ("RMSprop", "RMSprop", dict(lr=1e-3), 5),
    ("Adagrad", "Adagrad", dict(lr=1e-3), 5),
]


def bench_pair(timer, reps, fk_fn, peer_fn) -> tuple:
    for fn in (fk_fn, peer_fn):  # warm-up: state, kernel loading
        fn()
        fn()
    a, b = [], []
    for _ in range(reps):  # alternating
        a.append(timer.time(fk_fn))
        b.append(timer.time(peer_fn))
    return stats(a), stats(b)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--workload", default=None, choices=["gpt2", "small"], help="default: gpt2 on CUDA, small on CPU")
    ap.add_argument("--dtype", default="float32,bfloat16")
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--out", help="JSON file for the rows")
    args = ap.parse_args(argv)

    import fusekit
    import fusekit.nn.utils as fu
    import fusekit.optim as fo

    dev = args.device
    if dev == "cuda" and not (torch.cuda.is_available() and fusekit.cuda_available()):
        print("no usable CUDA device or fusekit was built without CUDA kernels", file=sys.stderr)
        return 2
    shapes = gpt2_shapes() if (args.workload or ("gpt2" if dev == "cuda" else "small")) == "gpt2" else small_shapes()
    numel = sum(int(torch.Size(s).numel()) for s in shapes)
    timer = Timer(dev)
    # The bound: a device-to-device copy of the working set's size (bytes read + written).
    n_copy = max(numel, 1 << 24)
    src = torch.empty(n_copy, dtype=torch.float32, device=dev)
    dst = torch.empty_like(src)
    copy = stats([timer.time(lambda: dst.copy_(src)) for _ in range(max(args.reps, 5))])
    copy_gbs = 8 * n_copy / copy["median_s"] / 1e9
    del src, dst
    info = {"device": torch.cuda.get_device_name() if dev == "cuda" else "cpu", "torch": torch.__version__,
            "fusekit": fusekit.build_info(), "tensors": len(shapes), "elements": numel, "reps": args.reps,
            "copy_GBps": copy_gbs}
    print(f"{info['device']}: {len(shapes)} tensors, {numel / 1e6:.1f}M elements; copy {copy_gbs:.0f} GB/s "
          f"(read + write, median of {copy['n']})", flush=True)
    rows = []
    hdr = f"{'case':30s} {'dtype':9s} {'fusekit ms':>11s} {'peer':14s} {'peer ms':>9s} {'ratio':>6s} {'GB/s':>7s} {'% copy':>7s}"
    print(hdr, flush=True)

    def row(case, dtype, per_elem, fk, peer, peer_name):
        nbytes = per_elem * numel * torch.tensor([], dtype=dtype).element_size()
        gbs = nbytes / fk["median_s"] / 1e9
        r = {"case": case, "dtype": str(dtype)[6:], "fusekit": fk, "peer": peer_name, "peer_stats": peer,
             "ratio": peer["median_s"] / fk["median_s"], "GBps": gbs, "pct_copy": 100 * gbs / copy_gbs,
             "noisy": (fk["iqr_s"] + peer["iqr_s"]) > abs(peer["median_s"] - fk["median_s"])}
        rows.append(r)
        print(f"{case:30s} {r['dtype']:9s} {1e3 * fk['median_s']:8.3f}±{1e3 * fk['iqr_s']:.2f} {peer_name:14s} "
              f"{1e3 * peer['median_s']:9.3f} {r['ratio']:5.2f}x {gbs:7.0f} {r['pct_copy']:6.1f}%"
              f"{'  (spread > difference)' if r['noisy'] else ''}", flush=True)

    for dname in args.dtype.split(","):
        dtype = getattr(torch, dname)
        for label, cls, kw, per_elem in OPTIMIZERS:
            pa, pb = make_params(shapes, dtype, dev), make_params(shapes, dtype, dev)
            fk = getattr(fo, cls)(pa, **kw)  # what swapping the import gives: defaults
            pkw, pname = peer_kwargs(cls, dev)
            try:
                peer = getattr(torch.optim, cls)(pb, **kw, **pkw)
            except (RuntimeError, ValueError):  # e.g. no fused kernel for this dtype
                peer, pname = getattr(torch.optim, cls)(pb, **kw, foreach=True), "torch foreach"
            fs, ps = bench_pair(timer, args.reps, fk.step, peer.step)
            row(label, dtype, per_elem, fs, ps, pname)
            del pa, pb, fk, peer
        # clipping inside AdamW (one norm read + the update) vs clip_grad_norm_ + fused AdamW
        pa, pb = make_params(shapes, dtype, dev), make_params(shapes, dtype, dev)
        fk = fo.AdamW(pa, lr=1e-3, max_grad_norm=1.0)
        pkw, pname = peer_kwargs("AdamW", dev)
        peer = torch.optim.AdamW(pb, lr=1e-3, **pkw)

        def peer_step():
            torch.nn.utils.clip_grad_norm_(pb, 1.0, foreach=True)
            peer.step()

        fs, ps = bench_pair(timer, args.reps, fk.step, peer_step)
        row("AdamW + clip 1.0", dtype, 8, fs, ps, pname + " + clip")
        grads = [p.grad for p in pa]
        fs, ps = bench_pair(timer, args.reps, lambda: fu.get_total_norm(grads),
                            lambda: torch.nn.utils.get_total_norm(grads, foreach=True))
        row("get_total_norm (L2)", dtype, 1, fs, ps, "torch foreach")
        del pa, pb, fk, peer, grads
        if dev == "cuda":
            torch.cuda.empty_cache()
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"info": info, "rows": rows}, f, indent=1, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
