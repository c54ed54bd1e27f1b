"""fusekit.nn: drop-ins for torch.nn pieces (clipping utilities in fusekit.nn.utils)."""
from . import utils

__all__ = ["utils"]
