"""Text output: one block per result row, every candidate with its median and
interquartile range, fusekit's speedup over each peer with its interval and flag."""
from __future__ import annotations

from .stats import FLAG_LOAD, FLAG_SIGN, FLAG_SIZE, LEGEND


def num(x: float) -> str:
    """Three significant figures without exponents for the ms range we print."""
    if x >= 100:
        return f"{x:.0f}"
    if x >= 10:
        return f"{x:.1f}"
    if x >= 1:
        return f"{x:.2f}"
    return f"{x:.3f}" if x >= 0.01 else f"{x:.4f}"


def spread(c: dict) -> str:
    return f"{num(c['median'])} [{num(c['q1'])}-{num(c['q3'])}]"


def title(row: dict) -> str:
    what = {"optim": "optimizer step", "lowp": "optimizer step, low-precision state", "clip": "clipping",
            "layers": "forward+backward",
            "e2e": "training step"}[row["suite"]]
    sizes = ""
    if row.get("params") is not None:
        sizes = f"{row['tensors']} tensors, {row['params'] / 1e6:.2f}M params"
        if row.get("batch"):
            sizes += f", batch {row['batch']}"
    where = ", ".join(x for x in (row.get("workload"), sizes, row["device"]) if x)
    load = f"; other processes used {row['others_cpu']:.0%} of the CPU" if row.get("others_cpu") is not None else ""
    return f"{row['suite']}: {row['case']} - {what} ({where}); {row['reps']} samples each{load}"


def block(row: dict) -> str:
    lines = [title(row)]
    ratio = {c["vs"]: c for c in row["comparisons"]}
    opt_ratio = {c["vs"]: c for c in row.get("opt_comparisons", [])}
    for c in row["candidates"]:
        line = f"  {c['name']:<26} {spread(c):>26} ms"
        if "gbs" in c:
            frac = f"{c['bw_fraction']:>5.0%}" if c.get("bw_fraction") is not None else "     "
            line += f" {c['gbs']:>7.1f} GB/s {frac}"
        r = ratio.get(c["name"])
        if r is not None:
            line += f"  {r['speedup']:>6.2f}x [{r['lo']:.2f}-{r['hi']:.2f}] {r['flag']:<2}"
        else:
            line += " " * 25
        notes = [c["note"]] if c.get("note") else []
        if "recompiles" in c:
            notes.append(f"{c['recompiles']} recompiles while timed")
        if "opt" in c:
            notes.append(f"optimizer step {spread(c['opt'])} ms = {c['opt_share']:.1%} of the step")
            o = opt_ratio.get(c["name"])
            if o is not None:
                notes.append(f"fusekit's {o['speedup']:.2f}x [{o['lo']:.2f}-{o['hi']:.2f}] {o['flag']}".rstrip())
        lines.append((line + ("  " + "; ".join(notes) if notes else "")).rstrip())
    return "\n".join(lines)


def header(info: dict) -> str:
    fk = info["fusekit"]
    return (f"# fusekit {info['fusekit_version']} | torch {info['torch']} | cpu isa {fk.get('cpu_isa')} | "
            f"threads {info['threads']} | {info['cpus']} cpus, load avg {info['loadavg']:.2f}"
            + (f" | gpu {info['gpu']}" if info.get("gpu") else ""))


def legend() -> str:
    return ("ms: median [q1-q3] of the samples; candidates alternate within each row. GB/s: bytes the step "
            "must move / median time, and its fraction of the streaming probe (lowp: each candidate's own "
            "bytes).\n" + LEGEND)


def summary(rows: list[dict]) -> str:
    comps = [c for r in rows for c in r["comparisons"] + r.get("opt_comparisons", [])]
    count = {f: sum(f in c["flag"] for c in comps) for f in (FLAG_SIGN, FLAG_SIZE, FLAG_LOAD)}
    return (f"{len(comps)} ratios: {sum(not c['flag'] for c in comps)} unflagged, {count[FLAG_SIGN]} flagged "
            f"{FLAG_SIGN} (either side of 1), {count[FLAG_SIZE]} {FLAG_SIZE} (size uncertain), {count[FLAG_LOAD]} "
            f"{FLAG_LOAD} (machine busy)" + ("\nThe machine was busy: rerun when it is idle, or with --threads 1 so "
                                             "no candidate waits for a descheduled thread." if count[FLAG_LOAD] else ""))
