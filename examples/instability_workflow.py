"""The Deep Learning Tuning Playbook's instability workflow on fusekit (DESIGN.md section 3).

    python examples/instability_workflow.py [--quick] [--out DIR] [--seed N] [--seeds K] [--mnist PATH]

1. Sweep the learning rate over a log grid, each for a short budget (median validation loss
   over 3 seeds), and take lr* = the best.
2. Train at 2 x lr*, four ways (the first seed's runs evaluated after every step): plain; with LinearWarmup (10% of the
   steps, the playbook's ceiling); with max_grad_norm fixed at the 90th percentile of the
   plain run's gradient norms; with AutoClip (the 90th percentile of the norms so far). Each
   variant runs with K seeds, because whether a spike happens in one run is a matter of luck.
3. Report each variant's final loss, whether any run diverged, how many runs had loss spikes
   and the fraction of clipped steps; print the playbook's warning when more than half the
   steps clip (the threshold is then a learning-rate cut: lower the learning rate instead).

The model: an 8-layer ReLU MLP (128 units each, He initialisation, no normalisation, no
residual connections) trained by full-batch gradient descent with momentum 0.9 on the digits.
What this project's machine measured (each run's summary.json has its own figures):
  - full run, seeds 0-4 (lr* = 0.016, runs at 0.032 for 500 steps): every plain run's
    training loss spikes to 2.4-5.5x its initial value, first at steps 15-19, and their median
    final validation loss is 0.31; with the fixed threshold (1.3-4.1, clipping 9% of the
    steps) no run spikes and the median validation loss is 0.093; with AutoClip 2 of 5 runs
    spike (0.095); with warmup 4 of 5 (0.22): it only delays the spikes (first at steps 33-36
    of its 50-step ramp), so this instability is not one of the first steps, which is what
    warmup cures;
  - --quick, seeds 0-1 (lr* = 0.01, 100 steps at 0.02): spikes in both plain runs and in one
    or both warmup runs (it varied between runs of the example), in neither run with either
    kind of clipping.
The example records what happens in its own run; nothing in it is staged.

Writes to --out: instability.png (the sweep; loss and gradient-norm curves of the first
seed's four runs; the largest loss of every run), grad_norms_max_grad_norm.png and
grad_norms_autoclip.png (opt.grad_norms.plot of the first seed's clipped runs), summary.json.
"""
from __future__ import annotations

import math
import statistics

import torch

import _data
import _report as R
import fusekit.optim as fo
from fusekit.optim.lr_scheduler import LinearWarmup

F = torch.nn.functional
MODEL = dict(depth=8, width=128)
# Full-batch gradient descent with momentum on the digits (batch None = the whole training
# set): the usable learning rate is then set by the loss surface's curvature, not by gradient
# noise, so the sweep's best lr lies near the edge of stability and 2 x lr* crosses it. With
# 512-image batches the same model spiked at 2 x lr* in only 2 of 5 runs (full run, seeds 0-4).
TRAIN = dict(momentum=0.9, batch=None, sweep_steps=50, sweep_seeds=3)
SPIKE = 1.5  # a step whose training loss exceeds 1.5 x the initial loss is a spike
# AutoClip clips nothing until min_history norms are recorded; the spikes come from step ~15.
AUTOCLIP = dict(percentile=90.0, history=1000, min_history=10)
VARIANTS = ("plain", "warmup", "max_grad_norm", "autoclip")
PLAYBOOK_WARNING = ("more than half of the updates were clipped: the threshold is acting as a learning-rate cut; "
                    "lower the learning rate instead (Deep Learning Tuning Playbook)")


def mlp(n_in: int) -> torch.nn.Sequential:
    mods, a = [], n_in
    for _ in range(MODEL["depth"]):
        mods += [torch.nn.Linear(a, MODEL["width"]), torch.nn.ReLU()]
        a = MODEL["width"]
    net = torch.nn.Sequential(*mods, torch.nn.Linear(a, 10))
    for m in net:  # He initialisation: torch's default shrinks the signal at each ReLU layer,
        if isinstance(m, torch.nn.Linear):  # and 8 such layers barely train at all
            torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            torch.nn.init.zeros_(m.bias)
    return net


