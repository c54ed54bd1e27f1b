"""fusekit.nn.functional: drop-ins for torch.nn.functional conv2d and pooling.

Same signatures and semantics as torch 2.13; autograd for the input; float32/float64/
float16/bfloat16 (half types accumulate in float32); NCHW and channels_last inputs
(outputs in the memory format torch returns).
"""
from __future__ import annotations

import torch

from .._backend import is_channels_last
from . import _conv, _pool

__all__ = ["conv2d", "conv_relu_max_pool2d", "max_pool2d", "avg_pool2d"]


def conv2d(input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, stride=1, padding=0,
           dilation=1, groups: int = 1) -> torch.Tensor:
    """torch.nn.functional.conv2d (padding may be an int, a pair, 'same' or 'valid')."""
    x, q = _conv.prepare(input, weight, bias, stride, padding, dilation, groups)
    return _conv.Conv2dFn.apply(x, weight, bias, q)


def conv_relu_max_pool2d(input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, stride=1,
                         padding=0, dilation=1, groups: int = 1, pool_size=2, pool_stride=None) -> torch.Tensor:
    """max_pool2d(relu(conv2d(input, weight, bias, ...)), pool_size, pool_stride), fused on
    the CPU (the convolution output is never materialised); composed from fusekit's kernels
    on CUDA, where the fused kernel is still to come."""
    x, q = _conv.prepare(input, weight, bias, stride, padding, dilation, groups)
    probe = torch.empty((1, q.co, q.oh, q.ow), device="meta")  # pooling checks on the conv output shape
    pq = _pool.params(probe, pool_size, pool_stride, 0, 1, False, "conv_relu_max_pool2d")
    pq.n = q.n
    if x.is_cuda or x.dim() != 4 or is_channels_last(x):
        return max_pool2d(torch.relu(conv2d(input, weight, bias, stride, padding, dilation, groups)), pool_size,
                          pool_stride)
    return _conv.ConvReLUMaxPoolFn.apply(x, weight, bias, q, pq)


def max_pool2d(input: torch.Tensor, kernel_size, stride=None, padding=0, dilation=1, ceil_mode: bool = False,
               return_indices: bool = False):
    """torch.nn.functional.max_pool2d: same values and the same indices (ties take the first
    maximum in the window, NaN propagates as in torch)."""
    q = _pool.params(input, kernel_size, stride, padding, dilation, ceil_mode, "max_pool2d")
    return _pool.max_pool(input, q, return_indices)


def avg_pool2d(input: torch.Tensor, kernel_size, stride=None, padding=0, ceil_mode: bool = False,
               count_include_pad: bool = True, divisor_override=None):
    """torch.nn.functional.avg_pool2d."""
    q = _pool.params(input, kernel_size, stride, padding, 1, ceil_mode, "avg_pool2d")
    if divisor_override is not None:
        if int(divisor_override) != divisor_override or divisor_override == 0:
            raise ValueError(f"avg_pool2d: divisor_override must be a non-zero integer, got {divisor_override}")
        q.divisor_override = int(divisor_override)
    q.count_include_pad = bool(count_include_pad)
    return _pool.AvgPool2dFn.apply(input, q)
