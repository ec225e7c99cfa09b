// A small fork-join thread pool (no OpenMP, so wheels need no libgomp). The caller thread
// takes part in every parallel_for; workers spin briefly before sleeping so back-to-back
// layer calls do not pay a futex wake-up each.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstddef>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace ftp {

class ThreadPool {
 public:
  explicit ThreadPool(int num_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int num_threads() const { return num_threads_; }

  // Runs fn(task, thread_id) for task in [0, num_tasks), thread_id in [0, num_threads()).
  // Tasks are handed out dynamically. Calls from several host threads are serialised.
  void parallel_for(size_t num_tasks, const std::function<void(size_t, int)>& fn);

  // Splits [0, num_items) into contiguous chunks of enough work to be worth a thread
  // (work_per_item ~ multiply-adds) and runs fn(begin, end) on them; inline if small.
  void parallel_for_chunks(size_t num_items, size_t work_per_item,
                           const std::function<void(size_t, size_t)>& fn);

 private:
  void worker_loop(int thread_id);
  // Claims and runs tasks of call `gen` until none are left; returns how many it ran.
  void run_tasks(uint32_t gen, int thread_id);

  int num_threads_;
  std::vector<std::thread> workers_;
  std::mutex call_mutex_;  // one parallel_for at a time
  std::mutex mutex_;
  std::condition_variable wake_;
  std::condition_variable done_cv_;
  const std::function<void(size_t, int)>* fn_ = nullptr;
  std::atomic<size_t> num_tasks_{0};
  // High 32 bits: call generation; low 32 bits: next task index. One atomic, so a worker that
  // wakes late can never claim a task of a newer call with an index of an older one.
  std::atomic<uint64_t> claim_{0};
  std::atomic<size_t> done_{0};
  std::atomic<bool> caller_sleeping_{false};
  bool stop_ = false;
};

// The process-wide pool used by every layer kernel. Default size: $DEEPTHINGS_THREADS if set,
// else std::thread::hardware_concurrency().
// Returned by shared_ptr so that set_num_threads from another thread never pulls the pool from
// under a running call.
std::shared_ptr<ThreadPool> global_pool();
void set_num_threads(int n);  // rebuilds the pool; n >= 1
int get_num_threads();
int default_num_threads();

}  // namespace ftp
