"""Nielsen's two networks ("Neural Networks and Deep Learning", chapters 1-3 and 6) on fusekit.

    python examples/nielsen_digits.py [--quick] [--out DIR] [--seed N] [--mnist PATH]

1. The [n, 30, 10] sigmoid network (n = 64 on the 8x8 digits, 784 on MNIST) trained by
   mini-batch SGD with fusekit.optim.SGD.
2. His convolutional network: 5x5 convolutions with 20 feature maps and 2x2 max-pooling,
   a second such layer with 40 maps, ReLU, a 100-unit fully connected layer with dropout,
   L2 weight decay; built from fusekit.nn.ConvReLUMaxPool2d (layer 1), fusekit.nn.Conv2d +
   fusekit.nn.MaxPool2d (layer 2), trained with fusekit.optim.SGD (momentum), LinearWarmup
   and clipping inside the step (max_grad_norm).

Each network is trained twice, side by side: on fusekit, and built from torch.nn/torch.optim
(torch.optim.lr_scheduler.LinearLR for the warmup, torch.nn.utils.clip_grad_norm_ for the
clipping), with the same initial weights, the same mini-batch order and the same dropout
masks. Epochs alternate between the two, and the medians of the per-epoch wall-clock times
are reported: a measurement of this run on this machine, not a benchmark.

Writes to --out: mlp.png and convnet.png (loss/accuracy per epoch, both implementations),
convnet_grad_norms.png (fusekit's grad-norm telemetry) and summary.json.
"""
from __future__ import annotations

import statistics
import time

import torch

import _data
import _report as R
import fusekit.nn as fnn
import fusekit.optim as fo

# The MLP: Nielsen's ch. 1 uses the quadratic cost with eta = 3.0; this example takes his ch. 3 choice,
# softmax outputs with the log-likelihood (cross-entropy) cost, which does not slow down when
# outputs saturate. On the digits both reach ~96% after 30 epochs of 10-image batches;
# cross-entropy at eta = 0.5 gets there faster (93% validation after 4 epochs against 91%).
MLP = dict(hidden=30, lr=0.5, batch=10)
# The convnet: SGD with momentum 0.9 on 32-image batches; L2 decay on the weights only, as
# Nielsen regularises weights and not biases; dropout 0.5 before the output layer as in his
# ch. 6; a 60-step linear warmup (under 10% of the steps, as the tuning playbook advises).
# The clipping threshold, 2.0, sits near the 90th percentile of this network's gradient norms
# over the first 570 steps on the digits (the --quick run: median 0.88, p90 2.3); the norms
# fall later (median 0.10 over the last 1000 steps of a full run), so clipping trims the
# early spikes only.
CONV = dict(lr=0.05, momentum=0.9, weight_decay=5e-4, batch=32, dropout=0.5, warmup=60, max_grad_norm=2.0)


def mlp(n_in: int) -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Linear(n_in, MLP["hidden"]), torch.nn.Sigmoid(),
                               torch.nn.Linear(MLP["hidden"], 10))


def convnet(side: int, fused: bool) -> torch.nn.Module:
    """On 28x28 MNIST the 5x5 convolutions are unpadded, exactly Nielsen's shapes:
    28 -conv-> 24 -pool-> 12 -conv-> 8 -pool-> 4, i.e. 40x4x4 features. On the 8x8 digits
    an unpadded 5x5 convolution would leave 4x4 maps and no room for the second layer, so
    both convolutions pad by 2 ('same'): 8 -> 8 -> 4 -> 4 -> 2, i.e. 40x2x2 features.
    ReLU and max-pooling commute (ReLU is monotonic), so pooling first, as Nielsen's
    network3.py does, gives the same network."""
    pad = 2 if side < 28 else 0
    s = (side + 2 * pad - 4) // 2
    s = (s + 2 * pad - 4) // 2
    if fused:
        features = [fnn.ConvReLUMaxPool2d(1, 20, 5, padding=pad, pool_size=2),
                    fnn.Conv2d(20, 40, 5, padding=pad), torch.nn.ReLU(), fnn.MaxPool2d(2)]
    else:
        features = [torch.nn.Conv2d(1, 20, 5, padding=pad), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
                    torch.nn.Conv2d(20, 40, 5, padding=pad), torch.nn.ReLU(), torch.nn.MaxPool2d(2)]
    return torch.nn.Sequential(*features, torch.nn.Flatten(), torch.nn.Linear(40 * s * s, 100), torch.nn.ReLU(),
                               torch.nn.Dropout(CONV["dropout"]), torch.nn.Linear(100, 10))


