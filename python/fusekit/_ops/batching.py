"""vmap helpers for the layer ops: fold a vmapped dimension into the batch (N) or into
the channel groups of a convolution, else loop over it."""
from __future__ import annotations

import torch


def to_front(t, bdim, size):
    """t with its vmapped dimension first; an unbatched t is expanded to `size` copies."""
    if bdim is None:
        return t.unsqueeze(0).expand(size, *t.shape)
    return t.movedim(bdim, 0)


def fold_n(t, bdim, size):
    """(.., B, N, C, H, W) -> (B*N, C, H, W)."""
    t = to_front(t, bdim, size)
    return t.reshape(size * t.shape[1], *t.shape[2:])


def unfold_n(t, size):
    """(B*N, ...) -> (B, N, ...)."""
    return t.reshape(size, t.shape[0] // size, *t.shape[1:])


def fold_channels(t, bdim, size):
    """(.., B, N, C, H, W) -> (N, B*C, H, W): batch b's channels become group block b."""
    t = to_front(t, bdim, size).movedim(0, 1)
    return t.reshape(t.shape[0], size * t.shape[2], *t.shape[3:])


def unfold_channels(t, size):
    """(N, B*C, H, W) -> (B, N, C, H, W)."""
    return t.reshape(t.shape[0], size, t.shape[1] // size, *t.shape[2:]).movedim(1, 0)


def fold_out_channels(w, bdim, size):
    """(.., B, Co, Ci/g, kh, kw) -> (B*Co, Ci/g, kh, kw)."""
    w = to_front(w, bdim, size)
    return w.reshape(size * w.shape[1], *w.shape[2:])


def loop(op, info, in_dims, args):
    """The general rule: the op once per vmapped index, results stacked on dim 0."""
    outs = []
    for b in range(info.batch_size):
        outs.append(op(*[a.select(d, b) if d is not None else a for a, d in zip(args, in_dims)]))
    if isinstance(outs[0], tuple):
        return tuple(torch.stack(o) for o in zip(*outs)), tuple(0 for _ in outs[0])
    return torch.stack(outs), 0
