// The CPU kernels' own worker threads. The calling thread works too, and every thread claims the
// next block of units from one shared counter, so a worker that the OS has not scheduled (another
// process busy on its core) leaves its share to the threads that run instead of holding them at a
// barrier. OpenMP's fork-join held them: beside one busy process, a [100, 784] Bernoulli call went
// from 0.29 ms to 5.1 ms. Idle workers spin briefly, then yield their core in a loop for up to
// 300 us (a backward pass often follows its forward), then sleep in the kernel, so they never
// keep a core from other work.
#pragma once

#include <cstdint>
#include <type_traits>

namespace aevb::cpu {

using BlockFn = void (*)(void* context, int64_t begin, int64_t end);

// Calls fn(context, begin, end) on consecutive ranges of at most `grain` units that cover
// [0, units) once, on the calling thread and at most `helpers` workers, and returns when every
// range is done. Which thread runs a range varies from call to call. A second caller while one
// runs (another Python thread) runs its ranges alone.
void run_blocks(int64_t units, int64_t grain, int helpers, BlockFn fn, void* context);

template <typename Body>
void parallel_for(int64_t units, int64_t grain, int helpers, Body&& body) {
  if (helpers <= 0 || units <= grain) {
    body(int64_t{0}, units);
    return;
  }
  using B = std::remove_reference_t<Body>;
  run_blocks(
      units, grain, helpers, [](void* b, int64_t begin, int64_t end) { (*static_cast<B*>(b))(begin, end); }, &body);
}

// Worker threads started so far (they start on first use and live as long as the process).
int pool_workers();

}  // namespace aevb::cpu
