"""A candidate (a named callable and what it cost to set up) and the measurement of
fusekit against its peers, alternating, into one result row."""
from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

from .stats import compare, summarize
from .timing import OtherLoad, reps_for_budget, time_alternating


@dataclass
class Candidate:
    name: str                      # label in tables and the plot, e.g. "torch fused"
    fn: Callable[[], object]       # one timed call
    setup_s: Optional[float] = None  # construction + first call, kept out of the timings (JIT builds, compiles)
    note: str = ""
    finish: Optional[Callable[[dict], dict]] = None  # after timing, given its summary: extra facts
    extra: dict = field(default_factory=dict)


def timed_setup(make: Callable[[], Candidate], calls: int = 1) -> Candidate:
    """Builds a candidate and makes its first call(s), recording the seconds all took."""
    t0 = time.perf_counter()
    cand = make()
    for _ in range(calls):
        cand.fn()
    cand.setup_s = time.perf_counter() - t0
    return cand


@contextlib.contextmanager
def quiet():
    """Silences stdout/stderr at the file-descriptor level (JIT builds print from
    subprocesses); what was printed is replayed if the block raises."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with tempfile.TemporaryFile() as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield
        except BaseException:
            _restore(saved)
            log.seek(0)
            sys.stderr.write(log.read().decode(errors="replace")[-4000:])
            raise
        _restore(saved)


def _restore(saved) -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(saved[0], 1)
    os.dup2(saved[1], 2)
    os.close(saved[0])
    os.close(saved[1])


def measure(base: dict, cands: list[Candidate], device: str, warmup: int, reps: int, budget_s: float,
            nbytes: Optional[int] = None, probe: Optional[float] = None) -> dict:
    """Times the candidates alternating (the first is fusekit, the reference of every
    ratio) and returns base + per-candidate spread (+ GB/s when nbytes is the traffic of
    one call) + fusekit's speedup over each peer."""
    fns = {c.name: c.fn for c in cands}
    n = reps_for_budget(list(fns.values()), device, reps, budget_s)
    load = OtherLoad()
    load.start()
    samples = time_alternating(fns, device, max(0, warmup - 2), n, min_reps=reps,
                               deadline_s=2 * budget_s * len(fns))
    others = load.stop()
    n = len(samples[cands[0].name])
    rows = []
    for c in cands:
        s = summarize(samples[c.name])
        entry = dict(name=c.name, setup_s=c.setup_s, note=c.note, **c.extra, **s)
        if c.finish is not None:
            entry.update(c.finish(entry))
        if nbytes:
            entry["gbs"] = nbytes / (s["median"] / 1e3) / 1e9
            entry["bw_fraction"] = entry["gbs"] / probe if probe else None
        rows.append(entry)
    ours = rows[0]
    comparisons = [dict(vs=r["name"], peer=r.get("peer"), **compare(ours, r, others)) for r in rows[1:]]
    return dict(base, reps=n, others_cpu=others, candidates=rows, comparisons=comparisons)
