"""Greedy layer-wise pre-training (Goodfellow et al., "Deep Learning", ch. 8 and 15) on fusekit.

    python examples/greedy_pretraining.py [--quick] [--out DIR] [--seed N] [--mnist PATH]

A sigmoid network [n, 64, 32, 10] (n = 64 on the 8x8 digits, 784 on MNIST). Greedy phase:
hidden layer 1 is trained as an autoencoder of the images (its own weights as the encoder,
a throw-away sigmoid decoder, mean squared reconstruction error, fusekit.optim.Adam); it is
then frozen, and hidden layer 2 is trained the same way on layer 1's outputs. Fine-tuning:
an output layer is added and all layers are trained together on the labels (cross-entropy,
fusekit.optim.SGD with momentum, fusekit.nn.utils.clip_grad_norm_ as a guard). The same
network from random initialisation gets the same fine-tuning budget: the same epochs,
optimizer, batch order and initial output layer. Both keep the weights of their best
validation epoch (early stopping, as Goodfellow ch. 7 recommends) for the test score.

What this project's machine measured on the digits (seeds 0-4 --quick, seeds 0-2 full; each
run's summary.json has its own figures): the randomly initialised sigmoid network sits at
chance (8-18% validation accuracy) for its first 2-4 epochs, while its lowest layer's
gradients are 5-60x smaller than the pre-trained network's (epochs 1-3; third panel), and
passes 90% at epoch 9-10; the pre-trained one is at 88-96% after its first epoch. After 60 epochs the pre-trained
network's best validation loss is about half the other's (0.044-0.047 against 0.066-0.092)
and its test accuracy 0.5-1 point higher (97.3-97.7% against 96.3-97.0%, on 300 test images,
where one image is 0.33 points). The unsupervised epochs are not counted in the fine-tuning
budget.

Writes to --out: pretraining.png (reconstruction error per layer), finetuning.png
(validation loss/accuracy and first-layer gradient norm per epoch, both initialisations)
and summary.json.
"""
from __future__ import annotations

import copy

import torch

import _data
import _report as R
import fusekit.optim as fo
from fusekit.nn.utils import clip_grad_norm_, get_total_norm

F = torch.nn.functional
HIDDEN = [64, 32]
AE = dict(lr=1e-2, batch=32)
# momentum 0.9 at lr 0.3: of lr 0.1 and 0.3, tried on the digits for both initialisations, 0.3
# trained both faster. The clip threshold is far above the typical norm: a guard against a
# rare spike, not part of the comparison (no step was clipped in the runs measured; the
# summary records the clipped fraction). clip_grad_norm_ also returns the norm that is plotted.
FINETUNE = dict(lr=0.3, momentum=0.9, batch=32, max_grad_norm=5.0)


def network(n_in: int) -> torch.nn.Sequential:
    sizes = [n_in] + HIDDEN
    mods = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        mods += [torch.nn.Linear(a, b), torch.nn.Sigmoid()]
    return torch.nn.Sequential(*mods, torch.nn.Linear(sizes[-1], 10))


def hidden_layers(net: torch.nn.Sequential) -> list:
    return [m for m in net[:-1] if isinstance(m, torch.nn.Linear)]


