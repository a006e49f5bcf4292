// fiber.h — one emulated CUDA thread's execution context: a Boost.Context fcontext on a pooled, guard-paged
// stack, with the AddressSanitizer fiber-switch annotations that keep ASan's view of the stack correct.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include <boost/context/detail/fcontext.hpp>

namespace hope {
namespace emu {

namespace bctx = boost::context::detail;

// A stack of `bytes` usable bytes above one PROT_NONE guard page (an overflow faults instead of corrupting).
struct Stack {
  void *base = nullptr;   // lowest usable address
  size_t bytes = 0;
  void *mapping = nullptr;
  size_t mapping_bytes = 0;
  bool dirty = false;     // abandoned mid-run: ASan may still mark frames on it as poisoned
  void *top() const { return static_cast<char *>(base) + bytes; }
};

// Stacks are reused across CTAs and launches; one pool per host thread.
class StackPool {
 public:
  explicit StackPool(size_t bytes) : bytes_(bytes) {}
  ~StackPool();
  StackPool(const StackPool &) = delete;
  StackPool &operator=(const StackPool &) = delete;
  Stack *get(size_t index);  // the index-th stack (allocated on first use)
  size_t stack_bytes() const { return bytes_; }

 private:
  size_t bytes_;
  std::vector<Stack *> stacks_;
};

// The scheduler side of the switches: the host thread's own stack, whose bounds ASan learns on the first
// switch into a fiber.
struct SchedulerContext {
  bctx::fcontext_t ctx = nullptr;
  const void *stack_bottom = nullptr;
  size_t stack_size = 0;
  void *fake_stack = nullptr;
};

class Fiber {
 public:
  using Entry = void (*)(void *arg);
  // Prepares the fiber to run entry(arg) on `stack`; nothing runs until the first resume().
  void start(Stack *stack, SchedulerContext *sched, Entry entry, void *arg);
  // From the scheduler: runs the fiber until it yields or finishes. Returns true once it has finished.
  bool resume();
  // From inside the fiber: back to the scheduler; returns when the scheduler resumes this fiber again.
  void yield();
  bool finished() const { return finished_; }
  bool started() const { return ctx_ != nullptr; }
  Stack *stack() const { return stack_; }

 private:
  static void trampoline(bctx::transfer_t t);
  bctx::fcontext_t ctx_ = nullptr;
  Stack *stack_ = nullptr;
  SchedulerContext *sched_ = nullptr;
  Entry entry_ = nullptr;
  void *arg_ = nullptr;
  void *fake_stack_ = nullptr;
  bool finished_ = false;
};

}  // namespace emu
}  // namespace hope
