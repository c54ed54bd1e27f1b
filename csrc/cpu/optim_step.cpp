// Host side of the fused optimizer step: checks the call, advances the per-tensor scalar
// state (step, mu_product) once per tensor, computes the per-tensor coefficients with the
// rule's own coeffs() and hands the chunk table to the ISA-specific loop or to CUDA.
#include <algorithm>
#include <stdexcept>
#include <string>
#include <vector>

#include "cpu/optim_job.h"
#include "fusekit/buffers.h"
#include "fusekit/host_coeffs.h"
#include "fusekit/optim_step.h"

namespace fusekit {
namespace {

constexpr int64_t kChunkBytes = 64 * 1024;
constexpr int64_t kSerialElems = 8 * 1024;  // below this, threads cost more than they save
// 8-bit state: every chunk starts on a quantization block (the chunks of a tensor are
// whole multiples of chunk_elems from its start).
static_assert((kChunkBytes / 2) % kQuantBlock == 0 && (kChunkBytes / 4) % kQuantBlock == 0);

void check_args(const StepArgs& a, int min_slots) {
  if (a.count < 0) throw std::invalid_argument("tensor count must be non-negative");
  if (a.nslots < min_slots || a.nslots > kMaxSlots)
    throw std::invalid_argument("expected " + std::to_string(min_slots) + " to " +
                                std::to_string(kMaxSlots) + " tensor slots, got " + std::to_string(a.nslots));
  if (static_cast<int64_t>(a.ptrs.size()) != a.nslots * a.count)
    throw std::invalid_argument("pointer table size does not match nslots * count");
  if (static_cast<int64_t>(a.numels.size()) != a.count)
    throw std::invalid_argument("numels size does not match count");
  for (auto* v : {&a.steps, &a.mu_products})
    if (!v->empty() && static_cast<int64_t>(v->size()) != a.count)
      throw std::invalid_argument("per-tensor state pointers do not match count");
  if (!a.first.empty() && static_cast<int64_t>(a.first.size()) != a.count)
    throw std::invalid_argument("first-step flags do not match count");
  if (a.nbytes.size() != a.ptrs.size()) throw std::invalid_argument("nbytes must give one size per pointer");
  const int nstates = a.nslots - 2;
  const bool lowp = a.state_format != StateFormat::Param;
  if (lowp && (a.nslots < 3 || a.dtype == DType::Float64))
    throw std::invalid_argument("low-precision state is for optimizers with state and 32/16-bit parameters");
  if (a.state_format == StateFormat::Block8 && nstates > 2)
    throw std::invalid_argument("8-bit state holds at most two state tensors (m and v)");
  const bool block8 = a.state_format == StateFormat::Block8;
  if (block8 != !a.absmax.empty() || a.absmax.size() != a.absmax_nbytes.size() ||
      (block8 && static_cast<int64_t>(a.absmax.size()) != nstates * a.count))
    throw std::invalid_argument("8-bit state needs one absmax buffer per state tensor, and only it");
  if (!a.master.empty() && (static_cast<int64_t>(a.master.size()) != a.count ||
                            a.master_nbytes.size() != a.master.size() || dtype_size(a.dtype) != 2))
    throw std::invalid_argument("master weights: one float32 buffer per 16-bit parameter");
  const int64_t es = dtype_size(a.dtype), ses = state_elem_size(a.state_format, a.dtype);
  for (int64_t i = 0; i < a.count; ++i) {
    if (a.numels[i] < 0) throw std::invalid_argument("negative numel");
    for (int k = 0; k < a.nslots; ++k)
      check_buffer("optimizer tensor", a.ptrs[k * a.count + i], a.nbytes[k * a.count + i],
                   extent_bytes({a.numels[i]}, k < 2 ? es : ses));
    const int64_t blocks = (a.numels[i] + kQuantBlock - 1) / kQuantBlock;
    for (int k = 0; block8 && k < nstates; ++k)
      check_buffer("absmax", a.absmax[k * a.count + i], a.absmax_nbytes[k * a.count + i], extent_bytes({blocks}, 4));
    if (!a.master.empty())
      check_buffer("master weights", a.master[i], a.master_nbytes[i], extent_bytes({a.numels[i]}, 4));
  }
}

// Steps of a few full chunks would leave threads idle behind one long chunk: they are cut
// finer, to about four chunks per thread, which threads take as they finish (whole 8-bit
// blocks; elementwise results do not depend on the cut).
int64_t cpu_chunk_elems(DType dtype, int64_t total, int threads) {
  const int64_t full = chunk_elems(dtype);
  if (threads <= 1) return full;
  const int64_t want = (total / (4 * threads) + kQuantBlock - 1) / kQuantBlock * kQuantBlock;
  return std::clamp<int64_t>(want, 16 * kQuantBlock, full);
}

cpu::Isa g_isa() { return cpu::detect_isa(); }

template <class Rule> void run_isa(const cpu::CpuJob& job) {
  switch (g_isa()) {
#ifdef FK_HAVE_ISA_AVX512
    case cpu::Isa::Avx512: return cpu::avx512::run_job<Rule>(job);
#endif
#ifdef FK_HAVE_ISA_AVX2
    case cpu::Isa::Avx2: return cpu::avx2::run_job<Rule>(job);
#endif
    default: return cpu::scalar::run_job<Rule>(job);
  }
}

template <class Rule>
void cpu_step(const StepArgs& a, const typename Rule::Hyper& h, ChunkPlan* plan) {
  if (a.found_inf && *reinterpret_cast<const float*>(a.found_inf) != 0.f) return;
  dispatch_dtype(a.dtype, [&](auto s) {
    using T = compute_t<decltype(s)>;
    const auto coeffs = advance_on_host<Rule, T>(a, h);
    int64_t total = 0;
    for (int64_t n : a.numels) total += n;
    const int threads = total < kSerialElems ? 1 : a.num_threads;
    const int64_t ce = cpu_chunk_elems(a.dtype, total, threads);
    std::vector<Chunk> cut;
    const std::vector<Chunk>& chunks =
        plan != nullptr ? plan->get(a.numels.data(), a.count, ce) : (cut = build_chunks(a.numels.data(), a.count, ce));
    const cpu::CpuJob job{a.dtype, Rule::variant(h), a.nslots, a.count, a.ptrs.data(), coeffs.data(),
                          reinterpret_cast<const float*>(a.grad_scale),
                          reinterpret_cast<const double*>(a.clip_coef), chunks.data(),
                          static_cast<int64_t>(chunks.size()), threads,
                          a.state_format, a.absmax.empty() ? nullptr : a.absmax.data(),
                          a.master.empty() ? nullptr : a.master.data()};
    run_isa<Rule>(job);
  });
}

}  // namespace

int64_t chunk_elems(DType dtype) { return kChunkBytes / dtype_size(dtype); }

template <class Rule> void optimizer_step(const StepArgs& a, const typename Rule::Hyper& h, ChunkPlan* plan) {
  check_args(a, Rule::slots(Rule::variant(h)));
  if (a.nslots != Rule::slots(Rule::variant(h)))
    throw std::invalid_argument("slot count does not match the optimizer's options");
  if (a.device >= 0) {
    if (a.state_format != StateFormat::Param || !a.master.empty())
      throw std::invalid_argument("low-precision state and master weights are not implemented on CUDA");
#ifdef FK_WITH_CUDA
    return cuda::optimizer_step<Rule>(a, h);
#else
    throw std::runtime_error("fusekit was built without CUDA kernels");
#endif
  }
  if (a.capturable && a.lr_ptr) throw std::invalid_argument("lr_ptr is only used on CUDA");
  cpu_step<Rule>(a, h, plan);
}

#define FK_INSTANTIATE(Rule) template void optimizer_step<Rule>(const StepArgs&, const Rule::Hyper&, ChunkPlan*);
FK_FOR_EACH_RULE(FK_INSTANTIATE)
#undef FK_INSTANTIATE

const char* cpu_isa() { return cpu::isa_name(cpu::detect_isa()); }

int64_t quant8_mismatches(int64_t stride) {
  if (stride < 1) throw std::invalid_argument("stride must be >= 1");
  switch (g_isa()) {
#ifdef FK_HAVE_ISA_AVX512
    case cpu::Isa::Avx512: return cpu::avx512::quant8_mismatches(stride);
#endif
#ifdef FK_HAVE_ISA_AVX2
    case cpu::Isa::Avx2: return cpu::avx2::quant8_mismatches(stride);
#endif
    default: return cpu::scalar::quant8_mismatches(stride);
  }
}

bool cuda_built() {
#ifdef FK_WITH_CUDA
  return true;
#else
  return false;
#endif
}

int cuda_device_count() {
#ifdef FK_WITH_CUDA
  return cuda::device_count();
#else
  return 0;
#endif
}

}  // namespace fusekit
