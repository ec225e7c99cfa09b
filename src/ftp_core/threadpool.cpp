#include "ftp_core/threadpool.hpp"

#include <algorithm>
#include <cstdlib>
#include <memory>
#include <new>
#include <pthread.h>
#include <stdexcept>
#include <string>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define DT_PAUSE() _mm_pause()
#elif defined(__aarch64__) || defined(__arm__)
#define DT_PAUSE() __asm__ __volatile__("yield")
#else
#define DT_PAUSE() ((void)0)
#endif

namespace ftp {

ThreadPool::ThreadPool(int num_threads) : num_threads_(num_threads < 1 ? 1 : num_threads) {
  for (int t = 1; t < num_threads_; ++t) workers_.emplace_back([this, t] { worker_loop(t); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lk(mutex_);
    stop_ = true;
    claim_.fetch_add(uint64_t(1) << 32);
  }
  wake_.notify_all();
  for (auto& w : workers_) w.join();
}

void ThreadPool::run_tasks(uint32_t gen, int thread_id) {
  for (;;) {
    uint64_t v = claim_.load(std::memory_order_acquire);
    size_t idx;
    for (;;) {
      if (uint32_t(v >> 32) != gen) return;  // that call is over
      idx = size_t(v & 0xffffffffu);
      if (idx >= num_tasks_.load(std::memory_order_relaxed)) return;
      if (claim_.compare_exchange_weak(v, v + 1, std::memory_order_acq_rel)) break;
    }
    // The call cannot finish before this claimed task is done, so fn_ is still its function.
    (*fn_)(idx, thread_id);
    // seq_cst on done_ and caller_sleeping_ (both sides): either this thread sees the caller
    // asleep, or the caller sees the last increment before it sleeps.
    if (done_.fetch_add(1) + 1 == num_tasks_.load(std::memory_order_relaxed) && caller_sleeping_.load()) {
      std::lock_guard<std::mutex> lk(mutex_);
      done_cv_.notify_one();
    }
  }
}

void ThreadPool::worker_loop(int thread_id) {
  uint32_t seen = 0;
  for (;;) {
    // Spin briefly for the next call (layer after layer), then sleep: on a busy machine a
    // spinning worker would steal the core from the thread doing the work.
    uint32_t g = uint32_t(claim_.load(std::memory_order_acquire) >> 32);
    for (int i = 0; i < 4000 && g == seen; ++i) {
      DT_PAUSE();
      g = uint32_t(claim_.load(std::memory_order_acquire) >> 32);
    }
    if (g == seen) {
      std::unique_lock<std::mutex> lk(mutex_);
      wake_.wait(lk, [&] { return stop_ || uint32_t(claim_.load() >> 32) != seen; });
      if (stop_) return;
      g = uint32_t(claim_.load() >> 32);
    }
    seen = g;
    {
      std::lock_guard<std::mutex> lk(mutex_);
      if (stop_) return;
    }
    run_tasks(g, thread_id);
  }
}

void ThreadPool::parallel_for(size_t num_tasks, const std::function<void(size_t, int)>& fn) {
  if (num_tasks == 0) return;
  std::lock_guard<std::mutex> call_lock(call_mutex_);
  if (num_threads_ == 1 || num_tasks == 1) {
    for (size_t t = 0; t < num_tasks; ++t) fn(t, 0);
    return;
  }
  uint32_t gen;
  {
    std::lock_guard<std::mutex> lk(mutex_);
    fn_ = &fn;
    num_tasks_.store(num_tasks, std::memory_order_relaxed);
    done_.store(0, std::memory_order_relaxed);
    gen = uint32_t(claim_.load() >> 32) + 1;
    claim_.store(uint64_t(gen) << 32, std::memory_order_release);  // publishes fn_ / num_tasks_
  }
  wake_.notify_all();
  run_tasks(gen, 0);
  // Wait only for tasks other threads claimed: a worker that has not woken up yet simply finds
  // nothing left to claim, so a descheduled worker never delays the call.
  for (int i = 0; i < 4000 && done_.load(std::memory_order_acquire) != num_tasks; ++i) DT_PAUSE();
  if (done_.load(std::memory_order_acquire) != num_tasks) {
    std::unique_lock<std::mutex> lk(mutex_);
    caller_sleeping_.store(true);
    done_cv_.wait(lk, [&] { return done_.load() == num_tasks; });
    caller_sleeping_.store(false);
  }
  // Close the call: late workers see a different state and claim nothing.
  claim_.store((uint64_t(gen) << 32) | 0xffffffffu, std::memory_order_release);
}

void ThreadPool::parallel_for_chunks(size_t num_items, size_t work_per_item,
                                     const std::function<void(size_t, size_t)>& fn) {
  if (num_items == 0) return;
  // ~64k multiply-adds per task: below that, waking another core costs more than it saves.
  constexpr size_t kMinWork = 1 << 16;
  const size_t per = std::max<size_t>(1, kMinWork / std::max<size_t>(1, work_per_item));
  size_t chunks = (num_items + per - 1) / per;
  chunks = std::min(chunks, (size_t)num_threads_ * 4);
  if (chunks <= 1) {
    fn(0, num_items);
    return;
  }
  const size_t step = (num_items + chunks - 1) / chunks;
  parallel_for((num_items + step - 1) / step, [&](size_t t, int) {
    fn(t * step, std::min(num_items, (t + 1) * step));
  });
}

int default_num_threads() {
  if (const char* env = std::getenv("DEEPTHINGS_THREADS")) {
    int n = std::atoi(env);
    if (n >= 1) return n;
  }
  unsigned hc = std::thread::hardware_concurrency();
  return hc == 0 ? 1 : static_cast<int>(hc);
}

namespace {
std::mutex g_pool_mutex;
std::shared_ptr<ThreadPool> g_pool;

// A forked child (multiprocessing) inherits the pool object but not its worker threads, and
// maybe a mutex some worker held: abandon both (never join threads that do not exist there)
// and let the child build a fresh pool on first use.
void reset_pool_in_child() {
  new (&g_pool_mutex) std::mutex();
  new (new char[sizeof(std::shared_ptr<ThreadPool>)]) std::shared_ptr<ThreadPool>(std::move(g_pool));
  new (&g_pool) std::shared_ptr<ThreadPool>();
}

struct AtForkRegistration {
  AtForkRegistration() { pthread_atfork(nullptr, nullptr, reset_pool_in_child); }
} g_atfork;
}  // namespace

std::shared_ptr<ThreadPool> global_pool() {
  std::lock_guard<std::mutex> lk(g_pool_mutex);
  if (!g_pool) g_pool = std::make_shared<ThreadPool>(default_num_threads());
  return g_pool;
}

void set_num_threads(int n) {
  if (n < 1) throw std::invalid_argument("num_threads must be >= 1, got " + std::to_string(n));
  std::lock_guard<std::mutex> lk(g_pool_mutex);
  if (g_pool && g_pool->num_threads() == n) return;
  g_pool = std::make_shared<ThreadPool>(n);  // the old pool joins when its last user lets go
}

int get_num_threads() { return global_pool()->num_threads(); }

}  // namespace ftp
