// Run-time ISA choice for the CPU kernels: the widest this CPU and this build support.
// FUSEKIT_CPU_ISA=scalar|avx2|avx512 caps it (tests use it to compare ISAs).
#include <cstdlib>
#include <cstring>

#include "cpu/optim_job.h"

namespace fusekit::cpu {

static Isa cap_from_env(Isa best) {
  const char* e = std::getenv("FUSEKIT_CPU_ISA");
  if (e == nullptr) return best;
  Isa want = best;
  if (std::strcmp(e, "scalar") == 0) want = Isa::Scalar;
  else if (std::strcmp(e, "avx2") == 0) want = Isa::Avx2;
  return static_cast<int>(want) < static_cast<int>(best) ? want : best;
}

Isa detect_isa() {
  static const Isa isa = [] {
    Isa best = Isa::Scalar;
#if defined(__x86_64__) && defined(FK_HAVE_ISA_AVX512)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq"))
      best = Isa::Avx512;
    else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
             __builtin_cpu_supports("f16c"))
      best = Isa::Avx2;
#endif
    return cap_from_env(best);
  }();
  return isa;
}

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::Avx512: return "avx512";
    case Isa::Avx2: return "avx2";
    default: return "scalar";
  }
}

}  // namespace fusekit::cpu
