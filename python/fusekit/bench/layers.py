"""Layer suite, forward + backward, against torch (oneDNN on the CPU) in the same run:
LeNet-5's two convolutions at batch 64, a CIFAR-style 64->64 3x3 convolution at batch 64 (and
a stride-2 and a depthwise 3x3 convolution), max_pool2d 2x2 on (128, 64, 32, 32) (NCHW and
channels_last), and ConvReLUMaxPool2d against torch's conv -> relu -> max_pool sequence."""
from __future__ import annotations

import torch

import fusekit.nn.functional as F

from .candidates import Candidate, measure

tf = torch.nn.functional


def _conv_case(xs, ws, kw):
    def make(device):
        g = torch.Generator().manual_seed(0)
        x = torch.randn(xs, generator=g).to(device).requires_grad_()
        w = torch.randn(ws, generator=g).to(device).requires_grad_()
        b = torch.randn(ws[:1], generator=g).to(device).requires_grad_()
        return (x, w, b), (lambda t: F.conv2d(*t, **kw)), (lambda t: tf.conv2d(*t, **kw))
    return make


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


CASES = {
    "conv LeNet-5 C1 1->6 5x5, (64,1,32,32)": _conv_case((64, 1, 32, 32), (6, 1, 5, 5), {}),
    "conv LeNet-5 C3 6->16 5x5, (64,6,14,14)": _conv_case((64, 6, 14, 14), (16, 6, 5, 5), {}),
    "conv CIFAR 64->64 3x3 pad 1, (64,64,32,32)": _conv_case((64, 64, 32, 32), (64, 64, 3, 3), dict(padding=1)),
    "conv stride-2 64->128 3x3 pad 1, (64,64,32,32)": _conv_case((64, 64, 32, 32), (128, 64, 3, 3),
                                                                  dict(stride=2, padding=1)),
    "conv depthwise 32 3x3 pad 1, (32,32,32,32)": _conv_case((32, 32, 32, 32), (32, 1, 3, 3),
                                                              dict(padding=1, groups=32)),
    # maps of a few pixels: the digits convnet's second layer (examples/nielsen_digits.py)
    "conv digits 20->40 5x5 pad 2, (32,20,4,4)": _conv_case((32, 20, 4, 4), (40, 20, 5, 5), dict(padding=2)),
    "max_pool2d 2x2, (128,64,32,32)": _pool_case(torch.contiguous_format),
    "max_pool2d 2x2 channels_last, (128,64,32,32)": _pool_case(torch.channels_last),
    "ConvReLUMaxPool2d 1->20 5x5 + 2x2, (64,1,28,28)": _block_case,
}


def run(device: str, case: str, cfg) -> dict:
    tensors, ours, theirs = CASES[case](device)

    def fwd_bwd(fn):
        def call():
            y = fn(tensors)
            y.backward(torch.ones_like(y))
            for t in tensors:
                t.grad = None
        return call

    cands = [Candidate("fusekit", fwd_bwd(ours), extra=dict(peer="fusekit")),
             Candidate("torch", fwd_bwd(theirs), extra=dict(peer="torch"))]
    return measure(dict(suite="layers", case=case, workload=None, device=device), cands, device,
                   cfg.warmup, cfg.reps, cfg.budget_s)
