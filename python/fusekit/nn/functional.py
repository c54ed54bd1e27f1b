"""fusekit.nn.functional: drop-ins for torch.nn.functional's conv2d and pooling.

Same signatures and semantics as torch 2.13: 3-D (unbatched) and 4-D inputs, float32 /
float64 / float16 / bfloat16 (half types accumulate in float32), outputs and gradients in
the memory format torch gives. Each call is a fusekit:: custom op under an autograd
Function (nn/_autograd.py), so these work under torch.compile, torch.export, torch.func,
the meta device and double backward.
"""
from __future__ import annotations

import torch

from .._backend.common import memory_format
from .._backend.conv import fused_block_applies
from . import _autograd as A
from ._args import check_input_dim, conv_padding, pair, pool_args, torch_handles

tf = torch.nn.functional

__all__ = ["conv2d", "conv_relu_max_pool2d", "max_pool2d", "avg_pool2d"]


def _batched(x: torch.Tensor, fn: str):
    check_input_dim(x, fn)
    return (x, False) if x.dim() == 4 else (x.unsqueeze(0), True)


def _conv_args(input, weight, stride, padding, dilation, groups, fn):
    if not isinstance(weight, torch.Tensor):
        raise TypeError(f"{fn}(): argument 'weight' must be a Tensor, got {type(weight).__name__}")
    if not isinstance(groups, int) or isinstance(groups, bool):
        raise TypeError(f"{fn}(): argument 'groups' must be an int, got {type(groups).__name__}")
    s, d = pair(stride, "stride", fn), pair(dilation, "dilation", fn)
    if weight.dim() != 4:
        raise RuntimeError(f"{fn}: expected a 4-D weight (out_channels, in_channels/groups, kH, kW), got "
                           f"{weight.dim()}-D weight of shape {tuple(weight.shape)}")
    p, extra = conv_padding(padding, tuple(weight.shape[2:]), s, d, fn)
    x, unbatched = _batched(input, fn)
    if any(extra):  # torch pads the odd element of 'same' padding on the bottom/right
        x = tf.pad(x, (0, extra[0], 0, extra[1]))
    return x, unbatched, (s, p, d, groups)


def conv2d(input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, stride=1, padding=0,
           dilation=1, groups: int = 1) -> torch.Tensor:
    """torch.nn.functional.conv2d (padding may be an int, a pair, 'same' or 'valid')."""
    check_input_dim(input, "conv2d")
    if torch_handles(input, weight, bias):
        return tf.conv2d(input, weight, bias, stride, padding, dilation, groups)
    x, unbatched, geom = _conv_args(input, weight, stride, padding, dilation, groups, "conv2d")
    cl = memory_format(x, weight) == torch.channels_last
    y = A.fn("Conv2d").apply(x, weight, bias, *geom, cl)
    return y.squeeze(0) if unbatched else y


def conv_relu_max_pool2d(input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, stride=1,
                         padding=0, dilation=1, groups: int = 1, pool_size=2, pool_stride=None) -> torch.Tensor:
    """max_pool2d(relu(conv2d(input, weight, bias, ...)), pool_size, pool_stride), fused on the
    CPU (the convolution output is never stored); composed from fusekit's conv2d, relu and
    max_pool2d elsewhere (CUDA, meta, channels_last) and for empty batches."""
    fn = "conv_relu_max_pool2d"
    check_input_dim(input, fn)
    k = pair(pool_size, "pool_size", fn)
    ps = k if pool_stride is None else pair(pool_stride, "pool_stride", fn)
    if torch_handles(input, weight, bias):
        return tf.max_pool2d(torch.relu(tf.conv2d(input, weight, bias, stride, padding, dilation, groups)), k, ps)
    x, unbatched, geom = _conv_args(input, weight, stride, padding, dilation, groups, fn)
    if fused_block_applies(x, weight):
        y = A.fn("ConvReLUMaxPool2d").apply(x, weight, bias, *geom, k, ps)[0]
    else:
        y = max_pool2d(torch.relu(conv2d(x, weight, bias, *geom)), k, ps)
    return y.squeeze(0) if unbatched else y


def max_pool2d(input: torch.Tensor, kernel_size, stride=None, padding=0, dilation=1, ceil_mode: bool = False,
               return_indices: bool = False):
    """torch.nn.functional.max_pool2d: the same values and indices (ties take the first
    maximum in the window, NaN propagates as in torch)."""
    check_input_dim(input, "max_pool2d")
    if torch_handles(input):
        return tf.max_pool2d(input, kernel_size, stride, padding, dilation, ceil_mode, return_indices)
    k, s, p, d = pool_args(kernel_size, stride, padding, dilation, "max_pool2d")
    x, unbatched = _batched(input, "max_pool2d")
    out, arg = A.fn("MaxPool2d").apply(x, k, s, p, d, bool(ceil_mode), bool(return_indices))
    if unbatched:
        out, arg = out.squeeze(0), arg.squeeze(0)
    return (out, arg) if return_indices else out


def avg_pool2d(input: torch.Tensor, kernel_size, stride=None, padding=0, ceil_mode: bool = False,
               count_include_pad: bool = True, divisor_override=None):
    """torch.nn.functional.avg_pool2d."""
    check_input_dim(input, "avg_pool2d")
    if divisor_override is not None and (isinstance(divisor_override, bool) or not isinstance(divisor_override, int)):
        raise TypeError(f"avg_pool2d(): argument 'divisor_override' must be int, got {divisor_override!r}")
    if torch_handles(input):
        return tf.avg_pool2d(input, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override)
    k, s, p, _ = pool_args(kernel_size, stride, padding, 1, "avg_pool2d")
    if divisor_override == 0:
        raise RuntimeError("avg_pool2d: divisor must be not zero (divisor_override=0)")
    x, unbatched = _batched(input, "avg_pool2d")
    y = A.fn("AvgPool2d").apply(x, k, s, p, bool(ceil_mode), bool(count_include_pad), divisor_override)
    return y.squeeze(0) if unbatched else y
