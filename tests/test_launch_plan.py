"""CPU test of the CUDA launch geometry: the chunk table and its packing into launch
batches cover every element of every tensor exactly once, within the batch limits."""
import random

import pytest

from fusekit import _C


def covered(numels, chunks):
    seen = {}
    for t, start, length in chunks:
        assert 0 < length
        assert 0 <= start and start + length <= numels[t]
        seen.setdefault(t, []).append((start, length))
    for t, n in enumerate(numels):
        spans = sorted(seen.get(t, []))
        pos = 0
        for start, length in spans:
            assert start == pos, f"tensor {t}: gap or overlap at {pos}"
            pos += length
        assert pos == n, f"tensor {t}: covered {pos} of {n}"


SIZES = [
    [0, 1, 7, 4097, 65537],
    [0, 0, 0],
    [],
    [2**31 + 5, 3, 2**33 + 1],  # 64-bit sizes (numbers only, nothing is allocated)
]


RANDOM = [[random.Random(i).choice([0, 1, 5, 999, 70000]) for _ in range(300)] for i in range(3)]
SMALL = [s for s in SIZES + RANDOM if sum(s) < 10**7]
COVER_CASES = [(s, c) for s in SMALL for c in (1, 7, 16384)] + [(s, c) for s in SIZES + RANDOM for c in (2**20, 2**22)]


@pytest.mark.parametrize("numels,chunk", COVER_CASES)
def test_chunks_cover_every_element_once(numels, chunk):
    chunks = _C.build_chunks(numels, chunk)
    covered(numels, chunks)
    assert all(length <= chunk for _, _, length in chunks)


@pytest.mark.parametrize("numels", SIZES + [[random.Random(7).choice([0, 1, 5, 999, 70000]) for _ in range(300)]])
@pytest.mark.parametrize("max_tensors,max_chunks", [(48, 256), (1, 1), (3, 5)])
def test_launch_batches_cover_every_element_once(numels, max_tensors, max_chunks):
    chunk = 16384 if sum(numels) < 10**7 else 2**22
    flat = []
    for tensors, chunks in _C.plan_launches(numels, chunk, max_tensors, max_chunks):
        assert 0 < len(chunks) <= max_chunks
        assert 0 < len(tensors) <= max_tensors
        assert len(set(tensors)) == len(tensors)
        for local, start, length in chunks:
            flat.append((tensors[local], start, length))
    covered(numels, flat)


def test_chunk_size_is_bytes_based():
    assert _C.chunk_elems(0) * 4 == _C.chunk_elems(1) * 8 == _C.chunk_elems(2) * 2
