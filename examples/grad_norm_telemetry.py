"""Train a small MLP on synthetic data with warmup, AutoClip and grad-norm telemetry.

    python examples/grad_norm_telemetry.py [--out docs/grad_norms.png]

Writes the norm-vs-step + histogram plot and prints the playbook summary. The data are made
here (no downloads): a 784-30-10 sigmoid network, as in Nielsen's book, on a random
teacher network's labels.
"""
import argparse

import torch

import fusekit.optim as fo
from fusekit.optim.lr_scheduler import LinearWarmup


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="grad_norms.png")
    ap.add_argument("--steps", type=int, default=600)
    args = ap.parse_args()
    torch.manual_seed(0)
    teacher = torch.nn.Linear(784, 10)
    x = torch.randn(4096, 784)
    y = teacher(x).argmax(1)
    model = torch.nn.Sequential(torch.nn.Linear(784, 30), torch.nn.Sigmoid(), torch.nn.Linear(30, 10))
    opt = fo.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01,
                   max_grad_norm=fo.AutoClip(percentile=90, history=200, min_history=50))
    sched = LinearWarmup(opt, warmup_steps=50,
                         after=torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=args.steps - 50))
    for step in range(args.steps):
        idx = torch.randint(0, x.shape[0], (64,))
        loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    acc = (model(x).argmax(1) == y).float().mean().item()
    print(f"final loss {loss.item():.3f}, train accuracy {acc:.1%}")
    print(opt.grad_norms.summary())
    print("plot:", opt.grad_norms.plot(args.out))


if __name__ == "__main__":
    main()
