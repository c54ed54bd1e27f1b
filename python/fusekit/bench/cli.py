"""python -m fusekit.bench: fusekit against its peers in the same run, alternating.

What the plain command runs (CPU, plus CUDA when fusekit's CUDA kernels and a GPU are there):
  optim   every optimizer (SGD, Adam, AdamW, NAdam, RMSprop, Adagrad) on the GPT-2-small
          (148 tensors, 124M params), Nielsen 784-30-10 and tiny148 (148 tensors of 4
          elements: the per-step host time) parameter lists, against torch's
          best eager step (fused, else foreach), bitsandbytes (32-bit; SGD, Adam, AdamW,
          RMSprop, Adagrad), DeepSpeed's CPU Adam/AdamW/Adagrad and apex's fused CUDA
          optimizers where importable, and torch.compile of torch's AdamW step
  lowp    AdamW with 8-bit state (AdamW8bit) and with bfloat16 state against torch's fp32 fused
          AdamW and bitsandbytes' AdamW8bit, on the same lists but tiny148; each candidate's own
          bytes moved, fraction of the streaming probe and state bytes per parameter
  clip    clip_grad_norm_ (clipping / not clipping) and clipping inside AdamW, same two
          lists, against torch
  layers  forward+backward against torch: conv2d (LeNet-5 C1 and C3, CIFAR 64->64 3x3,
          stride-2 3x3, depthwise 3x3), max_pool2d 2x2 (NCHW, channels_last) and
          ConvReLUMaxPool2d vs conv -> relu -> max_pool
  e2e     whole training steps on synthetic data: a small GPT (4 blocks, d 256, 4.2M params,
          batch 8 x 64 tokens; fusekit AdamW vs torch AdamW) and Nielsen's convnet (batch 64;
          fusekit ConvReLUMaxPool2d + SGD vs torch layers + SGD), with the optimizer's share
Each candidate gets at least 7 samples, more (up to 200) while they fit in about 1 s.
Every timing is a median with its interquartile range; ratios the spread does not support
are flagged (rule in the legend). Setup costs (torch.compile; DeepSpeed's JIT build, about
4-5 minutes the first time on 2 cores, then cached) are reported apart, never in a ratio.
Progress goes to stderr, results to stdout.

  python -m fusekit.bench --quick --plot bench.png       # every suite, smaller: under a minute on 2 cores
  python -m fusekit.bench --suite optim --workload resnet18 --compile all --out results.json
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import sys
import time

import torch

import fusekit

from . import clip, e2e, layers, lowp, optim, peers, report
from .progress import Progress
from .timing import stream_bandwidth
from .workloads import WORKLOADS

SUITES = ["optim", "lowp", "clip", "layers", "e2e"]


@dataclasses.dataclass
class Config:
    warmup: int = 3
    reps: int = 7          # fewest samples per candidate
    budget_s: float = 1.0  # ... more, up to 200, while each candidate's samples fit in this time


PRESETS = {
    "default": dict(workloads=["gpt2", "nielsen", "tiny148"], compile=["AdamW"], layer_cases=list(layers.CASES),
                    e2e=["gpt", "convnet"], e2e_size="default", cfg=Config()),
    # every suite in a few minutes: the ResNet-18 list instead of GPT-2's, compile for one optimizer
    "quick": dict(workloads=["resnet18", "nielsen", "tiny148"], compile=["AdamW@nielsen"],
                  layer_cases=["conv LeNet-5 C1 1->6 5x5, (64,1,32,32)", "conv LeNet-5 C3 6->16 5x5, (64,6,14,14)",
                               "conv digits 20->40 5x5 pad 2, (32,20,4,4)", "max_pool2d 2x2, (128,64,32,32)",
                               "ConvReLUMaxPool2d 1->20 5x5 + 2x2, (64,1,28,28)"],
                  e2e=["gpt", "convnet"], e2e_size="small", cfg=Config(warmup=2, reps=5, budget_s=0.25)),
    # seconds, for the unit tests: tiny lists and models, torch as the only peer
    "smoke": dict(workloads=["nielsen"], compile=[], layer_cases=["ConvReLUMaxPool2d 1->20 5x5 + 2x2, (64,1,28,28)"],
                  e2e=["gpt", "convnet"], e2e_size="tiny", cfg=Config(warmup=1, reps=3, budget_s=0.01)),
}


def parse(argv):
    ap = argparse.ArgumentParser(prog="python -m fusekit.bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help="every suite, smaller: optimizers on the ResNet-18 (62 tensors, 11.7M params) and Nielsen "
                         "lists, torch.compile for AdamW on Nielsen's list only, DeepSpeed only if already built, "
                         "LeNet convs + 2x2 pool + ConvReLUMaxPool2d, both e2e models (a smaller GPT); 5+ samples")
    ap.add_argument("--smoke", action="store_true", help="a few seconds: tiny sizes, torch only (for tests)")
    ap.add_argument("--suite", choices=SUITES, action="append", help="default: all")
    ap.add_argument("--workload", choices=list(WORKLOADS), action="append",
                    help="parameter lists for optim and clip (default: gpt2, nielsen, tiny148; --quick: resnet18, nielsen, tiny148)")
    ap.add_argument("--optimizer", choices=list(optim.OPTIMIZERS), action="append", help="default: all six")
    ap.add_argument("--peer", choices=peers.PEERS, action="append",
                    help="optimizer peers (default: all importable; 'compile' only for --compile's optimizers)")
    ap.add_argument("--compile", action="append", metavar="NAME[@WORKLOAD]",
                    help="optimizers given a torch.compile peer: a name, NAME@WORKLOAD, 'all' or 'none' "
                         "(default: AdamW; compiling one step takes 15 s to minutes on 2 cores)")
    ap.add_argument("--device", choices=["cpu", "cuda"], action="append",
                    help="default: cpu, plus cuda when fusekit's CUDA kernels and a GPU are available")
    ap.add_argument("--threads", type=int, help="torch.set_num_threads(N) first (fusekit's CPU kernels follow it); "
                                                  "1 keeps a busy machine's descheduled threads out of the ratios")
    ap.add_argument("--max-norm", type=float, default=1.0, help="clip threshold for the clip suite")
    ap.add_argument("--warmup", type=int, help="untimed calls per candidate (default 3)")
    ap.add_argument("--reps", type=int, help="fewest samples per candidate (default 7)")
    ap.add_argument("--budget", type=float, help="seconds per candidate per row; fast cases take more samples "
                                                 "(up to 200) to fill it (default 1.0)")
    ap.add_argument("--out", help="write rows (every sample, spread, ratios) and machine info as JSON")
    ap.add_argument("--plot", metavar="PATH.png", help="draw fusekit's speedup over each peer with its spread")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    return ap.parse_args(argv)


def machine_info(devices) -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor()) if os.path.exists("/proc/cpuinfo") else platform.processor()
    versions = {}
    for mod in ("deepspeed", "bitsandbytes", "apex"):
        m = sys.modules.get(mod)
        if m is not None:
            versions[mod] = getattr(m, "__version__", "?")
    return dict(fusekit_version=fusekit.__version__, fusekit=fusekit.build_info(), torch=torch.__version__,
                python=sys.version.split()[0], machine=platform.machine(), cpu=cpu, cpus=os.cpu_count(),
                threads=torch.get_num_threads(), loadavg=os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
                gpu=torch.cuda.get_device_name() if "cuda" in devices else None, peer_versions=versions)


def _compiles(spec, name: str, workload: str) -> bool:
    return any(s == "all" or s == name or s == f"{name}@{workload}" for s in spec if s != "none")


def plan(args, preset, devices, skipped):
    """The tasks, in order: (label, device, run(status, probe) -> row, weight). The weight
    (about the task's share of the run: millions of parameters times candidates) paces the
    progress bar, so its time estimate is not led by the many tiny tasks."""
    cfg, suites = preset["cfg"], args.suite or SUITES
    names = args.optimizer or list(optim.OPTIMIZERS)
    workloads = args.workload or preset["workloads"]
    compile_spec = args.compile or preset["compile"]
    wanted = args.peer or (["torch"] if args.smoke else [p for p in peers.PEERS if p != "compile"])
    size = {wl: max(1.0, sum(math.prod(s) for s in WORKLOADS[wl]()) / 1e6) for wl in workloads}
    tasks = []
    for device in devices:
        avail = peers.available(device)
        use = []
        for p in wanted:
            if p == "compile":
                continue
            if avail[p]:
                skipped.append(dict(device=device, peer=p, why=avail[p]))
            elif p == "deepspeed" and args.quick and not args.peer and not peers.deepspeed_built():
                skipped.append(dict(device=device, peer=p, why="--quick: its CPU ops are not built yet (the first "
                                    "use JIT-compiles them for minutes); run once without --quick"))
            else:
                use.append(p)
        if args.peer and "compile" not in args.peer:
            compile_spec = ["none"]
        tasks.append((f"{device} streaming probe", device, lambda st, pr, d=device: stream_bandwidth(d), 2))
        if "optim" in suites:
            for wl in workloads:
                for n in names:
                    ps = use + (["compile"] if _compiles(compile_spec, n, wl) else [])
                    tasks.append((f"optim {wl} {n}", device,
                                  lambda st, pr, d=device, wl=wl, n=n, ps=ps: optim.run(wl, d, n, ps, cfg, pr, st),
                                  size[wl] * (2 + len(ps)) + 30 * ("compile" in ps)))
        if "lowp" in suites and device == "cpu":  # low-precision state runs on the CPU only so far
            for wl in (w for w in workloads if w != "tiny148"):  # state bytes are the point: real sizes
                for case in lowp.CASES:
                    tasks.append((f"lowp {wl} {case}", device,
                                  lambda st, pr, d=device, wl=wl, c=case, u=use: lowp.run(wl, d, c, u, cfg, pr, st),
                                  size[wl] * (3 + 10 * ("bitsandbytes" in use and case == "AdamW8bit"))))
        if "clip" in suites:
            for wl in workloads:
                for case in clip.CASES:
                    tasks.append((f"clip {wl} {case}", device,
                                  lambda st, pr, d=device, wl=wl, c=case: clip.run(wl, d, c, cfg, args.max_norm),
                                  2 * size[wl]))
        if "layers" in suites:
            for case in preset["layer_cases"]:
                tasks.append((f"layers {case}", device, lambda st, pr, d=device, c=case: layers.run(d, c, cfg), 3))
        if "e2e" in suites:
            for m in preset["e2e"]:
                tasks.append((f"e2e {m}", device,
                              lambda st, pr, d=device, m=m: e2e.run(m, d, cfg, preset["e2e_size"]), 10))
    return tasks


def main(argv=None) -> int:
    t_start = time.perf_counter()
    args = parse(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    preset = dict(PRESETS["smoke" if args.smoke else "quick" if args.quick else "default"])
    preset["cfg"] = dataclasses.replace(preset["cfg"], **{k: v for k, v in dict(
        warmup=args.warmup, reps=args.reps, budget_s=args.budget).items() if v is not None})
    devices = args.device or (["cpu"] + (["cuda"] if fusekit.cuda_available() and torch.cuda.is_available() else []))
    skipped: list[dict] = []
    tasks = plan(args, preset, devices, skipped)
    info = machine_info(devices)
    prog = Progress([t[3] for t in tasks], enabled=not args.no_progress)
    prog.print(report.header(info))
    for s in skipped:
        prog.print(f"# peer {s['peer']} ({s['device']}) skipped: {s['why']}")
    rows, probes = [], {}
    try:
        for label, device, run, _ in tasks:
            prog.status(label)
            t0 = time.perf_counter()
            try:
                result = run(prog.status, probes.get(device))
            except Exception as e:  # a peer that cannot run here must not end the whole run
                prog.print(f"\n{label}: failed: {type(e).__name__}: {e}")
                skipped.append(dict(device=device, task=label, why=f"{type(e).__name__}: {e}"))
                result = None
            if isinstance(result, float):
                probes[device] = result
                prog.print(f"\n## {device}: streaming probe (a = a*s + b, two 256 MiB arrays, best of 10) "
                           f"{result:.1f} GB/s")
            elif result is not None:
                result["task_s"] = time.perf_counter() - t0  # setup, compiles and timing together
                rows.append(result)
                prog.print("\n" + report.block(result))
            prog.advance()
    finally:
        prog.close()
    info.update(machine_info(devices) | dict(loadavg_start=info["loadavg"]))
    info.update(probe_gbs=probes, wall_s=time.perf_counter() - t_start, config=dataclasses.asdict(preset["cfg"]),
                skipped=skipped)
    print("\n" + report.legend(), flush=True)
    print(report.summary(rows) + f"; wall time {info['wall_s']:.0f} s, load avg {info['loadavg_start']:.1f} at "
          f"start, {info['loadavg']:.1f} at end", flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(dict(info=info, rows=rows), f, indent=1)
        print(f"wrote {args.out}", flush=True)
    if args.plot:
        from .plot import plot

        plot(rows, args.plot, title=report.header(info))
        print(f"wrote {args.plot}", flush=True)
    return 0
