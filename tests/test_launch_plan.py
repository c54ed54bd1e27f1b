"""CPU test of the CUDA launch geometry: the chunk table, its packing into launches and the
blocks' walk over it (computed by the kernels' own index functions, run on the host) cover
every element of every tensor exactly once, within the launch limits."""
import random

import pytest

from fusekit import _C

INT32_MAX = 2**31 - 1


def covered(numels, chunks, chunk):
    seen = {}
    for t, start, length in chunks:
        assert 0 < length <= chunk
        assert start % chunk == 0, "chunks start on the chunk grid"
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
    covered(numels, _C.build_chunks(numels, chunk), chunk)


def test_chunk_plan_is_recut_when_sizes_or_chunk_change():
    plan = _C.ChunkPlan()
    # each call (same list, new numels, new chunk length, fewer tensors) gets build_chunks' cut
    for numels, chunk in [([5, 9, 0], 4), ([5, 9, 0], 4), ([5, 10, 0], 4), ([5, 10, 0], 3), ([5, 10], 3),
                          ([5, 10, 0, 2], 3), ([], 3), ([7], 16384)]:
        assert plan.get(numels, chunk) == _C.build_chunks(numels, chunk), (numels, chunk)


def chunk_for(numels):
    return 16384 if sum(numels) < 10**7 else 2**22


@pytest.mark.parametrize("numels", SIZES + RANDOM[:1])
@pytest.mark.parametrize("max_entries,max_chunks", [(_C.table_entries, INT32_MAX), (1, 1), (3, 5), (48, 7)])
@pytest.mark.parametrize("grid", [1, 5, 528])
def test_blocks_cover_every_element_once(numels, max_entries, max_chunks, grid):
    chunk = chunk_for(numels)
    flat = []
    for blocks in _C.launch_schedule(numels, chunk, max_entries, max_chunks, grid):
        counts = [len(b) for b in blocks]
        assert 0 < len(blocks) <= grid
        assert all(c > 0 for c in counts) and max(counts) - min(counts) <= 1, "balanced to one chunk"
        assert sum(counts) <= max_chunks
        tensors = {t for b in blocks for t, _, _ in b}
        assert len(tensors) <= max_entries
        for b in blocks:  # a block's chunks are consecutive in tensor order
            assert b == sorted(b)
        flat.extend(w for b in blocks for w in b)
    covered(numels, flat, chunk)


def test_one_launch_for_many_chunks():
    """Chunks are implicit in the table: only the tensor count splits launches (GPT-2-like
    list: 148 tensors, 124M float32 elements, 64 KiB chunks)."""
    numels = [random.Random(1).randint(1, 2_000_000) for _ in range(148)]
    numels[0] = 38_597_376  # the embedding
    launches = _C.launch_schedule(numels, 16384, _C.table_entries, INT32_MAX, 528)
    assert len(launches) == 1
    assert sum(len(b) for b in launches[0]) == sum((n + 16383) // 16384 for n in numels)
    many = _C.launch_schedule([5] * 600, 16384, _C.table_entries, INT32_MAX, 528)
    assert len(many) == 3  # 256 + 256 + 88 tensors


def test_chunk_size_is_bytes_based():
    assert _C.chunk_elems(0) * 4 == _C.chunk_elems(1) * 8 == _C.chunk_elems(2) * 2


def test_launch_limits_are_validated():
    with pytest.raises(ValueError, match="launch limits must be >= 0"):
        _C.set_launch_limits(-1, 0)
    with pytest.raises(ValueError, match="max_entries exceeds the table size"):
        _C.launch_schedule([1], 16, _C.table_entries + 1, 5, 1)
