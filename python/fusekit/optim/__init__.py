"""Fused drop-ins for torch.optim: swap `torch.optim.X` for `fusekit.optim.X`."""
from ..clip import AutoClip, GradNormMonitor
from . import lr_scheduler
from .adagrad import Adagrad
from .adam import Adam, AdamW
from .eightbit import Adagrad8bit, Adam8bit, AdamW8bit, NAdam8bit, RMSprop8bit, SGD8bit
from ._base import FusedOptimizer
from .nadam import NAdam
from .rmsprop import RMSprop
from .sgd import SGD

__all__ = ["SGD", "Adam", "AdamW", "NAdam", "RMSprop", "Adagrad", "Adam8bit", "AdamW8bit", "NAdam8bit",
           "SGD8bit", "RMSprop8bit", "Adagrad8bit", "FusedOptimizer", "AutoClip", "GradNormMonitor",
           "lr_scheduler"]
