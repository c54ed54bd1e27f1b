"""Argument handling and autograd for max_pool2d / avg_pool2d on fusekit's kernels."""
from __future__ import annotations

import torch

from .. import _C
from .._backend import DTYPE_CODES, is_channels_last, new_output, set_launch

MAX_FWD, MAX_BWD, AVG_FWD, AVG_BWD = 0, 1, 2, 3


def pair(v, name: str) -> tuple:
    if isinstance(v, int):
        return (v, v)
    t = tuple(v)
    if len(t) == 1:
        return (t[0], t[0])
    if len(t) != 2 or not all(isinstance(x, int) for x in t):
        raise ValueError(f"{name} must be an int or a pair of ints, got {v!r}")
    return t


def params(x: torch.Tensor, kernel_size, stride, padding, dilation, ceil_mode: bool, fn: str):
    """Checks everything (before any kernel runs) and returns a _C.Pool2dParams."""
    if x.dim() not in (3, 4):
        raise ValueError(f"{fn}: expected a 3-D (C, H, W) or 4-D (N, C, H, W) input, got {x.dim()}-D")
    if x.dtype not in DTYPE_CODES:
        raise TypeError(f"{fn}: input dtype {x.dtype} is not supported (float32/64, float16, bfloat16)")
    k = pair(kernel_size, "kernel_size")
    s = k if (stride is None or (not isinstance(stride, int) and len(stride) == 0)) else pair(stride, "stride")
    p, d = pair(padding, "padding"), pair(dilation, "dilation")
    if min(k) <= 0:
        raise ValueError(f"{fn}: kernel_size must be positive, got {k}")
    if min(s) <= 0:
        raise ValueError(f"{fn}: stride must be positive, got {s}")
    if min(d) <= 0:
        raise ValueError(f"{fn}: dilation must be positive, got {d}")
    if min(p) < 0 or p[0] > k[0] // 2 or p[1] > k[1] // 2:
        raise ValueError(f"{fn}: padding {p} should be non-negative and at most half of kernel_size {k}")
    h, w = x.shape[-2], x.shape[-1]
    if h == 0 or w == 0:
        raise ValueError(f"{fn}: input spatial size ({h}, {w}) must be non-zero")
    oh = _C_out(h, k[0], s[0], p[0], d[0], ceil_mode)
    ow = _C_out(w, k[1], s[1], p[1], d[1], ceil_mode)
    if oh < 1 or ow < 1:
        raise ValueError(f"{fn}: output size ({oh}, {ow}) is too small for input ({h}, {w}) with kernel_size {k}, "
                         f"padding {p}, dilation {d}")
    q = _C.Pool2dParams()
    n = x.shape[0] if x.dim() == 4 else 1
    q.n, q.c, q.h, q.w, q.oh, q.ow = n, x.shape[-3], h, w, oh, ow
    q.kh, q.kw, q.sh, q.sw, q.ph, q.pw, q.dh, q.dw = *k, *s, *p, *d
    return q


def _C_out(n, k, s, p, d, ceil):
    num = n + 2 * p - d * (k - 1) - 1 + (s - 1 if ceil else 0)
    out = num // s + 1  # Python's // is floor division, torch's div_rtn
    if ceil and (out - 1) * s >= n + p:
        out -= 1
    return out


def run(op: int, q, x=None, out=None, indices=None, grad_out=None, grad_in=None, window_codes=None,
        channels_last=False):
    a = set_launch(_C.PoolArgs(), x if x is not None else grad_out)
    a.q = q
    a.channels_last = channels_last
    for name, t in (("input", x), ("out", out), ("indices", indices), ("grad_out", grad_out), ("grad_in", grad_in),
                    ("window_codes", window_codes)):
        if t is not None:
            setattr(a, name, t.data_ptr())
    _C.pool2d(op, a)


class _Layout:
    """How a pooling call lays out its tensors: the CPU kernels run channels_last (4-D) inputs
    natively in NHWC; CUDA converts them to NCHW and back (torch returns channels_last then)."""

    def __init__(self, x):
        self.cl = is_channels_last(x)
        self.native = self.cl and not x.is_cuda
        self.fmt = torch.channels_last if self.native else torch.contiguous_format

    def dense(self, t):
        return t.contiguous(memory_format=self.fmt)

    def new(self, shape, like, dtype=None):
        return new_output(shape, like, dtype, self.fmt)

    def result(self, y):
        return y.contiguous(memory_format=torch.channels_last) if self.cl and not self.native else y


class MaxPool2dFn(torch.autograd.Function):
    """max_pool2d returning (out, int64 indices), as torch with return_indices=True."""

    @staticmethod
    def forward(ctx, x, q):
        out, idx = _max_forward(ctx, x, q, "indices", torch.int64)
        ctx.mark_non_differentiable(idx)
        return ctx.lay.result(out), ctx.lay.result(idx)

    @staticmethod
    def backward(ctx, grad_out, _grad_idx):
        (idx,) = ctx.saved_tensors
        return _max_backward(ctx, grad_out, indices=idx), None


class MaxPool2dCodesFn(torch.autograd.Function):
    """max_pool2d without indices on the CPU's 2x2/2 path (NCHW or channels_last): saves one
    byte per output (the maximum's place in its window) for backward instead of an int64 index."""

    @staticmethod
    def forward(ctx, x, q):
        out, _ = _max_forward(ctx, x, q, "window_codes", torch.uint8)
        return ctx.lay.result(out)

    @staticmethod
    def backward(ctx, grad_out):
        (codes,) = ctx.saved_tensors
        return _max_backward(ctx, grad_out, window_codes=codes), None


def _max_forward(ctx, x, q, kind: str, dtype):
    """Runs the max-pool forward saving `kind` ("indices" or "window_codes") of dtype for
    backward; returns (out, saved) in the kernel's layout."""
    lay = _Layout(x)
    shape = (*x.shape[:-2], q.oh, q.ow)
    out, arg = lay.new(shape, x), lay.new(shape, x, dtype)
    run(MAX_FWD, q, x=lay.dense(x), out=out, channels_last=lay.native, **{kind: arg})
    ctx.q, ctx.shape, ctx.lay = q, x.shape, lay
    ctx.save_for_backward(arg)
    return out, arg


def _max_backward(ctx, grad_out, **saved):
    lay = ctx.lay
    gin = lay.new(ctx.shape, grad_out)
    run(MAX_BWD, ctx.q, grad_out=lay.dense(grad_out), grad_in=gin, channels_last=lay.native, **saved)
    return lay.result(gin)


def max_pool(x, q, return_indices: bool):
    if not return_indices and not x.is_cuda and _C.pool2d_window_codes(q):
        return MaxPool2dCodesFn.apply(x, q)
    out, idx = MaxPool2dFn.apply(x, q)
    return (out, idx) if return_indices else out


class AvgPool2dFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, q):
        lay = _Layout(x)
        out = lay.new((*x.shape[:-2], q.oh, q.ow), x)
        run(AVG_FWD, q, x=lay.dense(x), out=out, channels_last=lay.native)
        ctx.q, ctx.shape, ctx.lay = q, x.shape, lay
        return lay.result(out)

    @staticmethod
    def backward(ctx, grad_out):
        lay = ctx.lay
        gin = lay.new(ctx.shape, grad_out)
        run(AVG_BWD, ctx.q, grad_out=lay.dense(grad_out), grad_in=gin, channels_last=lay.native)
        return lay.result(gin), None
