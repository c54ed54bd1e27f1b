"""What every example shares: its command line, progress lines, summary.json and line plots."""
from __future__ import annotations

import argparse
import json
import math
import os
import time

import torch

_T0 = time.perf_counter()


def parser(description: str, default_out: str) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help="short budget for CI (6-30 s of CPU time per example on this project's 2-core machine)")
    ap.add_argument("--out", default=default_out, help="directory for the PNG plots and summary.json")
    ap.add_argument("--seed", type=int, default=0, help="initialisation, data order and dropout (not the split)")
    ap.add_argument("--mnist", default=None, metavar="PATH",
                    help="MNIST from a local file: Nielsen's mnist.pkl.gz or a directory of the IDX files "
                         "(default: scikit-learn's 8x8 digits)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    return ap


def setup(args) -> None:
    os.makedirs(args.out, exist_ok=True)
    torch.manual_seed(args.seed)
    # One thread by default: on this project's busy 2-core machine, 2 threads made a step of
    # the digits MLP ~10x slower and an epoch of Nielsen's convnet on 10000 28x28 images ~7x
    # slower (39 s against 5.4 s), as OpenMP's barriers wait for a descheduled thread.
    torch.set_num_threads(args.threads)


def say(msg: str) -> None:
    """A progress line with the seconds since start (flushed: the tests read it live)."""
    print(f"[{time.perf_counter() - _T0:6.1f}s] {msg}", flush=True)


def elapsed() -> float:
    return time.perf_counter() - _T0


def finite_or_none(v):
    """JSON has no NaN/inf: non-finite numbers are written as null."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: finite_or_none(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [finite_or_none(x) for x in v]
    return v


def write_summary(out: str, summary: dict) -> str:
    path = os.path.join(out, "summary.json")
    with open(path, "w") as f:
        json.dump(finite_or_none(summary), f, indent=2, allow_nan=False)
        f.write("\n")
    say(f"wrote {path}")
    return path


def plot_panels(path: str, title: str, panels: list, ncols: int | None = None) -> str:
    """One PNG of panels, ncols per row (default: all in one row). Each panel is
    (ylabel, {label: (xs, ys[, style])}, options): style is a dict of matplotlib line options;
    options may hold xlabel, log / logx (log y / x axis) and ylim."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ncols = ncols or len(panels)
    nrows = -(-len(panels) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.5 * ncols, 4 * nrows), squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    for ax, (ylabel, series, opts) in zip(axes.flat, panels):
        for label, (xs, ys, *style) in series.items():
            ax.plot(xs, ys, label=label, **{"lw": 1.2, **(style[0] if style else {})})
        ax.set_xlabel(opts.get("xlabel", "epoch"))
        ax.set_ylabel(ylabel)
        if opts.get("log"):
            ax.set_yscale("log")
        if opts.get("logx"):
            ax.set_xscale("log")
        if "ylim" in opts:
            ax.set_ylim(*opts["ylim"])
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    say(f"wrote {path}")
    return path


@torch.no_grad()
def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 2000) -> tuple:
    """(mean cross-entropy, accuracy) in eval mode (dropout off); the mode is restored."""
    was_training = model.training
    model.eval()
    loss, correct = 0.0, 0
    for i in range(0, len(y), batch):
        out = model(x[i:i + batch])
        loss += torch.nn.functional.cross_entropy(out, y[i:i + batch], reduction="sum").item()
        correct += (out.argmax(1) == y[i:i + batch]).sum().item()
    model.train(was_training)
    return loss / len(y), correct / len(y)
