// Native re-check of the buffers an entry point is handed (architecture.md §2.6). Every pointer
// comes with the byte size of the tensor behind it; the entry point compares it with what
// its own extents require before any kernel runs, so whatever a caller passes (a stale
// traced size, a wrong dtype), no kernel touches memory it was not given.
#pragma once
#include <cstdint>
#include <initializer_list>
#include <stdexcept>
#include <string>

namespace fusekit {

// Product of non-negative extents times the element size; throws on a negative extent or
// on overflow (a crafted size must not wrap around to match a small buffer).
inline int64_t extent_bytes(std::initializer_list<int64_t> dims, int64_t elem_size) {
  int64_t n = elem_size;
  for (int64_t d : dims) {
    if (d < 0) throw std::invalid_argument("negative extent");
    if (__builtin_mul_overflow(n, d, &n)) throw std::invalid_argument("extents overflow int64");
  }
  return n;
}

// (ptr, nbytes) must hold exactly `need` bytes. A null pointer is accepted where nothing
// is needed, or for an optional buffer that is absent (then nbytes must be 0 too).
inline void check_buffer(const char* what, uintptr_t ptr, int64_t nbytes, int64_t need, bool optional = false) {
  if (ptr == 0) {
    if (nbytes == 0 && (optional || need == 0)) return;
    throw std::invalid_argument(std::string(what) + ": null data pointer for a buffer of " +
                                std::to_string(need) + " bytes");
  }
  if (nbytes != need)
    throw std::invalid_argument(std::string(what) + ": the buffer has " + std::to_string(nbytes) +
                                " bytes where the call's sizes need " + std::to_string(need));
}

}  // namespace fusekit
