"""fusekit.nn: drop-ins for torch.nn pieces: Conv2d and pooling layers (fusekit.nn.Conv2d,
MaxPool2d, AvgPool2d), their functional forms (fusekit.nn.functional) and the clipping utilities
(fusekit.nn.utils)."""
from . import functional, utils
from .modules import AvgPool2d, Conv2d, ConvReLUMaxPool2d, MaxPool2d

__all__ = ["functional", "utils", "Conv2d", "ConvReLUMaxPool2d", "MaxPool2d", "AvgPool2d"]
