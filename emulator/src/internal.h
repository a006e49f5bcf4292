// internal.h — state shared by the emulator's sources (never installed, never seen by kernel code).
#pragma once

#include <atomic>
#include <cstdarg>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <vector>

#include <cuda_runtime.h>

#include "fiber.h"
#include "hope_emu/exec.h"

#if defined(__SANITIZE_ADDRESS__)
#define HOPE_EMU_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define HOPE_EMU_ASAN 1
#endif
#endif
#ifdef HOPE_EMU_ASAN
#include <sanitizer/asan_interface.h>
#define HOPE_EMU_POISON(p, n) ASAN_POISON_MEMORY_REGION(p, n)
#define HOPE_EMU_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION(p, n)
#else
#define HOPE_EMU_POISON(p, n) ((void)(p), (void)(n))
#define HOPE_EMU_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

namespace hope {
namespace emu {

// ---- configuration (environment, read once) ---------------------------------------------------------------
enum class Schedule { kLockstep, kWarpForward, kWarpReverse, kRandom };
struct Config {
  Schedule schedule = Schedule::kLockstep;
  uint64_t seed = 1;          // HOPE_EMU_SEED (random schedule)
  int approx_ulp = 2;         // HOPE_EMU_APPROX_ULP
  size_t stack_bytes = 0;     // HOPE_EMU_STACK_KB
  int max_reports = 20;       // HOPE_EMU_MAX_REPORTS: errors printed in full per process
  int cc_major = 9, cc_minor = 0;  // HOPE_EMU_CC (90 or 80)
  bool no_device = false;     // CUDA_VISIBLE_DEVICES hides the emulated device
};
const Config &config();
const char *schedule_name(Schedule s);

// ---- per-CTA execution state ----------------------------------------------------------------------------
constexpr int kWarp = 32;
constexpr size_t kArenaBytes = 512 * 1024;  // dynamic (<= 227 KB opt-in) + static shared memory
constexpr uint32_t kSmemWord = 4;            // hazard metadata granularity (bytes)

struct PendingCopy {
  uint32_t dst;
  int bytes;
  Site site;
  uint8_t data[16];
};

struct Thread {
  int linear = 0;
  uint3 tid{};
  int warp = 0, lane = 0;
  Fiber fiber;
  enum State : uint8_t { kRunnable, kBlocked, kExited } state = kRunnable;
  Site wait_site{nullptr, 0};  // where it blocks
  const char *wait_what = nullptr;
  std::vector<PendingCopy> uncommitted;               // cp.async issued, not yet committed
  std::deque<std::vector<PendingCopy>> groups;        // committed cp.async-groups, oldest first
};

// What a warp-wide collective carries for each lane while the warp gathers.
struct WarpOp {
  bool active = false;
  int kind = 0, variant = 0;
  Site site{nullptr, 0};
  uint32_t mask = 0, arrived = 0;
  void *payload[kWarp] = {};
};
using WarpComplete = void (*)(WarpOp &op, struct Cta &cta, int warp);

// Per 4-byte word of shared memory: the copy in flight into it, and who landed the last one and when.
struct WordMeta {
  int32_t inflight_by = -1;     // thread whose cp.async (or TMA copy) targets it, -1 when none
  bool inflight_tma = false;    // the copy in flight is a TMA tile copy (cp.async.bulk.tensor)
  int32_t landed_by = -1;       // thread whose cp.async last landed it
  uint32_t landed_epoch = 0;    // CTA barrier epoch at landing
  uint32_t landed_wepoch = 0;   // warp __syncwarp epoch of that thread's warp at landing
  const char *issue_file = nullptr;
  int issue_line = 0;
};

struct StaticAlloc {
  const char *file;
  int line;
  std::string type;
  uint32_t offset, bytes;
};

struct Launch;
struct Cta;

// The sm_90 state of a CTA (ptx_sm90.cc): mbarriers, TMA copies in flight, named barriers, the async-proxy
// view of shared memory and each warpgroup's collectives and wgmma groups. Created on a CTA's first sm_90
// instruction.
struct Sm90Cta;
struct Sm90Deleter {
  void operator()(Sm90Cta *p) const;
};

struct Cta {
  Launch *launch = nullptr;
  uint3 bid{};
  int nthreads = 0, nwarps = 0, exited = 0;
  std::vector<Thread> threads;
  Thread *current = nullptr;      // the thread whose fiber is running (null on the scheduler)
  const Thread *blame = nullptr;  // the thread an error found by the scheduler is about
  ThreadIds ids{};
  SchedulerContext sched;
  bool aborted = false;
  std::mt19937_64 rng;
  // runnable threads as a bitmap; `cursor` drives the lockstep round robin
  std::vector<uint64_t> runnable;
  int runnable_count = 0, cursor = 0;
  // shared memory
  uint8_t *arena = nullptr;
  uint32_t dyn_bytes = 0, used = 0;
  std::vector<StaticAlloc> statics;
  std::vector<WordMeta> meta;
  // synchronisation
  uint32_t barrier_epoch = 0;
  std::vector<uint32_t> warp_epoch;
  std::vector<uint32_t> warp_exited;  // lanes of each warp that have exited
  struct Barrier {
    bool active = false;
    Site site{nullptr, 0};
    int arrived = 0;
  } bar;
  std::vector<WarpOp> warp_ops;
  std::unique_ptr<Sm90Cta, Sm90Deleter> sm90;  // null until the CTA's first sm_90 instruction
};

struct Launch {
  dim3 grid, block;
  size_t smem = 0;
  KernelBody body;
  uint64_t seed = 0;
  uint64_t index = 0;
  bool failed = false;
  int errors = 0;
};

// The running CTA and thread of this host thread (null outside an emulated kernel).
Cta *current_cta();
Thread &current_thread(Site site, const char *what);

// ---- scheduling primitives --------------------------------------------------------------------------------
void block_current(Cta &cta, Site site, const char *what);  // leaves the runnable set and yields
void make_runnable(Cta &cta, int linear);
void warp_collective(int kind, int variant, uint32_t mask, void *payload, Site site, const char *what,
                     WarpComplete complete);
uint32_t warp_lane_mask(const Cta &cta, int warp);  // lanes that exist in this warp

// ---- errors -------------------------------------------------------------------------------------------------
// Reports an emulator-detected error in kernel code: counted, printed (the first few in full) with the site,
// the schedule and the thread, and the launch marked failed. `fatal` also aborts the CTA (its threads are
// abandoned) — for errors after which the kernel cannot go on (deadlock, divergence).
void report(Site site, bool fatal, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void note_host_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

// ---- shared memory helpers (exec.cc) ----------------------------------------------------------------------
// Checks [addr, addr + bytes) lies in the CTA's allocated shared memory; reports and returns false if not.
bool smem_check_range(Cta &cta, uint32_t addr, size_t bytes, Site site, const char *what);
// Checks that a reader thread may read [addr, addr + bytes) now: not in flight, and landed copies visible.
bool smem_check_read(Cta &cta, int reader, uint32_t addr, size_t bytes, Site site, const char *what);

// ---- sm_90 hooks of the scheduler (ptx_sm90.cc) ---------------------------------------------------------------
void sm90_cta_begin(Cta &cta);  // a CTA starts: forget the previous CTA's sm_90 state
// Nothing is runnable: lands the TMA copies that a blocked mbarrier waiter needs (copies land as late as
// possible). True when some thread became runnable.
bool sm90_make_progress(Cta &cta);
void sm90_thread_exit(Cta &cta, Thread &t);  // checks what an exiting thread leaves behind
void sm90_cta_end(Cta &cta);                  // copies never waited for, wgmma groups never retired
// The emulated cuTensorMapEncodeTiled (runtime.cc returns it from cudaGetDriverEntryPoint*).
void *tensor_map_encode_tiled_entry();

// ---- the runtime side (runtime.cc) ----------------------------------------------------------------------------
// Records an error for cudaGetLastError and for the next synchronisation (a failed launch).
void set_last_error(cudaError_t e);
void set_async_error(cudaError_t e);
// When `stream` (or a global capture) is capturing: appends `op` to its graph and returns true.
bool capture_if_capturing(cudaStream_t stream, std::function<void()> op, cudaError_t *err);
// Runs a validated launch now.
void execute_launch(Launch &launch);
// Emulated device properties (9.0 H100-like, or 8.0 A100-like with HOPE_EMU_CC=80).
struct DeviceLimits {
  int sm_count;
  size_t smem_per_block, smem_optin, smem_per_sm;
  int max_threads;
};
const DeviceLimits &device_limits();
// Largest dynamic shared memory a kernel may launch with (cudaFuncSetAttribute), default 48 KB.
size_t max_dynamic_smem(const void *kernel);

}  // namespace emu
}  // namespace hope
