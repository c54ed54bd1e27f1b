// CPU parallelism for the kernels: torch's own OpenMP threads when torch's libgomp is
// loaded (resolved at run time, not linked), else a small persistent std::thread pool.
// Linking a second OpenMP runtime would double the threads (architecture.md §2.3).
#pragma once
#include <cstdint>

namespace fusekit::cpu {

// Runs fn(ctx, task) for task in [0, ntasks) on up to num_threads threads (the caller is
// one of them), each thread running a contiguous range of tasks. Returns when all are done.
using TaskFn = void (*)(void* ctx, int64_t task);
void parallel_for(int num_threads, int64_t ntasks, TaskFn fn, void* ctx);

// "openmp (torch's libgomp)" or "fusekit thread pool".
const char* thread_backend();

template <class F> void parallel_for(int num_threads, int64_t ntasks, F& f) {
  parallel_for(num_threads, ntasks, [](void* c, int64_t t) { (*static_cast<F*>(c))(t); }, &f);
}

}  // namespace fusekit::cpu
