"""max_pool2d / avg_pool2d: tensors -> PoolArgs.

Output sizes come from the C++ rule (_C.pool_out_size), from the tensors of each call.
Inputs are 4-D. channels_last tensors (torch's suggest_memory_format) run natively in NHWC
on the CPU; CUDA kernels run NCHW and the result is converted back, as torch returns it.
"""
from __future__ import annotations

import torch

from .. import _C
from .common import DTYPE_CODES, check_steps, in_format, memory_format, new_output, set_launch


def check(x, kernel, stride, padding, dilation, fn: str) -> None:
    """The pooling rules (torch's messages and RuntimeError)."""
    if x.dim() != 4:
        raise RuntimeError(f"{fn}: expected a 4-D input (N, C, H, W), got {x.dim()}-D")
    if x.dtype not in DTYPE_CODES:
        raise RuntimeError(f"{fn}: input dtype {x.dtype} is not supported (float32, float64, float16, bfloat16)")
    if x.shape[1] == 0:
        raise RuntimeError(f"{fn}: Expected 3D or 4D (batch mode) tensor with optional 0 dim batch size for input, "
                           f"but got an input of shape {tuple(x.shape)} (0 channels)")
    check_window(kernel, stride, padding, dilation, fn)
    if x.shape[2] == 0 or x.shape[3] == 0:
        raise RuntimeError(f"{fn}: input spatial size ({x.shape[2]}, {x.shape[3]}) must be non-zero")


def check_window(kernel, stride, padding, dilation, fn: str) -> None:
    check_steps(fn, kernel_size=kernel, stride=stride, dilation=dilation)
    if min(padding) < 0 or padding[0] > kernel[0] // 2 or padding[1] > kernel[1] // 2:
        raise RuntimeError(f"{fn}: padding {tuple(padding)} should be non-negative and at most half of kernel_size "
                           f"{tuple(kernel)}")


def out_hw(in_hw, kernel, stride, padding, dilation, ceil_mode, fn: str) -> tuple[int, int]:
    """Output height and width by the C++ rule; raises when a side is empty."""
    oh, ow = (_C.pool_out_size(int(in_hw[i]), kernel[i], stride[i], padding[i], dilation[i], bool(ceil_mode))
              for i in range(2))
    _check_out(oh, ow, in_hw, kernel, padding, dilation, fn)
    return oh, ow


def _check_out(oh, ow, in_hw, kernel, padding, dilation, fn: str) -> None:
    if oh < 1 or ow < 1:
        raise RuntimeError(f"{fn}: output size ({oh}, {ow}) is too small for input {tuple(int(s) for s in in_hw)} "
                           f"with kernel_size {tuple(kernel)}, padding {tuple(padding)}, dilation {tuple(dilation)}")


def params(xshape, kernel, stride, padding, dilation, ceil_mode, fn: str) -> "_C.Pool2dParams":
    """The kernel's parameters, output size by the C++ rule (raises when a side is empty)."""
    n, c, h, w = map(int, xshape)  # int(): symbolic sizes specialise here
    q = _C.Pool2dParams(n, c, h, w, *kernel, *stride, *padding, *dilation, bool(ceil_mode))
    _check_out(q.oh, q.ow, (h, w), kernel, padding, dilation, fn)
    return q


def _codes(x, q, return_indices: bool) -> bool:
    """Max pooling without indices saves 1-byte window codes for backward on the CPU's
    2x2/2 kernels, int64 indices otherwise."""
    return not return_indices and x.device.type == "cpu" and bool(_C.pool2d_window_codes(q))


def arg_dtype(x, kernel, stride, padding, dilation, ceil_mode, return_indices: bool) -> torch.dtype:
    q = params(x.shape, kernel, stride, padding, dilation, ceil_mode, "max_pool2d")
    return torch.uint8 if _codes(x, q, return_indices) else torch.int64


class _Layout:
    """How one call lays out its tensors: NHWC natively on the CPU for channels_last,
    NCHW otherwise (CUDA converts channels_last in and out)."""

    def __init__(self, device: torch.device, channels_last: bool) -> None:
        self.cl = channels_last
        self.native = channels_last and device.type == "cpu"
        self.fmt = torch.channels_last if self.native else torch.contiguous_format

    def dense(self, t):
        return t.contiguous(memory_format=self.fmt)

    def new(self, shape, like, dtype=None):
        return new_output(shape, like, dtype, self.fmt)

    def result(self, y):
        return in_format(y, torch.channels_last) if self.cl and not self.native else y


