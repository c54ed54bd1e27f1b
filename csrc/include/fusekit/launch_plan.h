// Work partition shared by the CPU and CUDA optimizer paths: every tensor of a step is cut
// into fixed-size chunks (64-bit offsets), and for CUDA the chunk table is packed into
// launch batches small enough to travel as kernel parameters. Host code, tested on the CPU.
#pragma once
#include <cstdint>
#include <vector>

namespace fusekit {

struct Chunk {
  int64_t tensor;  // index into the tensor list (local to the batch in a LaunchBatch)
  int64_t start;   // first element
  int64_t len;     // element count, 1..chunk_elems
};

struct LaunchBatch {
  std::vector<int64_t> tensors;  // global tensor index of each local slot
  std::vector<Chunk> chunks;     // chunk.tensor is the local slot
};

// Chunks in tensor order; empty tensors contribute none.
std::vector<Chunk> build_chunks(const int64_t* numels, int64_t count, int64_t chunk_elems);

// Packs the chunk table into batches of at most max_tensors tensors and max_chunks chunks;
// a tensor whose chunks do not fit continues in the next batch.
std::vector<LaunchBatch> plan_launches(const int64_t* numels, int64_t count, int64_t chunk_elems,
                                       int max_tensors, int max_chunks);

}  // namespace fusekit
