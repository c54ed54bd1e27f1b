"""Parameter lists the benchmarks run on (architecture.md §5)."""
from __future__ import annotations

import torch


def gpt2_small_shapes() -> list[tuple]:
    """GPT-2 small: 148 tensors, ~124.4M parameters."""
    d, v, ctx, layers = 768, 50257, 1024, 12
    shapes = [(v, d), (ctx, d)]
    for _ in range(layers):
        shapes += [(d,), (d,), (d, 3 * d), (3 * d,), (d, d), (d,), (d,), (d,), (d, 4 * d), (4 * d,), (4 * d, d), (d,)]
    return shapes + [(d,), (d,)]


def resnet18_shapes() -> list[tuple]:
    """ResNet-18: 62 tensors, ~11.7M parameters."""
    shapes = [(64, 3, 7, 7), (64,), (64,)]
    cin = 64
    for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
        for block in range(2):
            shapes += [(cout, cin, 3, 3), (cout,), (cout,), (cout, cout, 3, 3), (cout,), (cout,)]
            if block == 0 and (stride != 1 or cin != cout):
                shapes += [(cout, cin, 1, 1), (cout,), (cout,)]
            cin = cout
    return shapes + [(1000, 512), (1000,)]


def nielsen_shapes() -> list[tuple]:
    """Nielsen's [784, 30, 10] network: 4 tensors, 23,860 parameters."""
    return [(30, 784), (30,), (10, 30), (10,)]


def tiny148_shapes() -> list[tuple]:
    """GPT-2-small's tensor count with 4 elements each: the kernels cost nothing, so the
    step time is the per-step host work (argument tables, dispatch)."""
    return [(4,)] * 148


WORKLOADS = {"gpt2": gpt2_small_shapes, "resnet18": resnet18_shapes, "nielsen": nielsen_shapes,
             "tiny148": tiny148_shapes}


def make_params(shapes, device, dtype=torch.float32, seed=0):
    g = torch.Generator(device="cpu").manual_seed(seed)
    params = []
    for s in shapes:
        p = torch.nn.Parameter(torch.randn(s, generator=g, dtype=torch.float32).mul_(0.02).to(device, dtype))
        p.grad = torch.randn(s, generator=g, dtype=torch.float32).mul_(0.01).to(device, dtype)
        params.append(p)
    return params
