"""Argument parsing of the layer functions (torch.nn.functional's conventions): ints or
pairs, 'same' / 'valid' padding. Rules that depend on the tensors live with the ops
(fusekit/_backend/conv.py, pool.py) and run on real and fake tensors alike."""
from __future__ import annotations

import torch

from .._backend.common import DTYPE_CODES
from ..errors import error


def pair(v, name: str, fn: str) -> tuple[int, int]:
    """An int or a sequence of one or two ints -> (a, b), as torch reads it: a wrong type
    raises TypeError, a sequence of another length RuntimeError (torch's types)."""
    t = (v,) if isinstance(v, int) else tuple(v) if isinstance(v, (tuple, list, torch.Size)) else None
    if t is None or not all(isinstance(x, int) and not isinstance(x, bool) for x in t):
        raise TypeError(f"{fn}(): argument '{name}' must be an int or a tuple of two ints, got {v!r}")
    if len(t) == 1:
        t = (t[0], t[0])
    if len(t) != 2:  # torch says "kernel_size must either be a single int, or a tuple of two ints" and the like
        raise RuntimeError(f"{fn}: expected {name} to be a single integer value or a list of 2 values, got {v!r}")
    return t


def check_input_dim(x: torch.Tensor, fn: str) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{fn}(): argument 'input' must be a Tensor, got {type(x).__name__}")
    if x.dim() not in (3, 4):
        msg = f"Expected 3D (unbatched) or 4D (batched) input to {fn}, but got input of size: {list(x.shape)}"
        # torch's avg_pool2d fails indexing dimension -3 there: an IndexError
        raise error(msg, RuntimeError, IndexError) if fn == "avg_pool2d" and x.dim() < 3 else RuntimeError(msg)


def torch_handles(*tensors) -> bool:
    """Operands fusekit's kernels do not take go to torch's own implementation, which
    defines the result: integer, bool or complex dtypes, meta mixed with another device,
    and inputs without channels (torch's conv2d returns an empty tensor then)."""
    ts = [t for t in tensors if t is not None]
    if any(t.dtype not in DTYPE_CODES for t in ts):
        return True
    devices = {t.device.type for t in ts}
    if "meta" in devices and len(devices) > 1:
        return True
    x = ts[0]
    return x.dim() in (3, 4) and x.shape[-3] == 0


def conv_padding(padding, kernel, stride, dilation, fn: str):
    """(padding pair, extra) where extra is the (right, bottom) padding torch adds for an
    even total in padding='same'."""
    if isinstance(padding, str):
        if padding == "valid":
            return (0, 0), (0, 0)
        if padding == "same":
            if stride != (1, 1):
                raise RuntimeError(f"{fn}: padding='same' is not supported for strided convolutions")
            total = [dilation[i] * (kernel[i] - 1) for i in range(2)]
            p = (total[0] // 2, total[1] // 2)
            return p, (total[1] - 2 * p[1], total[0] - 2 * p[0])
        raise RuntimeError(f"{fn}: Invalid padding string: {padding!r} (should be 'valid' or 'same')")
    return pair(padding, "padding", fn), (0, 0)


def pool_args(kernel_size, stride, padding, dilation, fn: str):
    k = pair(kernel_size, "kernel_size", fn)
    if isinstance(kernel_size, (tuple, list)) and len(kernel_size) == 0:
        raise RuntimeError(f"{fn}: kernel_size must either be a single int, or a tuple of two ints")
    empty_stride = stride is None or (isinstance(stride, (tuple, list)) and len(stride) == 0)
    s = k if empty_stride else pair(stride, "stride", fn)
    return k, s, pair(padding, "padding", fn), pair(dilation, "dilation", fn)
