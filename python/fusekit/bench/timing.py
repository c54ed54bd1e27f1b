"""Alternating timing of several candidates and the streaming-bandwidth probe."""
from __future__ import annotations

import os
import time
from typing import Callable

import torch


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def time_alternating(fns: dict[str, Callable[[], object]], device: str, warmup: int, reps: int,
                     min_reps: int | None = None, deadline_s: float | None = None) -> dict[str, list]:
    """Runs the candidates in turn, reps rounds, and returns every sample (seconds) per
    candidate. Each round starts one candidate later than the previous one (a, b, c;
    b, c, a; ...), so load drift and whose caches the previous call left warm hit all of
    them alike. Stops early after min_reps rounds once deadline_s has passed (calls that
    got slower than the estimate that chose reps, as on a busy machine, cannot stretch a
    run). On CUDA: CUDA events after warm-up, L2 flushed before every sample."""
    flush = torch.empty(256 * 2**20, dtype=torch.uint8, device="cuda") if device == "cuda" else None
    names = list(fns)
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    sync(device)
    samples: dict[str, list] = {k: [] for k in names}
    t_start = time.perf_counter()
    for r in range(reps):
        if deadline_s is not None and r >= (min_reps or 1) and time.perf_counter() - t_start > deadline_s:
            break
        for i in range(len(names)):
            name = names[(r + i) % len(names)]
            fn = fns[name]
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
    return samples


def reps_for_budget(fns, device: str, reps: int, budget_s: float, cap: int = 200) -> int:
    """At least `reps` rounds; more for fast candidates (up to cap), so each runs for about
    budget_s and a millisecond case is summarised over enough samples to resist scheduler
    noise. Calls every candidate twice (the first call may create primitives or fault
    memory in), so those calls also serve as warm-up."""
    for fn in fns:
        fn()
    sync(device)
    t0 = time.perf_counter()
    for fn in fns:
        fn()
    sync(device)
    per_call = (time.perf_counter() - t0) / max(1, len(fns))
    return max(reps, min(cap, int(budget_s / max(per_call, 1e-6))))


def stream_bandwidth(device: str, n: int = 64 * 2**20, reps: int = 10) -> float:
    """GB/s of an in-place a = a*s + b over arrays much larger than the caches
    (reads a and b, writes a: 12 bytes per float32 element). The fastest of reps: the
    probe estimates what the memory can do, and other processes only ever slow it down."""
    a = torch.ones(n, device=device)
    b = torch.ones(n, device=device)
    s = time_alternating({"probe": lambda: torch.add(b, a, alpha=0.999, out=a)}, device, warmup=2, reps=reps)["probe"]
    return 12 * n / min(s) / 1e9


class OtherLoad:
    """The share of the machine's CPU time that other processes (and, on a VM, the
    hypervisor's steal) used between start() and stop(): on a busy machine a multi-threaded
    op waits for its descheduled threads at every barrier, a single-threaded one does not,
    so their ratio can be off by orders of magnitude. None where /proc/stat is missing."""

    def start(self) -> None:
        self.t0, self.busy0, self.own0 = time.perf_counter(), _busy_seconds(), _own_cpu_seconds()

    def stop(self):
        busy = _busy_seconds()
        if busy is None or self.busy0 is None:
            return None
        wall = time.perf_counter() - self.t0
        others = (busy - self.busy0) - (_own_cpu_seconds() - self.own0)
        return max(0.0, min(1.0, others / (wall * (os.cpu_count() or 1))))


def _busy_seconds():
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    return (sum(v[:8]) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")  # all but idle and iowait, steal included


def _own_cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system
