#include "fusekit/launch_plan.h"

#include "fusekit/multi_tensor.h"

#include <algorithm>
#include <atomic>
#include <climits>
#include <memory>
#include <stdexcept>

namespace fusekit {

std::vector<Chunk> build_chunks(const int64_t* numels, int64_t count, int64_t chunk_elems) {
  if (chunk_elems <= 0) throw std::invalid_argument("chunk_elems must be positive");
  std::vector<Chunk> out;
  out.reserve(static_cast<size_t>(count));  // one chunk per tensor is the common case: one allocation
  for (int64_t t = 0; t < count; ++t) {
    for (int64_t s = 0; s < numels[t]; s += chunk_elems) {
      const int64_t rest = numels[t] - s;
      out.push_back({t, s, rest < chunk_elems ? rest : chunk_elems});
    }
  }
  return out;
}

const std::vector<Chunk>& ChunkPlan::get(const int64_t* numels, int64_t count, int64_t chunk_elems) {
  if (chunk_elems != chunk_elems_ || count != static_cast<int64_t>(numels_.size()) ||
      !std::equal(numels_.begin(), numels_.end(), numels)) {
    chunks_ = build_chunks(numels, count, chunk_elems);
    numels_.assign(numels, numels + count);
    chunk_elems_ = chunk_elems;
  }
  return chunks_;
}

std::vector<LaunchBatch> plan_launches(const int64_t* numels, int64_t count, int64_t chunk_elems, int max_entries,
                                       int64_t max_chunks) {
  if (chunk_elems <= 0) throw std::invalid_argument("chunk_elems must be positive");
  if (max_entries <= 0 || max_chunks <= 0) throw std::invalid_argument("batch limits must be positive");
  std::vector<LaunchBatch> out;
  LaunchBatch cur;
  int64_t done = 0;  // chunks of the call already placed
  for (int64_t t = 0; t < count; ++t) {
    const int64_t n = (numels[t] + chunk_elems - 1) / chunk_elems;
    for (int64_t c = 0; c < n;) {
      if (cur.nchunks == max_chunks || static_cast<int>(cur.entries.size()) == max_entries) {
        out.push_back(std::move(cur));
        cur = LaunchBatch{};
      }
      if (cur.entries.empty()) cur.first_chunk = done;
      const int64_t take = std::min(n - c, max_chunks - cur.nchunks);
      cur.entries.push_back({t, c, take});
      cur.nchunks += take;
      done += take;
      c += take;
    }
  }
  if (!cur.entries.empty()) out.push_back(std::move(cur));
  return out;
}

namespace {
std::atomic<int> g_max_entries{0};
std::atomic<int64_t> g_max_chunks{0};
}  // namespace

void set_launch_limits(int max_entries, int64_t max_chunks) {
  if (max_entries < 0 || max_chunks < 0) throw std::invalid_argument("launch limits must be >= 0 (0: default)");
  g_max_entries = max_entries;
  g_max_chunks = max_chunks;
}

LaunchLimits launch_limits(int table_entries) {
  const int e = g_max_entries.load();
  const int64_t c = g_max_chunks.load();
  return {e > 0 ? std::min(e, table_entries) : table_entries, c > 0 ? std::min<int64_t>(c, INT_MAX) : INT_MAX};
}

std::vector<std::vector<BlockWork>> launch_schedule(const std::vector<int64_t>& numels, int64_t chunk_elems,
                                                     int max_entries, int64_t max_chunks, int grid) {
  if (max_entries > kTableEntries) throw std::invalid_argument("max_entries exceeds the table size");
  if (grid <= 0) throw std::invalid_argument("grid must be positive");
  std::vector<std::vector<BlockWork>> out;
  auto table = std::make_unique<ChunkTable<1, char>>();
  for (const LaunchBatch& b : plan_launches(numels.data(), static_cast<int64_t>(numels.size()), chunk_elems,
                                            max_entries, max_chunks)) {
    fill_table(*table, b, numels.data(), chunk_elems, [](int, int64_t) { return nullptr; },
               [](int64_t) { return char{}; });
    std::vector<int64_t> tensor_of(table->nentries);
    for (int e = 0; e < table->nentries; ++e) tensor_of[e] = b.entries[e].tensor;
    const int g = launch_grid(table->nchunks, grid);
    std::vector<BlockWork> blocks(g);
    for (int blk = 0; blk < g; ++blk)
      for_block_chunks(*table, blk, g, [&](int e, int, int64_t start, int64_t len) {
        blocks[blk].emplace_back(tensor_of[e], start, len);
      });
    out.push_back(std::move(blocks));
  }
  return out;
}

}  // namespace fusekit
