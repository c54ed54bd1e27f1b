"""Alternating, median-based timing and the streaming-bandwidth probe."""
from __future__ import annotations

import statistics
import time
from typing import Callable

import torch


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def time_alternating(fns: dict[str, Callable[[], None]], device: str, warmup: int, reps: int) -> dict:
    """Runs the candidates in turn (a, b, a, b, ...) so drift hits both; returns median
    seconds per candidate. On CUDA: events after warm-up, L2 flushed before each run."""
    flush = torch.empty(256 * 2**20, dtype=torch.uint8, device="cuda") if device == "cuda" else None
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    _sync(device)
    samples = {k: [] for k in fns}
    for _ in range(reps):
        for name, fn in fns.items():
            if flush is not None:
                flush.zero_()
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                fn()
                end.record()
                end.synchronize()
                samples[name].append(start.elapsed_time(end) / 1e3)
            else:
                t0 = time.perf_counter()
                fn()
                samples[name].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in samples.items()}


def stream_bandwidth(device: str, n: int = 64 * 2**20, reps: int = 5) -> float:
    """GB/s of an in-place a = a*s + b over arrays much larger than the caches
    (reads a and b, writes a: 12 bytes per float32 element)."""
    a = torch.ones(n, device=device)
    b = torch.ones(n, device=device)
    out = time_alternating({"probe": lambda: torch.add(b, a, alpha=0.999, out=a)}, device, warmup=2, reps=reps)
    return 12 * n / out["probe"] / 1e9
