"""fusekit: fused optimizer kernels (CUDA + C++ CPU) as drop-ins for torch.optim.

    from fusekit.optim import AdamW        # instead of torch.optim.AdamW
"""
import torch  # noqa: F401  (first: its libgomp is the thread pool the CPU kernels borrow)

from . import _C, _ops  # noqa: F401  (_ops registers the fusekit:: custom ops)
from ._backend import build_info, cuda_available

__version__ = "0.1.0"
__all__ = ["build_info", "cuda_available", "optim", "__version__"]


def __getattr__(name):
    # Submodules load on first use so `import fusekit` stays cheap.
    if name in ("optim", "nn", "clip", "schedule"):
        import importlib

        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'fusekit' has no attribute {name!r}")