def _run(op, q, lay, like, **tensors) -> None:
    a = set_launch(_C.PoolArgs(), like)
    a.q = q
    a.channels_last = lay.native
    for name, t in tensors.items():
        setattr(a, name, t.data_ptr())
        setattr(a, name + "_nbytes", t.numel() * t.element_size())
    _C.pool2d(op, a)


def _empty(q) -> bool:
    return q.n == 0 or q.c == 0


def max_forward(x, kernel, stride, padding, dilation, ceil_mode, return_indices: bool):
    """(out, arg): arg is int64 indices (torch's, per plane), or, where no indices are asked
    for and the CPU's 2x2/2 kernels apply, uint8 window codes (see arg_dtype)."""
    check(x, kernel, stride, padding, dilation, "max_pool2d")
    q = params(x.shape, kernel, stride, padding, dilation, ceil_mode, "max_pool2d")
    lay = _Layout(x.device, memory_format(x) == torch.channels_last)
    codes = _codes(x, q, return_indices)
    shape = (q.n, q.c, q.oh, q.ow)
    out, arg = lay.new(shape, x), lay.new(shape, x, torch.uint8 if codes else torch.int64)
    if not _empty(q):
        xd = lay.dense(x)
        _run(_C.PoolOp.MaxForward, q, lay, xd, input=xd, out=out, **{"window_codes" if codes else "indices": arg})
    return lay.result(out), lay.result(arg)


def max_backward(grad_out, arg, x_shape, kernel, stride, padding, dilation, ceil_mode, channels_last: bool):
    q = params(x_shape, kernel, stride, padding, dilation, ceil_mode, "max_pool2d")
    _check_grad_out(grad_out, q, "max_pool2d")
    if tuple(arg.shape) != tuple(grad_out.shape) or arg.dtype not in (torch.int64, torch.uint8):
        raise RuntimeError(f"max_pool2d backward: indices of shape {tuple(arg.shape)} and dtype {arg.dtype} do not "
                           f"match the gradient of shape {tuple(grad_out.shape)}")
    lay = _Layout(grad_out.device, channels_last)
    gin = lay.new(x_shape, grad_out)
    if not _empty(q):
        god, argd = lay.dense(grad_out), lay.dense(arg)
        kind = "window_codes" if arg.dtype == torch.uint8 else "indices"
        _run(_C.PoolOp.MaxBackward, q, lay, god, grad_out=god, grad_in=gin, **{kind: argd})
    return lay.result(gin)


def avg_params(xshape, kernel, stride, padding, ceil_mode, count_include_pad, divisor_override):
    q = params(xshape, kernel, stride, padding, (1, 1), ceil_mode, "avg_pool2d")
    q.count_include_pad = bool(count_include_pad)
    q.divisor_override = 0 if divisor_override is None else int(divisor_override)
    return q


def avg_forward(x, kernel, stride, padding, ceil_mode, count_include_pad, divisor_override):
    check(x, kernel, stride, padding, (1, 1), "avg_pool2d")
    q = avg_params(x.shape, kernel, stride, padding, ceil_mode, count_include_pad, divisor_override)
    lay = _Layout(x.device, memory_format(x) == torch.channels_last)
    out = lay.new((q.n, q.c, q.oh, q.ow), x)
    if not _empty(q):
        xd = lay.dense(x)
        _run(_C.PoolOp.AvgForward, q, lay, xd, input=xd, out=out)
    return lay.result(out)


def avg_backward(grad_out, x_shape, kernel, stride, padding, ceil_mode, count_include_pad, divisor_override,
                 channels_last: bool):
    q = avg_params(x_shape, kernel, stride, padding, ceil_mode, count_include_pad, divisor_override)
    _check_grad_out(grad_out, q, "avg_pool2d")
    lay = _Layout(grad_out.device, channels_last)
    gin = lay.new(x_shape, grad_out)
    if not _empty(q):
        god = lay.dense(grad_out)
        _run(_C.PoolOp.AvgBackward, q, lay, god, grad_out=god, grad_in=gin)
    return lay.result(gin)


def _check_grad_out(grad_out, q, fn: str) -> None:
    if tuple(grad_out.shape) != (q.n, q.c, q.oh, q.ow) or grad_out.dtype not in DTYPE_CODES:
        raise RuntimeError(f"{fn} backward: gradient of shape {tuple(grad_out.shape)} ({grad_out.dtype}) where the "
                           f"output has shape {(q.n, q.c, q.oh, q.ow)}")