class Run:
    """One model, its optimizer and schedule; .epoch() trains on the given batch order."""

    def __init__(self, model, opt, sched=None, clip=None):
        self.model, self.opt, self.sched, self.clip = model, opt, sched, clip
        self.history = {"train_loss": [], "val_loss": [], "val_acc": []}
        self.seconds = []

    def epoch(self, x, y, batches) -> None:
        model, opt = self.model, self.opt
        model.train()
        total = 0.0
        t0 = time.perf_counter()
        for idx in batches:
            loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            if self.clip is not None:
                self.clip(model.parameters())
            opt.step()
            if self.sched is not None:
                self.sched.step()
            total += loss.item() * len(idx)
        self.seconds.append(time.perf_counter() - t0)
        self.history["train_loss"].append(total / len(y))

    def validate(self, x, y) -> None:
        loss, acc = R.evaluate(self.model, x, y)
        self.history["val_loss"].append(loss)
        self.history["val_acc"].append(acc)


def train_side_by_side(name: str, runs: dict, data: _data.Splits, epochs: int, batch: int, seed: int,
                       images: bool) -> None:
    """Both runs see the same batch order and the same dropout masks (the global RNG is
    re-seeded before each epoch of each run); the run that goes first alternates, so neither
    always starts with the caches as the other left them."""
    prep = data.images if images else (lambda t: t)
    x_tr, x_val = prep(data.x_train), prep(data.x_val)
    order = list(runs)
    for e in range(epochs):
        g = torch.Generator().manual_seed(seed * 100003 + e)
        batches = torch.randperm(len(data.y_train), generator=g).split(batch)
        for key in (order if e % 2 == 0 else order[::-1]):
            torch.manual_seed(seed * 100003 + e)
            runs[key].epoch(x_tr, data.y_train, batches)
            runs[key].validate(x_val, data.y_val)
        fk, th = runs["fusekit"], runs["torch"]
        R.say(f"{name} epoch {e + 1}/{epochs}: val acc fusekit {fk.history['val_acc'][-1]:.3f} "
              f"torch {th.history['val_acc'][-1]:.3f}; epoch s fusekit {fk.seconds[-1]:.3f} torch {th.seconds[-1]:.3f}")


def make_mlp_runs(data: _data.Splits) -> dict:
    ref = mlp(data.side ** 2)
    fk = mlp(data.side ** 2)
    fk.load_state_dict(ref.state_dict())
    return {"fusekit": Run(fk, fo.SGD(fk.parameters(), lr=MLP["lr"])),
            "torch": Run(ref, torch.optim.SGD(ref.parameters(), lr=MLP["lr"]))}


def _groups(model: torch.nn.Module) -> list:
    decay = [p for p in model.parameters() if p.dim() > 1]
    rest = [p for p in model.parameters() if p.dim() <= 1]
    return [{"params": decay, "weight_decay": CONV["weight_decay"]}, {"params": rest, "weight_decay": 0.0}]


def make_conv_runs(data: _data.Splits) -> dict:
    ref = convnet(data.side, fused=False)
    fk = convnet(data.side, fused=True)
    fk_params, ref_params = list(fk.parameters()), list(ref.parameters())
    assert [p.shape for p in fk_params] == [p.shape for p in ref_params]  # same layers; Sequential indices differ
    with torch.no_grad():
        for a, b in zip(fk_params, ref_params):
            a.copy_(b)
    w = CONV["warmup"]
    fk_opt = fo.SGD(_groups(fk), lr=CONV["lr"], momentum=CONV["momentum"], max_grad_norm=CONV["max_grad_norm"])
    th_opt = torch.optim.SGD(_groups(ref), lr=CONV["lr"], momentum=CONV["momentum"])
    # LinearLR from 1/w over w-1 steps gives step k (1..w) lr * k / w: LinearWarmup's ramp.
    th_sched = torch.optim.lr_scheduler.LinearLR(th_opt, start_factor=1.0 / w, total_iters=w - 1)
    clip = CONV["max_grad_norm"]
    return {"fusekit": Run(fk, fk_opt, fo.lr_scheduler.LinearWarmup(fk_opt, warmup_steps=w)),
            "torch": Run(ref, th_opt, th_sched, clip=lambda ps: torch.nn.utils.clip_grad_norm_(ps, clip))}


