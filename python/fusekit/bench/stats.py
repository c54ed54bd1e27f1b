"""Spread of a candidate's samples, the ratio of two candidates, and the rule that flags
ratios the spread does not support."""
from __future__ import annotations

import statistics

# A ratio's interval: the peer's quartiles over fusekit's opposite quartiles. It contains 1
# exactly when the two interquartile ranges overlap.
FLAG_SIGN = "~"   # IQRs overlap: fusekit may be faster or slower
FLAG_SIZE = "?"   # sign clear, but the size is not: interval wider than x2, or min ratio disagrees
WIDE = 2.0        # hi / lo above this: the spread swamps the ratio's size
MIN_DISAGREES = 1.5  # median ratio vs ratio of minimums: load shaped the figure
FLAG_LOAD = "L"   # other processes were busy while the row was timed
LOADED = 0.10     # their share of the machine's CPU time above which a row is flagged

LEGEND = (f"speedup = peer median / fusekit median (>1: fusekit faster); [lo-hi] = peer q1/fusekit q3 .. "
          f"peer q3/fusekit q1.\n"
          f"flag {FLAG_SIGN}: the two interquartile ranges overlap (the interval contains 1), so fusekit may be "
          f"faster or slower;\n"
          f"flag {FLAG_SIZE}: faster/slower is clear but not by how much: the interval spans more than "
          f"x{WIDE:g}, or the ratio of minimums differs from the ratio of medians by more than x{MIN_DISAGREES:g};\n"
          f"flag {FLAG_LOAD}: other processes used more than {LOADED:.0%} of the machine's CPU time while the row was "
          f"timed: multi-threaded candidates wait for descheduled threads, so the ratio says little about an idle "
          f"machine.")


def summarize(seconds: list[float]) -> dict:
    """min / q1 / median / q3 / max in ms (inclusive quartiles) and every sample."""
    ms = [s * 1e3 for s in seconds]
    if len(ms) >= 2:
        q1, med, q3 = statistics.quantiles(ms, n=4, method="inclusive")
    else:
        q1 = med = q3 = ms[0]
    return dict(n=len(ms), min=min(ms), q1=q1, median=med, q3=q3, max=max(ms), samples=ms)


def compare(fusekit: dict, peer: dict, others_cpu=None) -> dict:
    """fusekit's speedup over a peer (summaries from summarize) with its interval and flags;
    others_cpu: the share of CPU time other processes used meanwhile (timing.OtherLoad)."""
    ratio = peer["median"] / fusekit["median"]
    lo, hi = peer["q1"] / fusekit["q3"], peer["q3"] / fusekit["q1"]
    min_ratio = peer["min"] / fusekit["min"]
    return dict(speedup=ratio, lo=lo, hi=hi, min_ratio=min_ratio, flag=flag(ratio, lo, hi, min_ratio, others_cpu))


def flag(ratio: float, lo: float, hi: float, min_ratio: float, others_cpu=None) -> str:
    load = FLAG_LOAD if others_cpu is not None and others_cpu > LOADED else ""
    if lo <= 1.0 <= hi:
        return FLAG_SIGN + load
    if hi / lo > WIDE or max(ratio, min_ratio) / min(ratio, min_ratio) > MIN_DISAGREES:
        return FLAG_SIZE + load
    return load
