// exec.cc — the execution model of the emulated GPU.
//
// A launch runs its CTAs one after another on the calling host thread (in grid order, reversed, or shuffled,
// by schedule). Inside a CTA every CUDA thread is a fiber; the scheduler resumes one runnable fiber at a
// time and it runs until it blocks at a collective (__syncthreads, a warp shuffle or vote, __syncwarp,
// ldmatrix, mma), is preempted at a preemption point (random schedule only), or exits. A collective resolves
// when every participating thread has arrived; the last to arrive computes it for all of them. Which
// runnable fiber goes next is the schedule:
//   lockstep  round robin over the threads: every thread advances to its next blocking point in turn;
//   forward   warp-serial: always the lowest-numbered runnable thread, so warp 0 runs until all its lanes
//             wait at a CTA barrier, then warp 1, ...;
//   reverse   warp-serial from the last warp and the last lane down;
//   random    a seeded random runnable thread, plus random preemption at cp.async and atomics.
// A missing barrier therefore lets some warp read shared memory that another has not yet written (still
// NaN-filled, or poisoned by an in-flight cp.async) under at least one schedule.
//
// Errors in kernel code (a divergent collective, a deadlock, a read of in-flight shared memory, a shared
// access out of bounds, a thread exiting with copies in flight, ...) are reported with the kernel's file and
// line, counted (hopeemu_error_count) and fail the launch (cudaErrorLaunchFailure).
#include <sys/mman.h>

#include <algorithm>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <numeric>
#include <string>

#include "hope_emu/control.h"
#include "internal.h"

