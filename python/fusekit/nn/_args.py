"""Argument parsing of the layer functions (torch.nn.functional's conventions): ints or
pairs, 'same' / 'valid' padding. Rules that depend on the tensors live with the ops
(fusekit/_backend/conv.py, pool.py) and run on real and fake tensors alike."""
from __future__ import annotations

import torch


def pair(v, name: str, fn: str) -> tuple[int, int]:
    """An int or a sequence of one or two ints -> (a, b); anything else raises TypeError."""
    t = (v,) if isinstance(v, int) else tuple(v) if isinstance(v, (tuple, list, torch.Size)) else None
    if t is not None and len(t) == 1:
        t = (t[0], t[0])
    if t is None or len(t) != 2 or not all(isinstance(x, int) and not isinstance(x, bool) for x in t):
        raise TypeError(f"{fn}(): argument '{name}' must be an int or a tuple of two ints, got {v!r}")
    return t


def check_input_dim(x: torch.Tensor, fn: str) -> None:
    if x.dim() not in (3, 4):
        raise RuntimeError(f"Expected 3D (unbatched) or 4D (batched) input to {fn}, but got input of size: "
                           f"{list(x.shape)}")


def conv_padding(padding, kernel, stride, dilation, fn: str):
    """(padding pair, extra) where extra is the (right, bottom) padding torch adds for an
    even total in padding='same'."""
    if isinstance(padding, str):
        if padding == "valid":
            return (0, 0), (0, 0)
        if padding == "same":
            if stride != (1, 1):
                raise ValueError(f"{fn}: padding='same' is not supported for strided convolutions")
            total = [dilation[i] * (kernel[i] - 1) for i in range(2)]
            p = (total[0] // 2, total[1] // 2)
            return p, (total[1] - 2 * p[1], total[0] - 2 * p[0])
        raise ValueError(f"{fn}: invalid padding string {padding!r}, should be one of {{'valid', 'same'}}")
    return pair(padding, "padding", fn), (0, 0)


def pool_args(kernel_size, stride, padding, dilation, fn: str):
    k = pair(kernel_size, "kernel_size", fn)
    empty_stride = stride is None or (isinstance(stride, (tuple, list)) and len(stride) == 0)
    s = k if empty_stride else pair(stride, "stride", fn)
    return k, s, pair(padding, "padding", fn), pair(dilation, "dilation", fn)
