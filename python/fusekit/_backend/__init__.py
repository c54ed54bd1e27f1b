"""The one boundary between torch tensors and the C++/CUDA kernels (architecture.md §2.1, §2.6).

Only this package turns tensors into kernel arguments (pointers, byte sizes, dtype codes,
devices, streams) and calls fusekit._C's kernels: common.py (what every call shares),
conv.py and pool.py (layers), optim.py (optimizer steps and their cached tables), norm.py
(norms and gradient scaling). The native entry points re-check every size they are given.
"""
from .common import (DTYPE_CODES, as_real, build_info, cuda_available, current_stream, device_index, flat_compatible,
                     is_dense, local, memory_format, new_output, real_dtype)

__all__ = ["DTYPE_CODES", "as_real", "build_info", "cuda_available", "current_stream", "device_index", "flat_compatible",
           "is_dense",
           "local", "memory_format", "new_output", "real_dtype"]