namespace hope {
namespace emu {

// ---- configuration --------------------------------------------------------------------------------------

static uint64_t parse_u64(const char *s, uint64_t fallback) {
  if (s == nullptr || *s == '\0') return fallback;
  char *end = nullptr;
  const unsigned long long v = std::strtoull(s, &end, 0);
  return end != s ? static_cast<uint64_t>(v) : fallback;
}

const char *schedule_name(Schedule s) {
  switch (s) {
    case Schedule::kLockstep: return "lockstep";
    case Schedule::kWarpForward: return "forward";
    case Schedule::kWarpReverse: return "reverse";
    case Schedule::kRandom: return "random";
  }
  return "?";
}

const Config &config() {
  static const Config cfg = [] {
    Config c;
    const char *s = std::getenv("HOPE_EMU_SCHEDULE");
    if (s != nullptr && *s != '\0') {
      const std::string v(s);
      if (v == "lockstep") c.schedule = Schedule::kLockstep;
      else if (v == "forward" || v == "warp-serial") c.schedule = Schedule::kWarpForward;
      else if (v == "reverse" || v == "warp-serial-reversed") c.schedule = Schedule::kWarpReverse;
      else if (v == "random") c.schedule = Schedule::kRandom;
      else {
        std::fprintf(stderr, "hope_emu: HOPE_EMU_SCHEDULE=%s is not lockstep, forward, reverse or random\n", s);
        std::abort();
      }
    }
    c.seed = parse_u64(std::getenv("HOPE_EMU_SEED"), 1);
    c.approx_ulp = static_cast<int>(parse_u64(std::getenv("HOPE_EMU_APPROX_ULP"), 2));
    c.max_reports = static_cast<int>(parse_u64(std::getenv("HOPE_EMU_MAX_REPORTS"), 20));
#ifdef HOPE_EMU_ASAN
    const size_t default_kb = 512;  // ASan frames carry redzones
#else
    const size_t default_kb = 128;
#endif
    c.stack_bytes = static_cast<size_t>(parse_u64(std::getenv("HOPE_EMU_STACK_KB"), default_kb)) * 1024;
    const uint64_t cc = parse_u64(std::getenv("HOPE_EMU_CC"), 90);
    if (cc != 90 && cc != 80) {
      std::fprintf(stderr, "hope_emu: HOPE_EMU_CC=%" PRIu64 " is not 90 or 80\n", cc);
      std::abort();
    }
    c.cc_major = static_cast<int>(cc / 10);
    c.cc_minor = static_cast<int>(cc % 10);
    const char *vis = std::getenv("CUDA_VISIBLE_DEVICES");
    if (vis != nullptr) {
      // The emulated device is device 0: visible when the list starts with 0 (as the real runtime reads it).
      const std::string v(vis);
      c.no_device = v.empty() || !(v[0] == '0' && (v.size() == 1 || v[1] == ','));
    }
    return c;
  }();
  return cfg;
}

// ---- per-host-thread state --------------------------------------------------------------------------------

namespace {

struct HostThreadState {
  Cta *cta = nullptr;
  StackPool *stacks = nullptr;
  uint8_t *arena = nullptr;
  ~HostThreadState() {
    delete stacks;
    if (arena != nullptr) munmap(arena, kArenaBytes);
  }
};
// initial-exec: no __tls_get_addr on every access from kernel code (the library is linked, not dlopen'ed alone).
__attribute__((tls_model("initial-exec"))) thread_local HostThreadState tls;

std::atomic<long> g_error_count{0};
std::atomic<long> g_reports{0};
std::atomic<uint64_t> g_launch_counter{0};

const ThreadIds kNoIds{};

}  // namespace

Cta *current_cta() { return tls.cta; }

const ThreadIds &ids() {
  Cta *c = tls.cta;
  if (c == nullptr || c->current == nullptr) {
    note_host_error("a CUDA built-in variable (threadIdx, blockIdx, ...) was read outside an emulated kernel");
    return kNoIds;
  }
  return c->ids;
}

Thread &current_thread(Site site, const char *what) {
  Cta *c = tls.cta;
  if (c == nullptr || c->current == nullptr) {
    std::fprintf(stderr, "hope_emu: fatal: %s called outside an emulated kernel (%s:%d)\n", what,
                 site.file ? site.file : "?", site.line);
    std::abort();
  }
  return *c->current;
}

// ---- errors ------------------------------------------------------------------------------------------------

static void vreport(Cta *cta, Site site, bool fatal, const char *fmt, va_list ap) {
  g_error_count.fetch_add(1);
  if (cta != nullptr && cta->launch != nullptr) {
    cta->launch->failed = true;
    cta->launch->errors++;
  }
  const long n = g_reports.fetch_add(1);
  if (n < config().max_reports) {
    char msg[1024];
    std::vsnprintf(msg, sizeof msg, fmt, ap);
    char where[256] = "";
    if (cta != nullptr) {
      const Thread *t = cta->blame != nullptr ? cta->blame : cta->current;
      std::snprintf(where, sizeof where, " [block (%u,%u,%u) thread (%u,%u,%u), schedule %s, seed %" PRIu64 "]",
                    cta->bid.x, cta->bid.y, cta->bid.z, t ? t->tid.x : 0u, t ? t->tid.y : 0u, t ? t->tid.z : 0u,
                    schedule_name(config().schedule), cta->launch ? cta->launch->seed : 0);
    }
    std::fprintf(stderr, "hope_emu: error: %s:%d: %s%s\n", site.file ? site.file : "?", site.line, msg, where);
  } else if (n == config().max_reports) {
    std::fprintf(stderr, "hope_emu: further errors are counted but not printed (HOPE_EMU_MAX_REPORTS)\n");
  }
  if (fatal && cta != nullptr) cta->aborted = true;
}

void report(Site site, bool fatal, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vreport(tls.cta, site, fatal, fmt, ap);
  va_end(ap);
  Cta *cta = tls.cta;
  // A fatal error stops the CTA: its threads are abandoned at their current point.
  if (fatal && cta != nullptr && cta->current != nullptr) cta->current->fiber.yield();
}

void note_host_error(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vreport(nullptr, Site{"(host)", 0}, false, fmt, ap);
  va_end(ap);
}

// ---- scheduling ------------------------------------------------------------------------------------------

static void set_bit(std::vector<uint64_t> &bits, int i) { bits[static_cast<size_t>(i) >> 6] |= uint64_t{1} << (i & 63); }
static void clear_bit(std::vector<uint64_t> &bits, int i) {
  bits[static_cast<size_t>(i) >> 6] &= ~(uint64_t{1} << (i & 63));
}

void make_runnable(Cta &cta, int linear) {
  Thread &t = cta.threads[static_cast<size_t>(linear)];
  if (t.state == Thread::kBlocked) {
    t.state = Thread::kRunnable;
    t.wait_what = nullptr;
    set_bit(cta.runnable, linear);
    cta.runnable_count++;
  }
}

void block_current(Cta &cta, Site site, const char *what) {
  Thread &t = *cta.current;
  t.state = Thread::kBlocked;
  t.wait_site = site;
  t.wait_what = what;
  clear_bit(cta.runnable, t.linear);
  cta.runnable_count--;
  t.fiber.yield();
}

void preemption_point() {
  Cta *cta = tls.cta;
  if (cta == nullptr || cta->current == nullptr || config().schedule != Schedule::kRandom) return;
  if ((cta->rng() & 3u) != 0) return;  // one chance in four
  cta->current->fiber.yield();          // stays runnable: the scheduler picks anew
}

// The next thread to run under the configured schedule; -1 when none is runnable.
static int pick(Cta &cta) {
  if (cta.runnable_count == 0) return -1;
  const int words = static_cast<int>(cta.runnable.size());
  switch (config().schedule) {
    case Schedule::kWarpForward:
      for (int w = 0; w < words; ++w)
        if (cta.runnable[w] != 0) return w * 64 + __builtin_ctzll(cta.runnable[w]);
      break;
    case Schedule::kWarpReverse:
      for (int w = words - 1; w >= 0; --w)
        if (cta.runnable[w] != 0) return w * 64 + 63 - __builtin_clzll(cta.runnable[w]);
      break;
    case Schedule::kRandom: {
      int k = static_cast<int>(cta.rng() % static_cast<uint64_t>(cta.runnable_count));
      for (int w = 0; w < words; ++w) {
        uint64_t bits = cta.runnable[w];
        const int c = __builtin_popcountll(bits);
        if (k >= c) {
          k -= c;
          continue;
        }
        while (k-- > 0) bits &= bits - 1;
        return w * 64 + __builtin_ctzll(bits);
      }
      break;
    }
    case Schedule::kLockstep: {
      // The first runnable thread at or after the cursor, wrapping around.
      const int start = cta.cursor >= cta.nthreads ? 0 : cta.cursor;
      for (int pass = 0; pass < 2; ++pass) {
        const int from = pass == 0 ? start : 0;
        for (int w = from >> 6; w < words; ++w) {
          uint64_t bits = cta.runnable[w];
          if (w == (from >> 6)) bits &= ~uint64_t{0} << (from & 63);
          if (bits != 0) {
            const int i = w * 64 + __builtin_ctzll(bits);
            cta.cursor = i + 1;
            return i;
          }
        }
      }
      break;
    }
  }
  return -1;
}

uint32_t warp_lane_mask(const Cta &cta, int warp) {
  const int lanes = std::min(kWarp, cta.nthreads - warp * kWarp);
  return lanes >= 32 ? 0xffffffffu : ((uint32_t{1} << lanes) - 1u);
}

static const char *kind_name(int kind);

// A thread has exited: it may have been the last one a pending barrier or warp collective waited for, or
// it may leave copies in flight. Both are errors.
static void on_thread_exit(Cta &cta, Thread &t) {
  size_t inflight = t.uncommitted.size();
  const PendingCopy *first = t.uncommitted.empty() ? nullptr : &t.uncommitted.front();
  for (const auto &g : t.groups) {
    inflight += g.size();
    if (first == nullptr && !g.empty()) first = &g.front();
  }
  if (inflight > 0)
    report(first->site, false,
           "thread exited with %zu cp.async copies still in flight (the first issued here); wait for them "
           "(cp.async.wait_group / wait_all) before exiting",
           inflight);
  // Drop its copies so the bytes are no longer marked in flight.
  auto drop = [&](const PendingCopy &c) {
    for (uint32_t w = c.dst / kSmemWord; w < (c.dst + static_cast<uint32_t>(c.bytes)) / kSmemWord; ++w)
      cta.meta[w].inflight_by = -1;
    HOPE_EMU_UNPOISON(cta.arena + c.dst, static_cast<size_t>(c.bytes));
  };
  for (const auto &c : t.uncommitted) drop(c);
  for (const auto &g : t.groups)
    for (const auto &c : g) drop(c);
  t.uncommitted.clear();
  t.groups.clear();

  WarpOp &op = cta.warp_ops[static_cast<size_t>(t.warp)];
  if (op.active && (op.mask >> t.lane & 1u) && !(op.arrived >> t.lane & 1u))
    report(op.site, true, "lane %d of warp %d exited while its warp waits for it at %s", t.lane, t.warp,
           kind_name(op.kind));
  if (cta.bar.active && cta.bar.arrived + cta.exited == cta.nthreads)
    report(cta.bar.site, true,
           "__syncthreads can never complete: thread %d exited while the other threads of its block wait here "
           "(a barrier in divergent code)",
           t.linear);
  if (cta.sm90) sm90_thread_exit(cta, t);
}

static void fiber_main(void *arg) {
  Cta &cta = *static_cast<Cta *>(arg);
  cta.launch->body();
}

// Runs one CTA to completion (or abandons it after a fatal error).
static void run_cta(Launch &launch, Cta &cta) {
  const int n = cta.nthreads;
  for (int i = 0; i < n; ++i) {
    Thread &t = cta.threads[static_cast<size_t>(i)];
    t.linear = i;
    t.tid = uint3{static_cast<unsigned>(i % static_cast<int>(launch.block.x)),
                  static_cast<unsigned>((i / static_cast<int>(launch.block.x)) % static_cast<int>(launch.block.y)),
                  static_cast<unsigned>(i / static_cast<int>(launch.block.x * launch.block.y))};
    t.warp = i / kWarp;
    t.lane = i % kWarp;
    t.state = Thread::kRunnable;
    t.wait_what = nullptr;
    t.uncommitted.clear();
    t.groups.clear();
    t.fiber.start(tls.stacks->get(static_cast<size_t>(i)), &cta.sched, &fiber_main, &cta);
  }
  cta.runnable.assign(static_cast<size_t>((n + 63) / 64), 0);
  for (int i = 0; i < n; ++i) set_bit(cta.runnable, i);
  cta.runnable_count = n;
  cta.cursor = 0;
  cta.exited = 0;
  cta.aborted = false;

  while (!cta.aborted) {
    const int next = pick(cta);
    if (next < 0) {
      // Nobody can run: the TMA copies some thread waits for land now (as late as possible).
      if (cta.sm90 && sm90_make_progress(cta)) continue;
      break;
    }
    Thread &t = cta.threads[static_cast<size_t>(next)];
    cta.current = &t;
    cta.ids.thread_idx = t.tid;
    const bool done = t.fiber.resume();
    cta.current = nullptr;
    if (done) {
      t.state = Thread::kExited;
      clear_bit(cta.runnable, t.linear);
      cta.runnable_count--;
      cta.exited++;
      cta.warp_exited[static_cast<size_t>(t.warp)] |= uint32_t{1} << t.lane;
      cta.blame = &t;
      on_thread_exit(cta, t);
      cta.blame = nullptr;
    }
  }
  if (!cta.aborted && cta.exited < n) {
    // Nobody can run, yet some threads wait: a deadlock. Name where they wait.
    std::map<std::pair<std::string, int>, int> where;
    const Thread *first = nullptr;
    for (const Thread &t : cta.threads)
      if (t.state == Thread::kBlocked) {
        where[{t.wait_site.file ? t.wait_site.file : "?", t.wait_site.line}]++;
        if (first == nullptr) first = &t;
      }
    std::string list;
    for (const auto &w : where)
      list += " " + std::to_string(w.second) + " at " + w.first.first + ":" + std::to_string(w.first.second) + ";";
    cta.blame = first;
    report(first->wait_site, false, "deadlock: %d of %d threads wait forever (thread %d in %s):%s", n - cta.exited, n,
           first->linear, first->wait_what ? first->wait_what : "?", list.c_str());
    cta.blame = nullptr;
    cta.aborted = true;
  }
  if (!cta.aborted && cta.sm90) sm90_cta_end(cta);
  if (cta.aborted) {
    // Abandon the threads still alive; their stacks may carry ASan frame poison.
    for (Thread &t : cta.threads)
      if (t.state != Thread::kExited && t.fiber.started()) t.fiber.stack()->dirty = true;
  }
  cta.current = nullptr;
}

// ---- shared memory ---------------------------------------------------------------------------------------

bool smem_check_range(Cta &cta, uint32_t addr, size_t bytes, Site site, const char *what) {
  if (static_cast<uint64_t>(addr) + bytes <= cta.used && bytes > 0) return true;
  report(site, false, "%s of %zu bytes at shared address %u is outside the block's %u bytes of shared memory "
         "(%u dynamic)", what, bytes, addr, cta.used, cta.dyn_bytes);
  return false;
}

bool smem_check_read(Cta &cta, int reader, uint32_t addr, size_t bytes, Site site, const char *what) {
  if (!smem_check_range(cta, addr, bytes, site, what)) return false;
  const Thread &r = cta.threads[static_cast<size_t>(reader)];
  for (uint32_t w = addr / kSmemWord; w < (addr + bytes + kSmemWord - 1) / kSmemWord; ++w) {
    const WordMeta &m = cta.meta[w];
    if (m.inflight_by >= 0) {
      if (m.inflight_tma)
        report(site, false,
               "%s reads shared bytes [%u, %u) while a TMA copy into them (thread %d, issued at %s:%d) is still in "
               "flight: wait for its mbarrier phase first (a missing wait, or the wrong parity)",
               what, w * kSmemWord, (w + 1) * kSmemWord, m.inflight_by, m.issue_file ? m.issue_file : "?",
               m.issue_line);
      else
        report(site, false,
               "%s reads shared bytes [%u, %u) while a cp.async into them (thread %d, issued at %s:%d) is still in "
               "flight: a missing or too shallow cp.async.wait_group",
               what, w * kSmemWord, (w + 1) * kSmemWord, m.inflight_by, m.issue_file ? m.issue_file : "?",
               m.issue_line);
      return false;
    }
    if (m.landed_by >= 0 && m.landed_by != reader) {
      const Thread &o = cta.threads[static_cast<size_t>(m.landed_by)];
      const bool barrier_since = cta.barrier_epoch != m.landed_epoch;
      const bool warp_sync_since = o.warp == r.warp && cta.warp_epoch[static_cast<size_t>(r.warp)] != m.landed_wepoch;
      if (!barrier_since && !warp_sync_since) {
        report(site, false,
               "%s reads shared bytes [%u, %u) that thread %d's cp.async (issued at %s:%d) landed with no barrier "
               "since: a copy is visible to other threads only after a __syncthreads",
               what, w * kSmemWord, (w + 1) * kSmemWord, m.landed_by, m.issue_file ? m.issue_file : "?",
               m.issue_line);
        return false;
      }
    }
  }
  return true;
}

void *dynamic_smem_base() {
  Cta *cta = tls.cta;
  if (cta == nullptr) {
    note_host_error("dynamic shared memory requested outside an emulated kernel");
    return nullptr;
  }
  return cta->arena;
}

void *static_smem_alloc(const char *file, int line, size_t bytes, size_t align, const char *type) {
  Cta *cta = tls.cta;
  if (cta == nullptr) {
    note_host_error("static shared memory declared outside an emulated kernel");
    return nullptr;
  }
  for (const StaticAlloc &s : cta->statics)
    if (s.line == line && s.type == type && std::strcmp(s.file, file) == 0) return cta->arena + s.offset;
  align = std::max<size_t>(align, 16);
  const size_t offset = (cta->used + align - 1) / align * align;
  const size_t static_total = offset + bytes - cta->dyn_bytes;
  if (offset + bytes > kArenaBytes || static_total > 48 * 1024) {
    report(Site{file, line}, true, "static shared memory of %zu bytes exceeds the 48 KB a block may declare", bytes);
    return cta->arena;
  }
  HOPE_EMU_UNPOISON(cta->arena + cta->used, offset + bytes - cta->used);
  std::memset(cta->arena + offset, 0xff, bytes);  // uninitialised shared memory: NaN for every float type
  cta->statics.push_back(StaticAlloc{file, line, type, static_cast<uint32_t>(offset), static_cast<uint32_t>(bytes)});
  cta->used = static_cast<uint32_t>(offset + bytes);
  return cta->arena + offset;
}

uint32_t shared_address(const void *generic, Site site) {
  Cta *cta = tls.cta;
  if (cta == nullptr) {
    note_host_error("__cvta_generic_to_shared outside an emulated kernel (%s:%d)", site.file, site.line);
    return 0;
  }
  const uint8_t *p = static_cast<const uint8_t *>(generic);
  if (p < cta->arena || p > cta->arena + cta->used) {
    report(site, false, "__cvta_generic_to_shared of a pointer that is not in the block's shared memory");
    return 0;
  }
  return static_cast<uint32_t>(p - cta->arena);
}

void *shared_pointer(uint32_t addr, size_t bytes, Site site) {
  Cta *cta = tls.cta;
  if (cta == nullptr) {
    note_host_error("shared address used outside an emulated kernel (%s:%d)", site.file, site.line);
    return nullptr;
  }
  if (!smem_check_range(*cta, addr, bytes, site, "access")) return nullptr;
  return cta->arena + addr;
}

// ---- barriers and warp collectives ------------------------------------------------------------------------------

// Two call sites are the same line of the same file (one translation unit's __FILE__ literals are one object,
// so the pointer comparison almost always decides).
static bool same_site(const Site &a, const Site &b) {
  return a.line == b.line && (a.file == b.file || std::strcmp(a.file, b.file) == 0);
}

void syncthreads(Site site) {
  Cta *cta = tls.cta;
  Thread &t = current_thread(site, "__syncthreads");
  Cta::Barrier &b = cta->bar;
  if (!b.active) {
    b.active = true;
    b.site = site;
    b.arrived = 0;
  } else if (!same_site(b.site, site)) {
    report(site, true, "__syncthreads reached here by thread %d while other threads wait at another "
           "__syncthreads (%s:%d): barriers in divergent code", t.linear, b.site.file, b.site.line);
    return;
  }
  b.arrived++;
  if (b.arrived + cta->exited == cta->nthreads) {
    if (cta->exited > 0) {
      report(site, true, "__syncthreads completed only because %d threads of the block exited before it",
             cta->exited);
      return;
    }
    b.active = false;
    cta->barrier_epoch++;
    for (Thread &o : cta->threads)
      if (o.state == Thread::kBlocked && o.wait_what != nullptr && std::strcmp(o.wait_what, "__syncthreads") == 0)
        make_runnable(*cta, o.linear);
    return;
  }
  block_current(*cta, site, "__syncthreads");
}

static const char *kind_name(int kind) {
  switch (kind) {
    case 1: return "__syncwarp";
    case 2: return "a warp shuffle";
    case 3: return "a warp vote";
    case 4: return "ldmatrix";
    case 5: return "mma";
    case 6: return "a warpgroup collective (wgmma, setmaxnreg)";
    default: return "a warp collective";
  }
}

void warp_collective(int kind, int variant, uint32_t mask, void *payload, Site site, const char *what,
                     WarpComplete complete) {
  Cta *cta = tls.cta;
  Thread &t = current_thread(site, what);
  WarpOp &op = cta->warp_ops[static_cast<size_t>(t.warp)];
  const uint32_t exists = warp_lane_mask(*cta, t.warp);
  if (!(mask >> t.lane & 1u)) {
    report(site, false, "%s with member mask 0x%08x called by lane %d, which is not in the mask", what, mask,
           t.lane);
    mask |= uint32_t{1} << t.lane;
  }
  if ((mask & ~exists) != 0) {
    report(site, true, "%s with member mask 0x%08x names lanes that do not exist in this warp (0x%08x)", what,
           mask, exists);
    return;
  }
  if (!op.active) {
    op.active = true;
    op.kind = kind;
    op.variant = variant;
    op.site = site;
    op.mask = mask;
    op.arrived = 0;
  } else if (op.kind != kind || op.variant != variant || op.mask != mask || !same_site(op.site, site)) {
    report(site, true,
           "divergent warp: lane %d reached %s here (mask 0x%08x) while lanes 0x%08x of its warp wait at %s at %s:%d "
           "(mask 0x%08x)",
           t.lane, what, mask, op.arrived, kind_name(op.kind), op.site.file, op.site.line, op.mask);
    return;
  }
  op.payload[t.lane] = payload;
  op.arrived |= uint32_t{1} << t.lane;
  if (op.arrived != op.mask) {
    const uint32_t gone = op.mask & ~op.arrived & cta->warp_exited[static_cast<size_t>(t.warp)];
    if (gone != 0) {
      report(site, true, "%s waits for lane %d, which has exited", what, __builtin_ctz(gone));
      return;
    }
  }
  if (op.arrived == op.mask) {
    WarpOp done = op;  // the completion may itself report (and must see a consistent op)
    op.active = false;
    complete(done, *cta, t.warp);
    for (int l = 0; l < kWarp; ++l)
      if ((done.mask >> l & 1u) && l != t.lane) make_runnable(*cta, t.warp * kWarp + l);
    return;
  }
  block_current(*cta, site, what);
}

static void complete_syncwarp(WarpOp &, Cta &cta, int warp) { cta.warp_epoch[static_cast<size_t>(warp)]++; }

void syncwarp(unsigned mask, Site site) { warp_collective(1, 0, mask, nullptr, site, "__syncwarp", &complete_syncwarp); }

namespace {
struct ShufflePayload {
  uint64_t value;
  int arg;
  int width;
  uint64_t result;
};
struct VotePayload {
  int pred;
  unsigned result;
};
}  // namespace

// CUDA C++ Programming Guide, "Warp Shuffle Functions": the source lane of each kind, within segments of
// `width` lanes; a lane whose source is outside its segment (up/down) or in a later segment (xor) keeps its
// own value. Reading from a lane outside the member mask is undefined: reported.
static void complete_shuffle(WarpOp &op, Cta &cta, int warp) {
  uint64_t values[kWarp] = {};
  for (int l = 0; l < kWarp; ++l)
    if (op.mask >> l & 1u) values[l] = static_cast<ShufflePayload *>(op.payload[l])->value;
  for (int l = 0; l < kWarp; ++l) {
    if (!(op.mask >> l & 1u)) continue;
    ShufflePayload &p = *static_cast<ShufflePayload *>(op.payload[l]);
    const int w = p.width;
    if (w < 1 || w > 32 || (w & (w - 1)) != 0) {
      report(op.site, false, "shuffle width %d is not a power of two in [1, 32]", w);
      p.result = values[l];
      continue;
    }
    const int seg = l / w * w;
    int src = l;
    switch (op.variant) {
      case kShflIdx: src = seg + (p.arg % w + w) % w; break;
      case kShflUp: src = (l - seg) >= p.arg ? l - p.arg : l; break;
      case kShflDown: src = (l - seg) + p.arg < w ? l + p.arg : l; break;
      case kShflXor: {
        const int x = l ^ p.arg;
        src = (x < 0 || x >= kWarp || x / w * w > seg) ? l : x;
        break;
      }
      default: break;
    }
    if (!(op.mask >> src & 1u)) {
      report(op.site, false, "lane %d of warp %d reads lane %d, which is not in the shuffle's member mask 0x%08x", l,
             warp, src, op.mask);
      p.result = values[l];
      continue;
    }
    p.result = values[src];
  }
  (void)cta;
}

uint64_t shuffle(unsigned mask, uint64_t value, ShuffleKind kind, int lane_arg, int width, Site site) {
  ShufflePayload p{value, lane_arg, width, 0};
  warp_collective(2, kind, mask, &p, site, "a warp shuffle", &complete_shuffle);
  return p.result;
}

static void complete_vote(WarpOp &op, Cta &, int) {
  unsigned ballot = 0;
  for (int l = 0; l < kWarp; ++l)
    if ((op.mask >> l & 1u) && static_cast<VotePayload *>(op.payload[l])->pred != 0) ballot |= 1u << l;
  for (int l = 0; l < kWarp; ++l) {
    if (!(op.mask >> l & 1u)) continue;
    VotePayload &p = *static_cast<VotePayload *>(op.payload[l]);
    switch (op.variant) {
      case kVoteBallot: p.result = ballot; break;
      case kVoteAny: p.result = ballot != 0; break;
      default: p.result = ballot == op.mask; break;
    }
  }
}

unsigned vote(unsigned mask, int predicate, VoteKind kind, Site site) {
  VotePayload p{predicate, 0};
  warp_collective(3, kind, mask, &p, site, "a warp vote", &complete_vote);
  return p.result;
}

// ---- launches -------------------------------------------------------------------------------------------------

void execute_launch(Launch &launch) {
  if (tls.cta != nullptr) {
    note_host_error("a kernel launched from inside an emulated kernel (dynamic parallelism is not emulated)");
    launch.failed = true;
    return;
  }
  const Config &cfg = config();
  if (tls.stacks == nullptr) tls.stacks = new StackPool(cfg.stack_bytes);
  if (tls.arena == nullptr) {
    void *m = mmap(nullptr, kArenaBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) {
      note_host_error("cannot map the shared-memory arena");
      launch.failed = true;
      return;
    }
    tls.arena = static_cast<uint8_t *>(m);
    HOPE_EMU_POISON(tls.arena, kArenaBytes);
  }
  const int n = static_cast<int>(launch.block.x * launch.block.y * launch.block.z);
  Cta cta;
  cta.launch = &launch;
  cta.nthreads = n;
  cta.nwarps = (n + kWarp - 1) / kWarp;
  cta.threads.resize(static_cast<size_t>(n));
  cta.warp_ops.resize(static_cast<size_t>(cta.nwarps));
  cta.warp_epoch.assign(static_cast<size_t>(cta.nwarps), 0);
  cta.warp_exited.assign(static_cast<size_t>(cta.nwarps), 0);
  cta.arena = tls.arena;
  cta.meta.resize(kArenaBytes / kSmemWord);
  cta.ids.block_dim = launch.block;
  cta.ids.grid_dim = launch.grid;

  const uint64_t total = static_cast<uint64_t>(launch.grid.x) * launch.grid.y * launch.grid.z;
  std::vector<uint64_t> order;
  if (cfg.schedule != Schedule::kLockstep && cfg.schedule != Schedule::kWarpForward) {
    order.resize(total);
    std::iota(order.begin(), order.end(), uint64_t{0});
    if (cfg.schedule == Schedule::kWarpReverse) {
      std::reverse(order.begin(), order.end());
    } else {
      std::mt19937_64 rng(launch.seed);
      std::shuffle(order.begin(), order.end(), rng);
    }
  }
  size_t meta_dirty = cta.meta.size();
  tls.cta = &cta;
  for (uint64_t k = 0; k < total && !launch.failed; ++k) {
    const uint64_t b = order.empty() ? k : order[k];
    cta.bid = uint3{static_cast<unsigned>(b % launch.grid.x), static_cast<unsigned>(b / launch.grid.x % launch.grid.y),
                    static_cast<unsigned>(b / (static_cast<uint64_t>(launch.grid.x) * launch.grid.y))};
    cta.ids.block_idx = cta.bid;
    cta.rng.seed(launch.seed ^ (b * 0x9E3779B97F4A7C15ull));
    // Shared memory: the launched dynamic size, NaN-filled; everything past it poisoned until declared.
    cta.dyn_bytes = static_cast<uint32_t>(launch.smem);
    cta.used = cta.dyn_bytes;
    cta.statics.clear();
    HOPE_EMU_UNPOISON(cta.arena, kArenaBytes);
    std::memset(cta.arena, 0xff, (cta.dyn_bytes + 15u) / 16u * 16u);
    HOPE_EMU_POISON(cta.arena + cta.dyn_bytes, kArenaBytes - cta.dyn_bytes);
    std::fill(cta.meta.begin(), cta.meta.begin() + meta_dirty, WordMeta{});
    cta.barrier_epoch = 0;
    std::fill(cta.warp_epoch.begin(), cta.warp_epoch.end(), 0u);
    std::fill(cta.warp_exited.begin(), cta.warp_exited.end(), 0u);
    cta.bar = Cta::Barrier{};
    for (WarpOp &op : cta.warp_ops) op = WarpOp{};
    if (cta.sm90) sm90_cta_begin(cta);
    run_cta(launch, cta);
    meta_dirty = (cta.used + kSmemWord - 1) / kSmemWord;
  }
  tls.cta = nullptr;
  HOPE_EMU_POISON(cta.arena, kArenaBytes);
}

// ---- approximate math ------------------------------------------------------------------------------------

// Moves a correctly rounded float by a deterministic amount in [-ulp, +ulp] ulps, chosen from the input bits.
static float perturb(float exact, float input, int ulp) {
  if (ulp <= 0 || !std::isfinite(exact) || exact == 0.f) return exact;
  uint32_t bits;
  std::memcpy(&bits, &input, 4);
  uint32_t h = bits * 0x9E3779B1u;
  h ^= h >> 15;
  const int k = static_cast<int>(h % static_cast<uint32_t>(2 * ulp + 1)) - ulp;
  float r = exact;
  for (int i = 0; i < (k < 0 ? -k : k); ++i) r = std::nextafter(r, k < 0 ? 0.f : INFINITY);
  return std::isfinite(r) ? r : exact;
}

float ex2_approx(float x) { return perturb(static_cast<float>(std::exp2(static_cast<double>(x))), x, config().approx_ulp); }
float approx_expf(float x) { return perturb(static_cast<float>(std::exp(static_cast<double>(x))), x, config().approx_ulp); }
float approx_logf(float x) {
  return perturb(static_cast<float>(std::log(static_cast<double>(x))), x, std::min(config().approx_ulp, 1));
}
float approx_log2f(float x) {
  return perturb(static_cast<float>(std::log2(static_cast<double>(x))), x, std::min(config().approx_ulp, 1));
}

}  // namespace emu
}  // namespace hope

// ---- the control API (hope_emu/control.h) --------------------------------------------------------------------
extern "C" {
HOPE_EMU_API long hopeemu_error_count(void) { return hope::emu::g_error_count.load(); }
HOPE_EMU_API const char *hopeemu_schedule(void) { return hope::emu::schedule_name(hope::emu::config().schedule); }
HOPE_EMU_API uint64_t hopeemu_next_launch_index(void) { return hope::emu::g_launch_counter.fetch_add(1); }
}
