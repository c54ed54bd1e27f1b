"""python -m fusekit.bench: fusekit against torch in the same run (ratios of medians).

    python -m fusekit.bench                       # optimizers, GPT-2-small + Nielsen, CPU (+CUDA)
    python -m fusekit.bench --workload resnet18 --device cpu --reps 20 --out results.json
"""
from __future__ import annotations

import argparse
import json
import platform
import sys

import torch

import fusekit

from . import clip, layers, optim
from .timing import stream_bandwidth
from .workloads import WORKLOADS


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m fusekit.bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--suite", choices=["optim", "clip", "layers"], action="append",
                    help="optim: each optimizer's step; clip: clip_grad_norm_ and clipping inside AdamW; "
                         "layers: conv2d / max_pool2d / ConvReLUMaxPool2d forward+backward (default: all)")
    ap.add_argument("--max-norm", type=float, default=1.0, help="clip threshold for the clip suite")
    ap.add_argument("--workload", choices=list(WORKLOADS), action="append",
                    help="parameter list(s) (default: gpt2 and nielsen)")
    ap.add_argument("--device", choices=["cpu", "cuda"], action="append",
                    help="default: cpu, plus cuda when fusekit's CUDA kernels and a GPU are available")
    ap.add_argument("--optimizer", choices=list(optim.OPTIMIZERS), action="append")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--out", help="write the rows and machine info as JSON here")
    args = ap.parse_args(argv)

    devices = args.device or (["cpu"] + (["cuda"] if fusekit.cuda_available() and torch.cuda.is_available() else []))
    workloads = args.workload or ["gpt2", "nielsen"]
    names = args.optimizer or list(optim.OPTIMIZERS)
    suites = args.suite or ["optim", "clip", "layers"]
    info = dict(fusekit=fusekit.build_info(), python=sys.version.split()[0], machine=platform.machine(),
                processor=platform.processor(), threads=torch.get_num_threads(),
                gpu=torch.cuda.get_device_name() if "cuda" in devices else None)
    print(f"# fusekit {fusekit.__version__} | torch {torch.__version__} | cpu isa {info['fusekit']['cpu_isa']} | "
          f"threads {info['threads']}" + (f" | gpu {info['gpu']}" if info["gpu"] else ""))
    rows = []
    for device in devices:
        probe = stream_bandwidth(device)
        print(f"\n## {device}: streaming probe (a = a*s + b) {probe:.1f} GB/s")
        for wl in workloads:
            reps = args.reps * (5 if wl == "nielsen" else 1)
            if "optim" in suites:
                res = optim.run(wl, device, names, args.warmup, reps, probe)
                print(f"\n{wl} ({res[0]['tensors']} tensors, {res[0]['params'] / 1e6:.2f}M params), optimizer "
                      f"step, medians of {reps}")
                print(f"{'optimizer':<9} {'torch impl':<10} {'torch ms':>10} {'fusekit ms':>11} {'speedup':>8} "
                      f"{'GB/s':>7} {'of probe':>9}")
                for r in res:
                    r["probe_gbs"] = probe
                    print(f"{r['optimizer']:<9} {r['torch_impl']:<10} {r['torch_ms']:>10.3f} {r['fusekit_ms']:>11.3f} "
                          f"{r['speedup']:>7.2f}x {r['fusekit_gbs']:>7.1f} {r['bw_fraction']:>8.0%}")
                rows += res
            if "clip" in suites:
                res = clip.run(wl, device, args.warmup, reps, args.max_norm)
                print(f"\n{wl}: clipping by global norm (max_norm={args.max_norm}), medians of {reps}")
                print(f"{'what':<26} {'torch':<32} {'torch ms':>10} {'fusekit ms':>11} {'speedup':>8}")
                for r in res:
                    print(f"{r['optimizer']:<26} {r['torch_impl']:<32} {r['torch_ms']:>10.3f} {r['fusekit_ms']:>11.3f} "
                          f"{r['speedup']:>7.2f}x")
                rows += res
        if "layers" in suites:
            res = layers.run(device, args.warmup, max(3, args.reps // 2))
            print("\nlayers, forward + backward, medians (of reps samples each)")
            print(f"{'what':<50} {'torch ms':>10} {'fusekit ms':>11} {'speedup':>8} {'reps':>5}")
            for r in res:
                print(f"{r['optimizer']:<50} {r['torch_ms']:>10.3f} {r['fusekit_ms']:>11.3f} {r['speedup']:>7.2f}x "
                      f"{r['reps']:>5}")
            rows += res
    if args.out:
        with open(args.out, "w") as f:
            json.dump(dict(info=info, rows=rows), f, indent=1)
        print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
