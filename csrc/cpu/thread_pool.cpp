// The worker pool of thread_pool.h. One job at a time: its description (fn, context, sizes) and a
// claim counter that packs the job's generation with the next block, so that a worker still
// holding an old generation can never claim a block of a newer job (its compare-and-swap fails).
// A job's fields are rewritten only after all of its blocks have been claimed and finished, so a
// worker whose claim succeeds has read the fields of the job it claimed from.
#include "thread_pool.h"

#include <pthread.h>
#include <sched.h>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <mutex>
#include <thread>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define AEVB_CPU_RELAX() _mm_pause()
#elif defined(__aarch64__)
#define AEVB_CPU_RELAX() asm volatile("yield")
#else
#define AEVB_CPU_RELAX() ((void)0)
#endif

namespace aevb::cpu {
namespace {

// After a job it took part in, a worker spins on pause instructions (20-50 us on the CPUs we
// measured, one pause being 40-140 cycles) and then yields its core in a loop for up to 300 us
// more before it sleeps: a backward call follows its forward within that, and waking a sleeping
// worker cost more than a second thread gained below ~300,000 elements (measured: 2 threads at
// [100, 784] 20-50 us slower than one when calls came 20-200 us apart). Yielding, it gives way to
// any runnable thread on that core (torch's, another process's). A worker that arrived after the
// others had finished was late because the cores are busy: it sleeps at once.
constexpr int kIdleSpins = 1500;
constexpr std::chrono::microseconds kIdleYield{300};
// The caller's spin for the blocks that workers are finishing (a block is a few microseconds)
// before it sleeps: a worker descheduled mid-block then gets the caller's core.
constexpr int kFinishSpins = 500;

struct Pool {
  std::mutex calling;                 // held by the one caller whose job runs
  std::atomic<uint32_t> posted{0};    // the latest job's generation; sleeping workers wait on it
  std::atomic<uint64_t> next{0};      // generation << 32 | next block to claim
  std::atomic<uint32_t> finished{0};  // blocks of the current job finished
  std::atomic<int> joined{0};         // workers that took part in the current job
  std::atomic<BlockFn> fn{nullptr};
  std::atomic<void*> context{nullptr};
  std::atomic<int64_t> units{0}, grain{1};
  std::atomic<uint32_t> blocks{0};
  std::atomic<int> helpers{0};
  std::atomic<int> workers{0};
};

Pool* pool = nullptr;
std::once_flag pool_made;

// Claims and runs blocks of generation `generation` until none is left; returns whether it ran any.
bool work(Pool& p, uint32_t generation) {
  for (bool ran = false;; ran = true) {
    uint64_t claim = p.next.load(std::memory_order_acquire);
    const BlockFn fn = p.fn.load(std::memory_order_relaxed);
    void* const context = p.context.load(std::memory_order_relaxed);
    const int64_t units = p.units.load(std::memory_order_relaxed), grain = p.grain.load(std::memory_order_relaxed);
    const uint32_t blocks = p.blocks.load(std::memory_order_relaxed);
    do {
      if (static_cast<uint32_t>(claim >> 32) != generation || static_cast<uint32_t>(claim) >= blocks) return ran;
    } while (!p.next.compare_exchange_weak(claim, claim + 1, std::memory_order_acq_rel, std::memory_order_acquire));
    const int64_t begin = static_cast<int64_t>(static_cast<uint32_t>(claim)) * grain;
    fn(context, begin, std::min(units, begin + grain));
    if (p.finished.fetch_add(1, std::memory_order_acq_rel) + 1 == blocks) p.finished.notify_all();
  }
}

void worker(Pool& p) {
  uint32_t seen = p.posted.load(std::memory_order_acquire);
  for (bool worked = false;;) {
    uint32_t now = seen;
    for (int spin = 0; worked && spin < kIdleSpins && now == seen; ++spin) {
      AEVB_CPU_RELAX();
      now = p.posted.load(std::memory_order_acquire);
    }
    if (worked && now == seen) {
      const auto until = std::chrono::steady_clock::now() + kIdleYield;
      while (now == seen && std::chrono::steady_clock::now() < until) {
        sched_yield();
        now = p.posted.load(std::memory_order_acquire);
      }
    }
    if (now == seen) {
      p.posted.wait(seen, std::memory_order_acquire);
      now = p.posted.load(std::memory_order_acquire);
    }
    seen = now;
    worked = static_cast<uint32_t>(p.next.load(std::memory_order_acquire) >> 32) == seen &&
             p.joined.fetch_add(1, std::memory_order_acq_rel) < p.helpers.load(std::memory_order_relaxed) &&
             work(p, seen);
  }
}

void start_worker(Pool& p) {
  // Signals stay with the threads that expect them (Python's main thread).
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  std::thread([&p] { worker(p); }).detach();
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  p.workers.fetch_add(1, std::memory_order_relaxed);
}

// A forked child has none of the parent's workers: it starts from a new pool. The old one is
// left as it was (its mutex may be held by a thread the child does not have).
void forget_pool_in_child() { pool = new Pool; }

Pool& the_pool() {
  std::call_once(pool_made, [] {
    pool = new Pool;  // never freed: workers sleeping on it at exit must not see it destroyed
    pthread_atfork(nullptr, nullptr, forget_pool_in_child);
  });
  return *pool;
}

}  // namespace

void run_blocks(int64_t units, int64_t grain, int helpers, BlockFn fn, void* context) {
  Pool& p = the_pool();
  std::unique_lock<std::mutex> calling(p.calling, std::try_to_lock);
  if (!calling.owns_lock()) {
    fn(context, 0, units);
    return;
  }
  while (p.workers.load(std::memory_order_relaxed) < helpers) start_worker(p);
  const uint32_t blocks = static_cast<uint32_t>((units + grain - 1) / grain);
  const uint32_t generation = p.posted.load(std::memory_order_relaxed) + 1;
  p.fn.store(fn, std::memory_order_relaxed);
  p.context.store(context, std::memory_order_relaxed);
  p.units.store(units, std::memory_order_relaxed);
  p.grain.store(grain, std::memory_order_relaxed);
  p.blocks.store(blocks, std::memory_order_relaxed);
  p.helpers.store(helpers, std::memory_order_relaxed);
  p.joined.store(0, std::memory_order_relaxed);
  p.finished.store(0, std::memory_order_relaxed);
  p.next.store(static_cast<uint64_t>(generation) << 32, std::memory_order_release);
  p.posted.store(generation, std::memory_order_release);
  p.posted.notify_all();
  work(p, generation);
  uint32_t done = p.finished.load(std::memory_order_acquire);
  for (int spin = 0; spin < kFinishSpins && done != blocks; ++spin) {
    AEVB_CPU_RELAX();
    done = p.finished.load(std::memory_order_acquire);
  }
  while (done != blocks) {
    p.finished.wait(done, std::memory_order_acquire);
    done = p.finished.load(std::memory_order_acquire);
  }
}

int pool_workers() { return pool == nullptr ? 0 : pool->workers.load(std::memory_order_relaxed); }

}  // namespace aevb::cpu