def timing(runs: dict) -> dict:
    """Medians over epochs (the first epoch of each is dropped as warm-up when there are more)."""
    out = {}
    for key, run in runs.items():
        s = run.seconds[1:] if len(run.seconds) > 2 else run.seconds
        out[key] = statistics.median(s)
        out[key + "_range"] = [min(s), max(s)]
    out["torch_over_fusekit"] = out["torch"] / out["fusekit"]
    return out


def plot(path: str, title: str, runs: dict) -> None:
    def series(key):  # torch dashed: the two implementations' curves lie on top of each other
        return {name: (range(1, len(r.history[key]) + 1), r.history[key], {"ls": "--" if name == "torch" else "-"})
                for name, r in runs.items()}

    train = {f"{n} train": xy for n, xy in series("train_loss").items()}
    val = {f"{n} validation": xy for n, xy in series("val_loss").items()}
    R.plot_panels(path, title, [("cross-entropy", {**train, **val}, {"log": True}),
                                ("validation accuracy", series("val_acc"), {"ylim": (0.0, 1.0)})])


def main() -> None:
    ap = R.parser(__doc__, "nielsen_out")
    args = ap.parse_args()
    R.setup(args)
    data = _data.for_args(args)
    R.say(f"{data.name}: {data.sizes()}, {torch.get_num_threads()} thread(s)")
    mlp_epochs, conv_epochs = (10, 15) if args.quick else (30, 40 if data.name == "digits" else 20)

    results = {}
    for name, make, epochs, batch, images in (("mlp", make_mlp_runs, mlp_epochs, MLP["batch"], False),
                                              ("convnet", make_conv_runs, conv_epochs, CONV["batch"], True)):
        torch.manual_seed(args.seed)
        runs = make(data)
        train_side_by_side(name, runs, data, epochs, batch, args.seed, images)
        x_test = data.images(data.x_test) if images else data.x_test
        acc = {k: R.evaluate(r.model, x_test, data.y_test)[1] for k, r in runs.items()}
        results[name] = (runs, acc, epochs)
        R.say(f"{name} test accuracy: fusekit {acc['fusekit']:.4f}, torch {acc['torch']:.4f}")
        plot(f"{args.out}/{name}.png", f"{name} on {data.name}: fusekit vs torch (same init and batches)", runs)
    conv_opt = results["convnet"][0]["fusekit"].opt
    print(conv_opt.grad_norms.summary(), flush=True)
    conv_opt.grad_norms.plot(f"{args.out}/convnet_grad_norms.png")

    summary = {
        "dataset": data.name, "split": data.sizes(), "seed": args.seed, "quick": args.quick,
        "mlp_accuracy": results["mlp"][1]["fusekit"],
        "convnet_accuracy": results["convnet"][1]["fusekit"],
        "torch_reference_accuracy": {k: v[1]["torch"] for k, v in results.items()},
        "epochs": {k: v[2] for k, v in results.items()},
        "epoch_seconds": {k: timing(v[0]) for k, v in results.items()},
        "epoch_seconds_note": ("wall-clock seconds per training epoch measured in this run (median over epochs, "
                               "fusekit and torch epochs alternating, same init/batches/dropout masks, "
                               f"{torch.get_num_threads()} thread(s)); a measurement of this run, not a benchmark"),
        "convnet_clipped_fraction": conv_opt.grad_norms.clipped_fraction(),
        "convnet_grad_norm_p90": conv_opt.grad_norms.percentile(90),
        "hyperparameters": {"mlp": MLP, "convnet": CONV},
        "seconds_total": R.elapsed(),
    }
    for k, v in summary["epoch_seconds"].items():
        R.say(f"{k}: epoch seconds fusekit {v['fusekit']:.4f}, torch {v['torch']:.4f} "
              f"(torch/fusekit {v['torch_over_fusekit']:.2f}x, this run)")
    R.write_summary(args.out, summary)


if __name__ == "__main__":
    main()
