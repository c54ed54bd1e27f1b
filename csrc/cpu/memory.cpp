#include "cpu/memory.h"

#ifdef __linux__
#include <sys/mman.h>
#endif

namespace fusekit::cpu {

bool advise_huge_pages(uintptr_t p, size_t n) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr uintptr_t kHuge = uintptr_t{2} << 20;
  const uintptr_t a = (p + kHuge - 1) & ~(kHuge - 1), e = (p + n) & ~(kHuge - 1);
  return e > a && madvise(reinterpret_cast<void*>(a), e - a, MADV_HUGEPAGE) == 0;
#else
  (void)p;
  (void)n;
  return false;
#endif
}

}  // namespace fusekit::cpu
