#include "ftp_core/threadpool.hpp"

#include <cstdlib>
#include <memory>
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
    generation_.fetch_add(1);
  }
  wake_.notify_all();
  for (auto& w : workers_) w.join();
}

void ThreadPool::run_tasks(int thread_id) {
  for (;;) {
    size_t t = next_task_.fetch_add(1, std::memory_order_relaxed);
    if (t >= num_tasks_) break;
    (*fn_)(t, thread_id);
  }
}

void ThreadPool::worker_loop(int thread_id) {
  unsigned seen = 0;
  for (;;) {
    // Spin a little (about 50 us) for the next call before sleeping on the condition variable.
    unsigned g = generation_.load(std::memory_order_acquire);
    for (int i = 0; i < 20000 && g == seen; ++i) {
      DT_PAUSE();
      g = generation_.load(std::memory_order_acquire);
    }
    if (g == seen) {
      std::unique_lock<std::mutex> lk(mutex_);
      wake_.wait(lk, [&] { return generation_.load() != seen; });
      g = generation_.load();
    }
    seen = g;
    {
      std::lock_guard<std::mutex> lk(mutex_);
      if (stop_) return;
    }
    run_tasks(thread_id);
    if (busy_workers_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
      std::lock_guard<std::mutex> lk(mutex_);
      done_cv_.notify_one();
    }
  }
}

void ThreadPool::parallel_for(size_t num_tasks, const std::function<void(size_t, int)>& fn) {
  if (num_tasks == 0) return;
  std::lock_guard<std::mutex> call_lock(call_mutex_);
  if (num_threads_ == 1 || num_tasks == 1) {
    for (size_t t = 0; t < num_tasks; ++t) fn(t, 0);
    return;
  }
  {
    std::lock_guard<std::mutex> lk(mutex_);
    fn_ = &fn;
    num_tasks_ = num_tasks;
    next_task_.store(0);
    busy_workers_.store(num_threads_ - 1);
    generation_.fetch_add(1, std::memory_order_release);
  }
  wake_.notify_all();
  run_tasks(0);
  // Workers finish quickly once tasks run out: spin first, then sleep.
  for (int i = 0; i < 20000 && busy_workers_.load(std::memory_order_acquire) != 0; ++i) DT_PAUSE();
  if (busy_workers_.load(std::memory_order_acquire) != 0) {
    std::unique_lock<std::mutex> lk(mutex_);
    done_cv_.wait(lk, [&] { return busy_workers_.load() == 0; });
  }
  fn_ = nullptr;
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