def train(data: _data.Splits, lr: float, steps: int, seed: int, warmup: int = 0, max_grad_norm=None,
          every_step: bool = True) -> dict:
    """`steps` SGD steps from the seed's initialisation and batch order, with the validation
    loss after every step (or only at the end). Stops at the first non-finite loss."""
    torch.manual_seed(seed)
    net = mlp(data.x_train.shape[1])
    opt = fo.SGD(net.parameters(), lr=lr, momentum=TRAIN["momentum"], max_grad_norm=max_grad_norm,
                 track_grad_norm=True, grad_norm_history=max(steps, 1000))
    sched = LinearWarmup(opt, warmup_steps=warmup) if warmup else None
    gen = torch.Generator().manual_seed(seed)
    batch = TRAIN["batch"] or len(data.y_train)
    train_loss, val_loss = [], []

    def validate():
        with torch.no_grad():
            val_loss.append(F.cross_entropy(net(data.x_val), data.y_val).item())

    while len(train_loss) < steps and (not train_loss or math.isfinite(train_loss[-1])):
        for idx in torch.randperm(len(data.y_train), generator=gen).split(batch):
            loss = F.cross_entropy(net(data.x_train[idx]), data.y_train[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            if sched is not None:
                sched.step()
            train_loss.append(loss.item())
            if every_step:
                validate()
            if not math.isfinite(train_loss[-1]) or len(train_loss) == steps:
                break
    if not every_step:
        validate()
    return {"train_loss": train_loss, "val_loss": val_loss, "opt": opt}


def sweep(data: _data.Splits, grid: list, seeds: list) -> dict:
    """Validation loss after the short budget, the median over `seeds` (a diverged run counts
    as +inf): near the edge of stability one run's loss depends on whether a spike fell just
    before the budget ran out, so a single seed's lr* jumps around."""
    out = {}
    for lr in grid:
        vals = []
        for seed in seeds:
            r = train(data, lr, TRAIN["sweep_steps"], seed, every_step=False)
            v = r["val_loss"][-1]
            vals.append(v if math.isfinite(r["train_loss"][-1]) and math.isfinite(v) else math.inf)
        out[lr] = statistics.median(vals)
        R.say(f"sweep lr {lr:.3g}: validation loss after {TRAIN['sweep_steps']} steps, median of {len(seeds)} seeds "
              f"{out[lr]:.4f} (" + ", ".join(f"{v:.3f}" for v in vals) + ")")
    return out


def describe(run: dict) -> dict:
    """One run's figures (non-finite values become null in summary.json)."""
    losses, opt = run["train_loss"], run["opt"]
    initial = losses[0]
    finite = all(math.isfinite(v) for v in losses)
    tail = losses[-20:]
    final = sum(tail) / len(tail) if finite else math.nan
    spikes = [i + 1 for i, v in enumerate(losses) if not math.isfinite(v) or v > SPIKE * initial]
    return {"steps_run": len(losses), "initial_loss": initial,
            "final_loss": final,  # mean training loss of the last 20 steps
            "final_val_loss": run["val_loss"][-1] if finite else math.nan,
            "diverged": (not finite) or final >= initial,  # non-finite, or no net progress (e.g. dead ReLUs)
            "max_loss": max(losses) if finite else math.inf,
            "spike_steps": len(spikes), "first_spike": spikes[0] if spikes else None,
            "clipped_fraction": opt.grad_norms.clipped_fraction(), "grad_norm_p90": opt.grad_norms.percentile(90)}


def aggregate(per_seed: list) -> dict:
    """A variant over its seeds: medians of the losses, counts of the bad runs."""
    finite_final = [d["final_loss"] for d in per_seed if math.isfinite(d["final_loss"])]
    frac = statistics.mean(d["clipped_fraction"] for d in per_seed)
    return {"final_loss": statistics.median(finite_final) if finite_final else math.nan,
            "final_val_loss": statistics.median(d["final_val_loss"] if math.isfinite(d["final_val_loss"]) else math.inf
                                                for d in per_seed),
            "diverged": any(d["diverged"] for d in per_seed),
            "diverged_runs": sum(d["diverged"] for d in per_seed),
            "runs_with_spikes": sum(d["spike_steps"] > 0 for d in per_seed),
            "max_loss": max(d["max_loss"] for d in per_seed),
            "clipped_fraction": frac,
            "warning": PLAYBOOK_WARNING if frac > 0.5 else None,
            "per_seed": per_seed}


def plot(out: str, sw: dict, lr_star: float, first: dict, report: dict) -> None:
    lrs = sorted(sw)
    finite = [v for v in sw.values() if math.isfinite(v)]
    steps = {n: range(1, len(r["train_loss"]) + 1) for n, r in first.items()}
    norms = {n: r["opt"].grad_norms.values().tolist() for n, r in first.items()}
    thr = first["max_grad_norm"]["opt"].max_grad_norm
    n_max = max(len(s) for s in steps.values())
    seeds = [d["seed"] for d in report["plain"]["per_seed"]]
    dot = {"marker": "o", "ls": ""}
    peaks = {n: ([x + 0.08 * (i - 1.5) for x in seeds], [d["max_loss"] for d in a["per_seed"]], dot)
             for i, (n, a) in enumerate(report.items())}  # side by side at each seed
    initial = [d["initial_loss"] for d in report["plain"]["per_seed"]]
    peaks[f"{SPIKE} x initial loss"] = (seeds, [SPIKE * v for v in initial], {"ls": "--", "color": "k"})
    R.plot_panels(f"{out}/instability.png", f"instability workflow: lr* = {lr_star:.3g}, runs at 2 x lr*", [
        ("validation loss after the sweep budget",
         {"sweep (median of seeds)": (lrs, [sw[k] for k in lrs], {"marker": "o"}),
          "lr*": ([lr_star], [sw[lr_star]], {"marker": "*", "ms": 14, "ls": ""}),
          "2 x lr*": ([2 * lr_star] * 2, [min(finite), max(finite)], {"ls": ":", "color": "k"})},
         {"xlabel": "learning rate", "log": True, "logx": True}),
        ("training loss (mini-batch), first seed", {n: (steps[n], r["train_loss"]) for n, r in first.items()},
         {"xlabel": "step", "log": True}),
        ("validation loss, first seed", {n: (steps[n], r["val_loss"]) for n, r in first.items()},
         {"xlabel": "step", "log": True}),
        ("unclipped global gradient norm, first seed",
         {**{n: (range(1, len(v) + 1), v, {"lw": 0.8}) for n, v in norms.items()},
          "fixed threshold": ([1, n_max], [thr, thr], {"ls": "--", "color": "k"})}, {"xlabel": "step", "log": True}),
        ("largest training loss of the run", peaks, {"xlabel": "seed", "log": True}),
    ], ncols=2)
    first["max_grad_norm"]["opt"].grad_norms.plot(f"{out}/grad_norms_max_grad_norm.png")
    first["autoclip"]["opt"].grad_norms.plot(f"{out}/grad_norms_autoclip.png")


def main() -> None:
    ap = R.parser(__doc__, "instability_out")
    ap.add_argument("--seeds", type=int, default=None, help="runs per variant at 2 x lr* (default 2 quick, 5 full)")
    ap.add_argument("--batch", type=int, default=None,
                    help="mini-batch size (default: the whole training set on the digits, 1024 on MNIST)")
    args = ap.parse_args()
    R.setup(args)
    data = _data.for_args(args)
    TRAIN["batch"] = args.batch or (None if data.name == "digits" else 1024)
    R.say(f"{data.name}: {data.sizes()}, batch {TRAIN['batch'] or 'full'}")
    # 5.6e-3 .. 0.056 in quarter decades for --quick; 1e-3 .. 0.26 in half-octaves (x sqrt 2) otherwise.
    grid = [10 ** (k / 4) for k in range(-9, -4)] if args.quick else [1e-3 * 2 ** (k / 2) for k in range(17)]
    steps = 100 if args.quick else 500  # the playbook: ~500 steps; the spikes here start at steps 15-40
    seeds = [args.seed + i for i in range(args.seeds or (2 if args.quick else 5))]
    sw = sweep(data, grid, [args.seed + i for i in range(TRAIN["sweep_seeds"])])
    lr_star = min(grid, key=sw.get)
    edge = lr_star in (grid[0], grid[-1])
    notes = ["lr* is at the edge of the grid: extend the sweep before trusting it"] if edge else []
    lr, warmup = 2 * lr_star, steps // 10
    R.say(f"lr* = {lr_star:.4g}; training at 2 x lr* = {lr:.4g} for {steps} steps, seeds {seeds}")

    per_seed = {v: [] for v in VARIANTS}
    first = None
    for seed in seeds:
        curves = first is None  # the validation loss of every step is drawn for the first seed only
        runs = {"plain": train(data, lr, steps, seed, every_step=curves)}
        threshold = runs["plain"]["opt"].grad_norms.percentile(90)
        runs["warmup"] = train(data, lr, steps, seed, warmup=warmup, every_step=curves)
        runs["max_grad_norm"] = train(data, lr, steps, seed, max_grad_norm=threshold, every_step=curves)
        runs["autoclip"] = train(data, lr, steps, seed, max_grad_norm=fo.AutoClip(**AUTOCLIP), every_step=curves)
        for name, r in runs.items():
            d = describe(r)
            d["seed"] = seed
            if name == "max_grad_norm":
                d["threshold"] = threshold
            per_seed[name].append(d)
        R.say(f"seed {seed}: " + "; ".join(f"{n} max loss {per_seed[n][-1]['max_loss']:.3g}, final val "
                                           f"{per_seed[n][-1]['final_val_loss']:.3g}" for n in VARIANTS))
        first = first or runs
    report = {name: aggregate(ds) for name, ds in per_seed.items()}
    for name, a in report.items():
        R.say(f"{name:>13}: spikes in {a['runs_with_spikes']}/{len(seeds)} runs (largest loss {a['max_loss']:.3g}), "
              f"diverged {a['diverged_runs']}/{len(seeds)}, median final loss {a['final_loss']:.3g}, median "
              f"validation loss {a['final_val_loss']:.3g}, clipped {a['clipped_fraction']:.1%} of steps")
        if a["warning"]:
            print(f"WARNING ({name}): {a['warning']}", flush=True)
    for name in ("max_grad_norm", "autoclip"):
        print(f"{name}, seed {seeds[0]}: {first[name]['opt'].grad_norms.summary()}", flush=True)
    plot(args.out, sw, lr_star, first, report)
    summary = {
        "dataset": data.name, "split": data.sizes(), "seed": args.seed, "seeds": seeds, "quick": args.quick,
        "model": MODEL, "training": TRAIN, "autoclip": AUTOCLIP,
        "sweep": {"grid": grid, "validation_loss": [sw[k] for k in grid], "budget_steps": TRAIN["sweep_steps"]},
        "lr_star": lr_star, "lr": lr, "steps": steps, "warmup_steps": warmup,
        "clip_threshold": "90th percentile of the same seed's plain run's gradient norms (per_seed.threshold)",
        "spike_definition": f"training loss > {SPIKE} x the initial loss",
        "runs": report,
        "warnings": [f"{n}: {a['warning']}" for n, a in report.items() if a["warning"]] + notes,
        "seconds_total": R.elapsed(),
    }
    R.write_summary(args.out, summary)


if __name__ == "__main__":
    main()
