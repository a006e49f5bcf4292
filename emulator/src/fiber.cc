// fiber.cc — see fiber.h. The switch protocol follows Boost.Context's fcontext (jump_fcontext returns the
// context that jumped to us) and AddressSanitizer's fiber API (sanitizer/common_interface_defs.h):
// __sanitizer_start_switch_fiber before every jump, __sanitizer_finish_switch_fiber right after landing.
#include "fiber.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <new>

#if defined(__SANITIZE_ADDRESS__)
#define HOPE_EMU_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define HOPE_EMU_ASAN 1
#endif
#endif
#ifdef HOPE_EMU_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

namespace hope {
namespace emu {

StackPool::~StackPool() {
  for (Stack *s : stacks_) {
    munmap(s->mapping, s->mapping_bytes);
    delete s;
  }
}

Stack *StackPool::get(size_t index) {
  while (stacks_.size() <= index) {
    const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    const size_t usable = (bytes_ + page - 1) / page * page;
    void *m = mmap(nullptr, usable + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED) {
      std::fprintf(stderr, "hope_emu: cannot map a %zu-byte fiber stack\n", usable + page);
      std::abort();
    }
    mprotect(m, page, PROT_NONE);  // guard page below the stack (stacks grow down)
    Stack *s = new Stack;
    s->mapping = m;
    s->mapping_bytes = usable + page;
    s->base = static_cast<char *>(m) + page;
    s->bytes = usable;
    stacks_.push_back(s);
  }
  Stack *s = stacks_[index];
#ifdef HOPE_EMU_ASAN
  // A stack whose fiber was abandoned (a deadlocked CTA) may still carry poisoned frame redzones.
  if (s->dirty) ASAN_UNPOISON_MEMORY_REGION(s->base, s->bytes);
#endif
  s->dirty = false;
  return s;
}

void Fiber::start(Stack *stack, SchedulerContext *sched, Entry entry, void *arg) {
  stack_ = stack;
  sched_ = sched;
  entry_ = entry;
  arg_ = arg;
  fake_stack_ = nullptr;
  finished_ = false;
  ctx_ = bctx::make_fcontext(stack->top(), stack->bytes, &Fiber::trampoline);
}

bool Fiber::resume() {
#ifdef HOPE_EMU_ASAN
  __sanitizer_start_switch_fiber(&sched_->fake_stack, stack_->base, stack_->bytes);
#endif
  bctx::transfer_t t = bctx::jump_fcontext(ctx_, this);
#ifdef HOPE_EMU_ASAN
  __sanitizer_finish_switch_fiber(sched_->fake_stack, nullptr, nullptr);
#endif
  ctx_ = t.fctx;  // where the fiber stopped (meaningless once it has finished)
  return finished_;
}

void Fiber::yield() {
#ifdef HOPE_EMU_ASAN
  __sanitizer_start_switch_fiber(&fake_stack_, sched_->stack_bottom, sched_->stack_size);
#endif
  bctx::transfer_t t = bctx::jump_fcontext(sched_->ctx, nullptr);
  sched_->ctx = t.fctx;
#ifdef HOPE_EMU_ASAN
  __sanitizer_finish_switch_fiber(fake_stack_, &sched_->stack_bottom, &sched_->stack_size);
#endif
}

// The first code to run on a fiber's stack. It never returns (there is nothing to return to): at the end it
// jumps back to the scheduler for good. It keeps no addressable locals, so ASan leaves no redzone behind.
void Fiber::trampoline(bctx::transfer_t t) {
  Fiber *self = static_cast<Fiber *>(t.data);
  self->sched_->ctx = t.fctx;
#ifdef HOPE_EMU_ASAN
  __sanitizer_finish_switch_fiber(nullptr, &self->sched_->stack_bottom, &self->sched_->stack_size);
#endif
  self->entry_(self->arg_);
  self->finished_ = true;
#ifdef HOPE_EMU_ASAN
  __sanitizer_start_switch_fiber(nullptr, self->sched_->stack_bottom, self->sched_->stack_size);
#endif
  bctx::jump_fcontext(self->sched_->ctx, nullptr);
  std::abort();  // unreachable: a finished fiber is never resumed
}

}  // namespace emu
}  // namespace hope
