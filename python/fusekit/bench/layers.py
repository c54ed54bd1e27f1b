"""Layer benchmarks, forward + backward, against torch (oneDNN on the CPU) in the same run:
LeNet-5's two convolutions at batch 64, a CIFAR-style 64->64 3x3 convolution at batch 64 (and,
beyond the goals, a stride-2 and a depthwise 3x3 convolution),
max_pool2d 2x2 on (128, 64, 32, 32) (NCHW and channels_last), and ConvReLUMaxPool2d against torch's
conv -> relu -> max_pool sequence."""
from __future__ import annotations

import time

import torch

import fusekit.nn.functional as F

from .timing import time_alternating

tf = torch.nn.functional


def _conv_case(name, xs, ws, kw):
    def make(device):
        g = torch.Generator().manual_seed(0)
        x = torch.randn(xs, generator=g).to(device).requires_grad_()
        w = torch.randn(ws, generator=g).to(device).requires_grad_()
        b = torch.randn(ws[:1], generator=g).to(device).requires_grad_()
        return (x, w, b), (lambda t: F.conv2d(*t, **kw)), (lambda t: tf.conv2d(*t, **kw))
    return name, make


def _pool_case(memory_format):
    def make(device):
        x = torch.randn(128, 64, 32, 32, generator=torch.Generator().manual_seed(0)).to(device)
        x = x.contiguous(memory_format=memory_format).requires_grad_()
        return (x,), (lambda t: F.max_pool2d(t[0], 2)), (lambda t: tf.max_pool2d(t[0], 2))
    return make


def _block_case(device):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 1, 28, 28, generator=g).to(device).requires_grad_()
    w = torch.randn(20, 1, 5, 5, generator=g).to(device).requires_grad_()
    b = torch.randn(20, generator=g).to(device).requires_grad_()
    return ((x, w, b), (lambda t: F.conv_relu_max_pool2d(*t)),
            (lambda t: tf.max_pool2d(torch.relu(tf.conv2d(*t)), 2)))


CASES = [
    _conv_case("conv LeNet-5 C1 1->6 5x5, (64,1,32,32)", (64, 1, 32, 32), (6, 1, 5, 5), {}),
    _conv_case("conv LeNet-5 C3 6->16 5x5, (64,6,14,14)", (64, 6, 14, 14), (16, 6, 5, 5), {}),
    _conv_case("conv CIFAR 64->64 3x3 pad 1, (64,64,32,32)", (64, 64, 32, 32), (64, 64, 3, 3), dict(padding=1)),
    # beyond the goals, so users see the other common shapes too
    _conv_case("conv stride-2 64->128 3x3 pad 1, (64,64,32,32)", (64, 64, 32, 32), (128, 64, 3, 3),
               dict(stride=2, padding=1)),
    _conv_case("conv depthwise 32 3x3 pad 1, (32,32,32,32)", (32, 32, 32, 32), (32, 1, 3, 3),
               dict(padding=1, groups=32)),
    ("max_pool2d 2x2, (128,64,32,32)", _pool_case(torch.contiguous_format)),
    ("max_pool2d 2x2 channels_last, (128,64,32,32)", _pool_case(torch.channels_last)),
    ("ConvReLUMaxPool2d 1->20 5x5 + 2x2, (64,1,28,28)", _block_case),
]


def _reps_for(calls, device: str, reps: int, budget_s: float = 0.6) -> int:
    """At least `reps`; more for the fast cases (up to 200), so each candidate runs for about
    budget_s and a millisecond case is a median over enough samples to resist scheduler noise."""
    for call in calls:  # the first call may create torch's primitives or fault memory in
        call()
    if device == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for call in calls:
        call()
    if device == "cuda":
        torch.cuda.synchronize()
    per_call = (time.perf_counter() - t0) / len(calls)
    return max(reps, min(200, int(budget_s / max(per_call, 1e-6))))


def run(device: str, warmup: int, reps: int) -> list[dict]:
    """Rows with the medians in ms and the number of samples each median took (reps)."""
    rows = []
    for name, make in CASES:
        tensors, ours, theirs = make(device)

        def fwd_bwd(fn):
            def call():
                y = fn(tensors)
                y.backward(torch.ones_like(y))
                for t in tensors:
                    t.grad = None
            return call

        fns = {"fusekit": fwd_bwd(ours), "torch": fwd_bwd(theirs)}
        n = _reps_for(list(fns.values()), device, reps)
        med = time_alternating(fns, device, warmup, n)
        rows.append(dict(suite="layers", device=device, optimizer=name, torch_impl="torch.nn.functional", reps=n,
                         fusekit_ms=med["fusekit"] * 1e3, torch_ms=med["torch"] * 1e3,
                         speedup=med["torch"] / med["fusekit"]))
    return rows
