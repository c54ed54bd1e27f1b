"""The norm's one summation order (csrc/include/fusekit/math/norm.h), checked on the CPU:
the CUDA kernel's decomposition (threads owning lane groups of a block, shuffle and shared-
memory trees), replayed on the host with the kernel's own functions, gives the CPU kernels'
bits for every chunk; and both equal an independent NumPy float32 model of the order."""
import math

import numpy as np
import pytest
import torch

import fusekit.nn.utils as fu
from fusekit import _C

CODES = {torch.float32: 0, torch.float64: 1, torch.float16: 2, torch.bfloat16: 3}
CHUNK = 16384
SIZES = [1, 7, 16, 17, 255, 256, 257, 4097, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 300, 5 * CHUNK]


def data(n, dtype, seed, special):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, generator=g, dtype=torch.float64) * torch.exp(torch.randn(n, generator=g, dtype=torch.float64) * 3)
    x = x.to(dtype)
    if special and n > 40:
        idx = torch.randperm(n, generator=g)[:8]
        x[idx[0]] = float("nan")
        x[idx[1]] = float("inf")
        x[idx[2]] = -float("inf")
        x[idx[3]] = -0.0
        x[idx[4]] = torch.finfo(dtype).tiny / 4  # subnormal
        x[idx[5]] = torch.finfo(dtype).max
    return x


def same_bits(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    both_nan = np.isnan(a) & np.isnan(b)
    return bool(np.all(both_nan | (a.view(np.int64) == b.view(np.int64))))


@pytest.mark.parametrize("dtype", list(CODES))
@pytest.mark.parametrize("norm_type", [2.0, 1.0, math.inf, -math.inf, 3.0, 0.5])
@pytest.mark.parametrize("special", [False, True])
def test_gpu_decomposition_gives_the_cpu_bits(dtype, norm_type, special):
    for i, n in enumerate(SIZES):
        x = data(n, dtype, i, special)
        cpu = _C.norm_chunk_partials(x.data_ptr(), n, CODES[dtype], norm_type, False)
        gpu = _C.norm_chunk_partials(x.data_ptr(), n, CODES[dtype], norm_type, True)
        assert len(cpu) == len(gpu) == (n + CHUNK - 1) // CHUNK
        assert same_bits(cpu, gpu), (n, cpu, gpu)


def order_model(x32, kind):
    """The documented order in NumPy float32: lanes over rows, lane tree, block tree."""
    n = x32.size
    e = x32 * x32 if kind == 2 else np.abs(x32)
    nb = (n + 255) // 256
    padded = np.zeros(nb * 256, dtype=np.float32)  # +0: the identity, and lanes never hold -0 here
    padded[:n] = e
    rows = padded.reshape(nb, 16, 16)
    acc = np.zeros((nb, 16), dtype=np.float32)
    for r in range(16):
        acc = acc + rows[:, r, :]
    while acc.shape[1] > 1:
        acc = acc[:, 0::2] + acc[:, 1::2]
    level = list(acc[:, 0])
    while len(level) > 1:
        level = [level[i] + level[i + 1] if i + 1 < len(level) else level[i] for i in range(0, len(level), 2)]
    return np.float32(level[0])


@pytest.mark.parametrize("kind", [1, 2])
@pytest.mark.parametrize("n", [1, 300, CHUNK + 5, 2 * CHUNK, 5 * CHUNK + 1000])
def test_order_matches_an_independent_model(kind, n):
    x = data(n, torch.float32, n, False)
    model = order_model(x.numpy(), kind)
    partials = _C.norm_chunk_partials(x.data_ptr(), n, 0, float(kind), True)
    tree = [np.float32(v) for v in partials]  # chunks are subtrees: continue the tree over them
    while len(tree) > 1:
        tree = [tree[i] + tree[i + 1] if i + 1 < len(tree) else tree[i] for i in range(0, len(tree), 2)]
    assert tree[0].view(np.int32) == model.view(np.int32)
    total = fu.get_total_norm([x], float(kind))
    expect = np.sqrt(model) if kind == 2 else model
    assert total.numpy().view(np.int32) == np.float32(expect).view(np.int32)


def test_replay_rejects_bad_arguments():
    with pytest.raises(ValueError, match="unknown dtype code"):
        _C.norm_chunk_partials(0, 0, 7, 2.0, True)
