"""fusekit.nn: drop-ins for torch.nn pieces: pooling layers (fusekit.nn.MaxPool2d,
AvgPool2d), their functional forms (fusekit.nn.functional) and the clipping utilities
(fusekit.nn.utils)."""
from . import functional, utils
from .modules import AvgPool2d, MaxPool2d

__all__ = ["functional", "utils", "MaxPool2d", "AvgPool2d"]
