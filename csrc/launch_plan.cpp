#include "fusekit/launch_plan.h"

#include <stdexcept>

namespace fusekit {

std::vector<Chunk> build_chunks(const int64_t* numels, int64_t count, int64_t chunk_elems) {
  if (chunk_elems <= 0) throw std::invalid_argument("chunk_elems must be positive");
  std::vector<Chunk> out;
  for (int64_t t = 0; t < count; ++t) {
    for (int64_t s = 0; s < numels[t]; s += chunk_elems) {
      const int64_t rest = numels[t] - s;
      out.push_back({t, s, rest < chunk_elems ? rest : chunk_elems});
    }
  }
  return out;
}

std::vector<LaunchBatch> plan_launches(const int64_t* numels, int64_t count, int64_t chunk_elems,
                                       int max_tensors, int max_chunks) {
  if (max_tensors <= 0 || max_chunks <= 0) throw std::invalid_argument("batch limits must be positive");
  std::vector<LaunchBatch> out;
  LaunchBatch cur;
  for (const Chunk& c : build_chunks(numels, count, chunk_elems)) {
    const bool new_tensor = cur.tensors.empty() || cur.tensors.back() != c.tensor;
    if (static_cast<int>(cur.chunks.size()) == max_chunks ||
        (new_tensor && static_cast<int>(cur.tensors.size()) == max_tensors)) {
      out.push_back(std::move(cur));
      cur = LaunchBatch{};
    }
    if (cur.tensors.empty() || cur.tensors.back() != c.tensor) cur.tensors.push_back(c.tensor);
    cur.chunks.push_back({static_cast<int64_t>(cur.tensors.size()) - 1, c.start, c.len});
  }
  if (!cur.chunks.empty()) out.push_back(std::move(cur));
  return out;
}

}  // namespace fusekit
