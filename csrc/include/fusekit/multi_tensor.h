// The one chunk table of every CUDA multi-tensor launch (optimizer steps, grad ops, norms;
// the TensorListMetadata of PyTorch's MultiTensorApply.cuh) and the index math that walks
// it. The table travels as one __grid_constant__ kernel parameter. Chunks are implicit: an
// entry is a run of chunks of one tensor and chunk_end[] its cumulative count, so a launch
// carries any number of chunks; only the entry count (kTableEntries) splits launches.
// Block b of a grid of g handles a contiguous range of the launch's chunks, so it meets few
// tensors and per-tensor work (device-side coefficients) is done once per block and tensor.
// Everything here but the table's use in a kernel is host code or FK_HOST_DEVICE, so the
// CPU tests walk exactly what the kernels walk (launch_schedule()).
#pragma once
#include <cstdint>
#include <tuple>
#include <vector>

#include "fusekit/launch_plan.h"
#include "fusekit/macros.h"

namespace fusekit {

constexpr int kTableEntries = 256;
constexpr int kMaxKernelParamBytes = 32764;  // CUDA >= 12.1 on Volta and newer

template <int K, class Extra> struct ChunkTable {
  void* ptr[K][kTableEntries];         // slot k of entry e, at the tensor's element 0
  int64_t numel[kTableEntries];
  int64_t first_chunk[kTableEntries];  // the entry's first chunk, counted within its tensor
  int32_t chunk_end[kTableEntries];    // entry e holds the launch's chunks [chunk_end[e-1], chunk_end[e])
  Extra extra[kTableEntries];          // per-op, per-tensor data
  int64_t chunk_elems;
  int32_t nentries;
  int32_t nchunks;
};

// Launch chunks [lo, hi) of block b in a grid of g: contiguous, the first n % g blocks one
// chunk more (32-bit math: a launch's chunk count is an int32).
FK_HOST_DEVICE void block_chunk_range(int b, int g, int n, int& lo, int& hi) {
  const int q = n / g, r = n % g;
  lo = b * q + (b < r ? b : r);
  hi = lo + q + (b < r ? 1 : 0);
}

// The entry that holds launch chunk c: the first e with chunk_end[e] > c.
FK_HOST_DEVICE int find_entry(const int32_t* chunk_end, int n, int c) {
  int lo = 0, hi = n - 1;
  while (lo < hi) {
    const int mid = (lo + hi) / 2;
    if (chunk_end[mid] > c) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}

// Tensor elements [start, start + len) of launch chunk c, which entry e holds.
template <class Table> FK_HOST_DEVICE void chunk_elems_of(const Table& t, int e, int c, int64_t& start, int64_t& len) {
  const int begin = e > 0 ? t.chunk_end[e - 1] : 0;
  start = (t.first_chunk[e] + (c - begin)) * t.chunk_elems;
  const int64_t rest = t.numel[e] - start;
  len = rest < t.chunk_elems ? rest : t.chunk_elems;
}

// A block's walk over its chunks. The step kernel keeps it in shared memory between chunks
// (it is uniform across the block), so its registers all go to the element loop.
struct ChunkCursor {
  int c, hi, e;  // next launch chunk, end of the block's range, entry of chunk c (or before)
};

template <class Table> FK_HOST_DEVICE ChunkCursor block_cursor(const Table& t, int b, int g) {
  int lo, hi;
  block_chunk_range(b, g, t.nchunks, lo, hi);
  return {lo, hi, lo < hi ? find_entry(t.chunk_end, t.nentries, lo) : 0};
}

// The cursor's next chunk: entry e and tensor elements [start, start + len); false at the end.
template <class Table>
FK_HOST_DEVICE bool next_chunk(const Table& t, ChunkCursor& k, int& e, int64_t& start, int64_t& len) {
  if (k.c >= k.hi) return false;
  while (k.c >= t.chunk_end[k.e]) ++k.e;
  e = k.e;
  chunk_elems_of(t, k.e, k.c, start, len);
  ++k.c;
  return true;
}

// Calls f(entry, launch_chunk, start, len) for each chunk of block b in a grid of g, in
// order; start/len are elements of the entry's tensor.
template <class Table, class F> FK_HOST_DEVICE void for_block_chunks(const Table& t, int b, int g, F&& f) {
  ChunkCursor k = block_cursor(t, b, g);
  int e;
  int64_t start, len;
  while (next_chunk(t, k, e, start, len)) f(e, k.c - 1, start, len);
}

// Blocks of a launch: one per chunk up to max_grid (the resident blocks of the device).
inline int launch_grid(int64_t nchunks, int max_grid) {
  return static_cast<int>(nchunks < max_grid ? nchunks : max_grid);
}

// Fills a table from one planned launch: ptr_of(k, tensor) -> void*, extra_of(tensor) -> Extra.
template <int K, class Extra, class PtrOf, class ExtraOf>
void fill_table(ChunkTable<K, Extra>& t, const LaunchBatch& b, const int64_t* numels, int64_t chunk_elems,
                PtrOf&& ptr_of, ExtraOf&& extra_of) {
  t.chunk_elems = chunk_elems;
  t.nentries = static_cast<int32_t>(b.entries.size());
  int64_t end = 0;
  for (int e = 0; e < t.nentries; ++e) {
    const LaunchEntry& en = b.entries[e];
    for (int k = 0; k < K; ++k) t.ptr[k][e] = ptr_of(k, en.tensor);
    t.numel[e] = numels[en.tensor];
    t.first_chunk[e] = en.first_chunk;
    end += en.nchunks;
    t.chunk_end[e] = static_cast<int32_t>(end);
    t.extra[e] = extra_of(en.tensor);
  }
  t.nchunks = static_cast<int32_t>(end);
}

// What the kernels' grid walks, computed on the host with the same functions, for tests:
// per launch, per block, the (tensor, start, len) of each chunk it handles.
using BlockWork = std::vector<std::tuple<int64_t, int64_t, int64_t>>;
std::vector<std::vector<BlockWork>> launch_schedule(const std::vector<int64_t>& numels, int64_t chunk_elems,
                                                     int max_entries, int64_t max_chunks, int grid);

}  // namespace fusekit
