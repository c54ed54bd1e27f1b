"""fusekit.nn modules: drop-ins for torch.nn.Conv2d, MaxPool2d and AvgPool2d."""
from __future__ import annotations

import torch

from . import functional as F


class Conv2d(torch.nn.Conv2d):
    """torch.nn.Conv2d on fusekit's kernels: same constructor arguments (padding_mode
    included), parameter names and initialisation, so state_dicts move both ways."""

    def _conv_forward(self, input, weight, bias):
        if self.padding_mode != "zeros":
            input = torch.nn.functional.pad(input, self._reversed_padding_repeated_twice, mode=self.padding_mode)
            return F.conv2d(input, weight, bias, self.stride, 0, self.dilation, self.groups)
        return F.conv2d(input, weight, bias, self.stride, self.padding, self.dilation, self.groups)


class ConvReLUMaxPool2d(torch.nn.Conv2d):
    """max_pool2d(relu(conv2d(x) + b)) as one fused layer. Its parameters are a Conv2d's
    (`weight`, `bias`, same initialisation), so it loads a torch.nn.Conv2d state_dict."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, dilation=1,
                 groups: int = 1, bias: bool = True, pool_size=2, pool_stride=None, device=None, dtype=None) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                         device=device, dtype=dtype)
        self.pool_size = pool_size
        self.pool_stride = pool_size if pool_stride is None else pool_stride

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return F.conv_relu_max_pool2d(input, self.weight, self.bias, self.stride, self.padding, self.dilation,
                                      self.groups, self.pool_size, self.pool_stride)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", pool_size={self.pool_size}, pool_stride={self.pool_stride}"


class MaxPool2d(torch.nn.MaxPool2d):
    """torch.nn.MaxPool2d on fusekit's kernels (same arguments and repr)."""

    def forward(self, input: torch.Tensor):
        return F.max_pool2d(input, self.kernel_size, self.stride, self.padding, self.dilation,
                            ceil_mode=self.ceil_mode, return_indices=self.return_indices)


class AvgPool2d(torch.nn.AvgPool2d):
    """torch.nn.AvgPool2d on fusekit's kernels (same arguments and repr)."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(input, self.kernel_size, self.stride, self.padding, self.ceil_mode,
                            self.count_include_pad, self.divisor_override)
