#!/usr/bin/env python3
"""Registers, spills and shared memory of every CUDA kernel, from a build log made with
FUSEKIT_PTXAS_VERBOSE=ON (nvcc -Xptxas -v). Prints a table and exits 1 if an optimizer or
norm kernel uses more than 64 registers or any kernel spills.

    python3 tools/ptxas_table.py build.log [--all] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys

# Kernels whose block size and __launch_bounds__ promise <= 64 registers (issue: one 512- or
# 256-thread block must not be limited by registers to fewer resident threads).
CAPPED = ("step_kernel", "partials_kernel", "advance_state_kernel", "tensor_norms_kernel", "total_kernel")
REG_CAP = 64

ENTRY = re.compile(r"Compiling entry function '([^']+)' for '(sm_\d+a?)'")
PROPS = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
USED = re.compile(r"Used (\d+) registers")
SMEM = re.compile(r"(\d+) bytes smem")


def demangle(names):
    if not names or not shutil.which("c++filt"):
        return dict(zip(names, names))
    out = subprocess.run(["c++filt"], input="\n".join(names), capture_output=True, text=True).stdout.splitlines()
    return dict(zip(names, out))


def short(name: str) -> str:
    name = name.replace("(anonymous namespace)::", "")
    depth = 0
    for i, ch in enumerate(name):  # cut at the argument list: the first '(' outside <...>
        depth += ch == "<"
        depth -= ch == ">"
        if ch == "(" and depth == 0:
            name = name[:i]
            break
    name = re.sub(r"^void ", "", name)
    for prefix in ("fusekit::cuda::", "fusekit::"):
        name = name.replace(prefix, "")
    return name


def parse(text: str):
    """One row per entry function (kernel) and per arch; the properties of a non-entry
    function (e.g. libdevice's pow) go to a row of its own."""
    rows, cur, props_of, arch = [], None, None, "?"
    for line in text.splitlines():
        m = ENTRY.search(line)
        if m:
            cur = {"mangled": m.group(1), "arch": m.group(2), "regs": None, "stack": 0, "spill_st": 0, "spill_ld": 0,
                   "smem": 0}
            rows.append(cur)
            arch = cur["arch"]
            continue
        m = re.search(r"Function properties for (\S+)", line)
        if m:
            if cur is not None and m.group(1) == cur["mangled"]:
                props_of = cur
            else:
                props_of = {"mangled": m.group(1), "arch": arch, "regs": 0, "stack": 0,
                            "spill_st": 0, "spill_ld": 0, "smem": 0, "callee": True}
                rows.append(props_of)
            continue
        m = PROPS.search(line)
        if m and props_of is not None:
            props_of["stack"], props_of["spill_st"], props_of["spill_ld"] = map(int, m.groups())
            props_of = None
            continue
        m = USED.search(line)
        if m and cur is not None:
            cur["regs"] = int(m.group(1))
            sm = SMEM.search(line)
            cur["smem"] = int(sm.group(1)) if sm else 0
            cur = None
    names = demangle(sorted({r["mangled"] for r in rows}))
    for r in rows:
        r["name"] = short(names[r["mangled"]])
        r["capped"] = not r.get("callee") and any(r["name"].startswith(c) for c in CAPPED)
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("log")
    ap.add_argument("--all", action="store_true", help="one row per kernel (default: a summary per family)")
    ap.add_argument("--json", help="write every row here")
    args = ap.parse_args()
    rows = parse(open(args.log, errors="replace").read())
    if not rows:
        print("no ptxas -v output in the log (build with -DFUSEKIT_PTXAS_VERBOSE=ON)", file=sys.stderr)
        return 2
    bad = [r for r in rows if r["spill_st"] or r["spill_ld"] or (r["capped"] and r["regs"] > REG_CAP)]
    if args.all:
        print("| kernel | arch | registers | stack | spill st/ld | smem |\n| --- | --- | --- | --- | --- | --- |")
        for r in sorted(rows, key=lambda r: (r["arch"], r["name"])):
            print(f"| {r['name']} | {r['arch']} | {r['regs']} | {r['stack']} | {r['spill_st']}/{r['spill_ld']} | {r['smem']} |")
    else:
        fam: dict = {}
        for r in rows:
            base = r["name"].split("<")[0]
            rule = re.match(r"step_kernel<(\w+)Rule", r["name"])
            key = (f"step_kernel<{rule.group(1)}>" if rule else base, r["arch"])
            fam.setdefault(key, []).append(r)
        print("| kernel family | arch | variants | registers min-max | max stack | spills | smem max |\n"
              "| --- | --- | --- | --- | --- | --- | --- |")
        for (name, arch), rs in sorted(fam.items()):
            regs = [r["regs"] for r in rs]
            spills = sum(r["spill_st"] + r["spill_ld"] for r in rs)
            print(f"| {name} | {arch} | {len(rs)} | {min(regs)}-{max(regs)} | {max(r['stack'] for r in rs)} | "
                  f"{spills} | {max(r['smem'] for r in rs)} |")
    capped = [r for r in rows if r["capped"]]
    print(f"\n{len(rows)} functions; {len(capped)} optimizer/norm kernels, max {max(r['regs'] for r in capped) if capped else 0} "
          f"registers (cap {REG_CAP}); {sum(1 for r in rows if r['spill_st'] or r['spill_ld'])} spill")
    for r in bad:
        print(f"OVER: {r['name']} {r['arch']}: {r['regs']} registers, spills {r['spill_st']}/{r['spill_ld']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
