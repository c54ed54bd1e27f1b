// Work partition shared by the CPU and CUDA multi-tensor paths (optimizer steps, norms,
// grad ops): every tensor of a call is cut into fixed-size chunks (64-bit offsets). The CPU
// runs the chunk list on its thread pool; for CUDA the chunks are packed into launches whose
// chunk table travels as a kernel parameter (fusekit/multi_tensor.h). Host code, tested on
// the CPU.
#pragma once
#include <cstdint>
#include <vector>

namespace fusekit {

struct Chunk {
  int64_t tensor;  // index into the tensor list
  int64_t start;   // first element
  int64_t len;     // element count, 1..chunk_elems
};

// Chunks in tensor order; empty tensors contribute none.
std::vector<Chunk> build_chunks(const int64_t* numels, int64_t count, int64_t chunk_elems);

// A chunk list kept across calls by a caller that reuses its tensor list (a StepTable
// bucket): returned as long as the numels and the chunk length are those it was cut for,
// cut again otherwise.
class ChunkPlan {
 public:
  const std::vector<Chunk>& get(const int64_t* numels, int64_t count, int64_t chunk_elems);

 private:
  std::vector<int64_t> numels_;
  int64_t chunk_elems_ = 0;
  std::vector<Chunk> chunks_;
};

// A run of consecutive chunks of one tensor inside one launch.
struct LaunchEntry {
  int64_t tensor;       // index into the call's tensor list
  int64_t first_chunk;  // the run's first chunk, counted within the tensor
  int64_t nchunks;
};

struct LaunchBatch {
  std::vector<LaunchEntry> entries;
  int64_t first_chunk = 0;  // index of the batch's first chunk among all chunks of the call
  int64_t nchunks = 0;
};

// Packs the call's chunks, in tensor order, into launches of at most max_entries runs and
// max_chunks chunks; a tensor whose chunks do not fit continues in the next launch. Empty
// tensors get no entry. The CUDA launchers pass max_chunks = INT32_MAX (chunks are implicit
// in the table, so only the tensor count splits launches); smaller limits (set_launch_limits)
// make the check exercise split tensors with small data.
std::vector<LaunchBatch> plan_launches(const int64_t* numels, int64_t count, int64_t chunk_elems, int max_entries,
                                       int64_t max_chunks);

// Process-wide caps on the CUDA launches' size, for self-tests: 0 restores the defaults.
struct LaunchLimits {
  int max_entries;
  int64_t max_chunks;
};
void set_launch_limits(int max_entries, int64_t max_chunks);
LaunchLimits launch_limits(int table_entries);  // min(cap, table_entries) entries

}  // namespace fusekit
