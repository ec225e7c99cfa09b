// A small fork-join thread pool (no OpenMP, so wheels need no libgomp). The caller thread
// takes part in every parallel_for; workers spin briefly before sleeping so back-to-back
// layer calls do not pay a futex wake-up each.
#pragma once
#include <atomic>
#include <condition_variable>
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

 private:
  void worker_loop(int thread_id);
  void run_tasks(int thread_id);

  int num_threads_;
  std::vector<std::thread> workers_;
  std::mutex call_mutex_;  // one parallel_for at a time
  std::mutex mutex_;
  std::condition_variable wake_;
  std::condition_variable done_cv_;
  const std::function<void(size_t, int)>* fn_ = nullptr;
  size_t num_tasks_ = 0;
  std::atomic<size_t> next_task_{0};
  std::atomic<int> busy_workers_{0};
  std::atomic<unsigned> generation_{0};
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
