"""fusekit's kernels as torch.library custom ops in the `fusekit::` namespace (architecture.md §2.6).

Each op has a CPU and a CUDA implementation (python/fusekit/_backend: tensors -> kernel
arguments), a fake implementation (shapes only: meta tensors, torch.compile, export) and a
vmap rule. Autograd lives one level up, in new-style autograd.Functions over these ops
(fusekit/nn/_autograd.py), which compose with torch.func and double backward. Ops never
see DTensors: callers pass local shards.
"""
from . import layers, optim  # noqa: F401  (registration)
from .library import lib

__all__ = ["lib"]