def pretrain_layer(enc: torch.nn.Linear, h_train, h_val, epochs: int, gen: torch.Generator) -> dict:
    """Trains `enc` (with a fresh decoder) to reconstruct its inputs h; returns the curves."""
    dec = torch.nn.Linear(enc.out_features, enc.in_features)
    opt = fo.Adam(list(enc.parameters()) + list(dec.parameters()), lr=AE["lr"])

    def recon(h):
        return torch.sigmoid(dec(torch.sigmoid(enc(h))))  # inputs and codes lie in [0, 1]

    curve = {"train": [], "validation": []}
    with torch.no_grad():
        initial = F.mse_loss(recon(h_val), h_val).item()
    for _ in range(epochs):
        total = 0.0
        for idx in torch.randperm(len(h_train), generator=gen).split(AE["batch"]):
            loss = F.mse_loss(recon(h_train[idx]), h_train[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        curve["train"].append(total / len(h_train))
        with torch.no_grad():
            curve["validation"].append(F.mse_loss(recon(h_val), h_val).item())
    # The variance of the inputs: the error of always answering their mean, for scale.
    return {"sizes": [enc.in_features, enc.out_features], "initial_validation_mse": initial,
            "final_train_mse": curve["train"][-1], "final_validation_mse": curve["validation"][-1],
            "input_variance": h_train.var(0).mean().item(), "curve": curve}


def pretrain(net: torch.nn.Sequential, data: _data.Splits, epochs: int, seed: int) -> list:
    gen = torch.Generator().manual_seed(seed)
    h_train, h_val, out = data.x_train, data.x_val, []
    for i, enc in enumerate(hidden_layers(net)):
        rec = pretrain_layer(enc, h_train, h_val, epochs, gen)
        out.append(rec)
        R.say(f"layer {i + 1} {rec['sizes']}: reconstruction MSE {rec['initial_validation_mse']:.4f} -> "
              f"{rec['final_validation_mse']:.4f} (validation; input variance {rec['input_variance']:.4f})")
        with torch.no_grad():  # frozen: the next layer trains on these fixed outputs
            h_train, h_val = torch.sigmoid(enc(h_train)), torch.sigmoid(enc(h_val))
    return out


def finetune(name: str, net: torch.nn.Sequential, data: _data.Splits, epochs: int, seed: int) -> dict:
    opt = fo.SGD(net.parameters(), lr=FINETUNE["lr"], momentum=FINETUNE["momentum"])
    gen = torch.Generator().manual_seed(seed)
    first = list(hidden_layers(net)[0].parameters())
    hist = {"train_loss": [], "val_loss": [], "val_acc": [], "first_layer_grad_norm": [], "grad_norm": []}
    best, best_state, best_epoch, clipped, steps = float("inf"), copy.deepcopy(net.state_dict()), 0, 0, 0
    for e in range(epochs):
        total, g_first, g_all, n_b = 0.0, 0.0, 0.0, 0
        for idx in torch.randperm(len(data.y_train), generator=gen).split(FINETUNE["batch"]):
            loss = F.cross_entropy(net(data.x_train[idx]), data.y_train[idx])
            opt.zero_grad()
            loss.backward()
            g_first += get_total_norm([p.grad for p in first]).item()
            norm = clip_grad_norm_(net.parameters(), FINETUNE["max_grad_norm"]).item()
            clipped += norm > FINETUNE["max_grad_norm"]
            g_all += norm
            opt.step()
            total += loss.item() * len(idx)
            n_b += 1
        steps += n_b
        v_loss, v_acc = R.evaluate(net, data.x_val, data.y_val)
        for k, v in (("train_loss", total / len(data.y_train)), ("val_loss", v_loss), ("val_acc", v_acc),
                     ("first_layer_grad_norm", g_first / n_b), ("grad_norm", g_all / n_b)):
            hist[k].append(v)
        if v_loss < best:
            best, best_state, best_epoch = v_loss, copy.deepcopy(net.state_dict()), e + 1
        R.say(f"{name} epoch {e + 1}/{epochs}: val loss {v_loss:.4f} acc {v_acc:.3f}, "
              f"mean first-layer grad norm {g_first / n_b:.2e}")
    net.load_state_dict(best_state)
    _, test_acc = R.evaluate(net, data.x_test, data.y_test)
    return {"history": hist, "test_accuracy": test_acc, "best_epoch": best_epoch, "best_val_loss": best,
            "clipped_fraction": clipped / steps}


def first_epoch_reaching(acc: list, level: float):
    return next((i + 1 for i, a in enumerate(acc) if a >= level), None)


def plot(out: str, layers: list, runs: dict) -> None:
    panels = [("reconstruction MSE", {f"layer {i + 1} {r['sizes']} {k}": (range(1, len(c) + 1), c)
                                      for i, r in enumerate(layers) for k, c in r["curve"].items()},
               {"log": True, "xlabel": "pre-training epoch"})]
    R.plot_panels(f"{out}/pretraining.png", "greedy phase: each layer as an autoencoder of the one below", panels)

    def series(key):
        return {name: (range(1, len(r["history"][key]) + 1), r["history"][key]) for name, r in runs.items()}

    R.plot_panels(f"{out}/finetuning.png", "fine-tuning: pre-trained vs random initialisation (same budget)",
                  [("validation cross-entropy", series("val_loss"), {"log": True}),
                   ("validation accuracy", series("val_acc"), {"ylim": (0.0, 1.0)}),
                   ("layer-1 gradient norm (epoch mean)", series("first_layer_grad_norm"),
                    {"log": True})])


def main() -> None:
    ap = R.parser(__doc__, "greedy_pretraining_out")
    args = ap.parse_args()
    R.setup(args)
    data = _data.for_args(args)
    R.say(f"{data.name}: {data.sizes()}")
    ae_epochs, ft_epochs = (10, 20) if args.quick else (30, 60)

    torch.manual_seed(args.seed)
    random_net = network(data.side ** 2)
    pretrained_net = copy.deepcopy(random_net)  # same output layer and starting point for the encoders
    layers = pretrain(pretrained_net, data, ae_epochs, args.seed)
    runs = {"pre-trained": finetune("pre-trained", pretrained_net, data, ft_epochs, args.seed),
            "random init": finetune("random init", random_net, data, ft_epochs, args.seed)}
    plot(args.out, layers, runs)

    pre, rnd = runs["pre-trained"], runs["random init"]
    summary = {
        "dataset": data.name, "split": data.sizes(), "seed": args.seed, "quick": args.quick,
        "network": [data.side ** 2] + HIDDEN + [10],
        "pretrained_accuracy": pre["test_accuracy"],
        "random_init_accuracy": rnd["test_accuracy"],
        "reconstruction_losses": [{k: v for k, v in r.items() if k != "curve"} for r in layers],
        "pretraining_epochs_per_layer": ae_epochs, "finetuning_epochs": ft_epochs,
        "finetuning": {name: {"best_epoch": r["best_epoch"], "best_val_loss": r["best_val_loss"],
                              "first_epoch_val_acc_0.9": first_epoch_reaching(r["history"]["val_acc"], 0.9),
                              "val_acc_after_epoch_1": r["history"]["val_acc"][0],
                              "clipped_fraction": r["clipped_fraction"],
                              "val_acc": r["history"]["val_acc"],
                              "first_layer_grad_norm": r["history"]["first_layer_grad_norm"]}
                       for name, r in runs.items()},
        "hyperparameters": {"autoencoder": AE, "finetune": FINETUNE},
        "seconds_total": R.elapsed(),
    }
    R.say(f"test accuracy (best-validation weights): pre-trained {pre['test_accuracy']:.4f}, "
          f"random init {rnd['test_accuracy']:.4f}")
    R.write_summary(args.out, summary)


if __name__ == "__main__":
    main()
