// Memory hints for fresh CPU outputs.
#pragma once
#include <cstddef>
#include <cstdint>

namespace fusekit::cpu {

// Asks Linux to back the 2 MiB-aligned interior of [p, p + n) with transparent huge pages
// before its first touch: faulting in a fresh 32 MiB output in 4 KiB pages costs about 3x
// as much as in 2 MiB pages (torch's own allocator does this only under
// THP_MEM_ALLOC_ENABLE=1). Returns false where the hint was not taken (not Linux, THP off).
bool advise_huge_pages(uintptr_t p, size_t n);

}  // namespace fusekit::cpu
