// ptx_sm90.cc — the sm_90a instructions of the kernels' PTX wrappers (kernels/attention/ptx_sm90.cuh), emulated
// from the PTX ISA (section titles with their numbers in the ISA 9.0 text; the numbers shift between versions):
//   mbarrier.init / arrive / arrive.expect_tx / try_wait.parity — §9.7.13.15 "Parallel Synchronization and
//       Communication Instructions: mbarrier" (§9.7.13.15.1 contents: phase, pending arrival count, expected
//       arrival count, tx-count; §9.7.13.15.2-4 phase completion and the transaction count; .expect_tx and
//       complete_tx; try_wait.parity: "the parity of the current phase or the immediately preceding phase");
//   cp.async.bulk.tensor (tile mode, global -> shared, mbarrier::complete_tx::bytes) — §9.7.9.25.5 "Data
//       Movement and Conversion Instructions: cp.async.bulk.tensor" and §5.5 "Tensors" (tensor map, bounding
//       box, traversal, out-of-bound elements filled with zero or NaN, §5.5.6 swizzling modes);
//   fence.proxy.async — §9.7.13.4 "membar / fence" and §8 "Memory Consistency Model" (proxies: generic-proxy
//       writes reach the async proxy only through a proxy fence);
//   bar.sync / bar.arrive with an explicit id and thread count — §9.7.13.1 "bar, barrier";
//   setmaxnreg — §9.7.19.5 "Miscellaneous Instructions: setmaxnreg" (.sync.aligned: warpgroup-uniform);
//   wgmma.fence / commit_group / wait_group / mma_async m64nNk16 .f32 accumulators, .f16 / .bf16 inputs —
//       §9.7.15 "Asynchronous Warpgroup Level Matrix Multiply-Accumulate Instructions": §9.7.15.5.1 register
//       fragments (A m64k16 and D m64nN), §9.7.15.5.1.2 shared memory matrix layout (K-major / MN-major, the
//       swizzle atoms of the 128B, 64B and 32B modes and the interleaved "no swizzle" core matrices, leading and
//       stride dimension byte offsets), the matrix descriptor (start address, LBO, SBO, base offset, swizzle
//       mode in bits 62-63), §9.7.15.6 wgmma.fence, §9.7.15.7 commit_group, §9.7.15.8 wait_group.
//
// Stricter than the hardware (each violation is reported with the kernel's file and line):
//   * TMA copies read global memory at issue, poison their destination (0xff, ASan-poisoned in ASan builds) and
//     land as late as possible: only when no thread can run and some thread waits on their mbarrier's phase.
//     A read of a destination before its phase completed (a missing wait, a wrong parity) sees poison, and
//     wgmma reports it;
//   * wgmma accumulators hold NaN from mma_async until the wait_group that retires them; a write to them in
//     between, a change of the A-fragment registers or of the shared-memory operands before the wait, an
//     mma_async without a wgmma.fence since the warpgroup's last wait_group, and a divergent or partial
//     warpgroup are errors. Products of the 16-bit inputs are exact and each k16 step's sum is rounded once;
//   * the async proxy sees shared memory as of the last fence.proxy.async (a shadow copy synced at every
//     fence and written by TMA); a wgmma operand byte that differs from that view was written through the
//     generic proxy without a fence;
//   * named barriers count threads and check that every participant names the same count; a named barrier
//     left with arrivals at exit, a TMA copy never waited for and wgmma groups never retired are errors;
//   * under the random schedule, try_wait sometimes gives up and returns false (the kernel must loop).
#include <algorithm>
#include <array>
#include <cinttypes>
#include <cmath>
#include <cstring>
#include <deque>
#include <map>
#include <vector>

#include <cuda.h>  // CUresult and the CUtensorMap enums of the emulated cuTensorMapEncodeTiled

#include "internal.h"

namespace hope {
namespace emu {

bool device_range(const void *p, size_t bytes);  // runtime.cc

namespace {

constexpr int kWarpgroup = 128;
constexpr uint32_t kPoisonBits = 0xffffffffu;  // NaN as float32; 0xffff is NaN as float16 and bfloat16

// ---- state ---------------------------------------------------------------------------------------------------

struct MBarrier {
  uint32_t expected = 0;      // arrivals per phase (init count)
  int64_t pending = 0;        // arrivals still missing in the current phase
  int64_t tx = 0;             // transaction bytes still expected in the current phase
  uint64_t phase = 0;         // phases completed so far; the current phase has parity phase & 1
  Site site{nullptr, 0};
  std::vector<int> waiters;   // threads blocked in try_wait on the current phase
};

struct TmaCopy {
  uint32_t dst = 0, bytes = 0, mbar = 0;
  uint64_t phase = 0;  // the mbarrier phase it was issued in
  int issuer = -1;
  Site site{nullptr, 0};
  std::vector<uint8_t> image;  // [dst, dst + bytes) as it lands (swizzled, out-of-bound elements filled)
};

struct NamedBarrier {
  uint32_t threads = 0, arrived = 0;
  Site site{nullptr, 0};
  std::vector<int> waiters;
};

// The accumulator registers that in-flight wgmma ops write: one entry per register array, keyed by the first
// member thread's pointer. `value` holds the logical values [member][nd] while the registers hold poison.
struct Acc {
  std::array<float *, kWarpgroup> regs{};
  int nd = 0;
  std::vector<float> value;
  int in_flight = 0;
  Site site{nullptr, 0};
  bool overwritten_reported = false;
};

struct SmemOperand {  // one matrix operand read from shared memory: its element addresses and raw bits
  std::vector<uint32_t> addr;
  std::vector<uint16_t> bits;
};

struct PendingMma {
  Site site{nullptr, 0};
  float *acc_key = nullptr;
  int n = 0;
  MmaType type = kMmaF16;
  int scale_d = 1;
  bool rs = false;
  SmemOperand a_smem, b_smem;            // A (SS only) and B, as read at issue
  std::vector<double> a, bt;             // A [64][16] and B transposed [n][16], exact in double
  std::array<const uint32_t *, kWarpgroup> a_ptr{};
  std::vector<uint32_t> a_regs;          // RS: the A registers at issue [member][4]
};

struct WgGather {
  bool active = false;
  int kind = 0, variant = 0;
  Site site{nullptr, 0};
  int arrived = 0;
  std::array<void *, kWarpgroup> payload{};
  std::array<bool, kWarpgroup> here{};
};

struct Warpgroup {
  WgGather gather;
  bool fenced = false;  // a wgmma.fence since the last wait_group (or the start)
  std::vector<PendingMma> uncommitted;
  std::deque<std::vector<PendingMma>> groups;
  std::map<float *, Acc> accs;
};

}  // namespace

struct Sm90Cta {
  std::map<uint32_t, MBarrier> mbars;
  std::vector<TmaCopy> copies;  // in flight, in issue order
  NamedBarrier named[16];
  std::vector<Warpgroup> wgs;
  bool shadow_ready = false;  // the async-proxy view of this CTA's shared memory has been set up
};

void Sm90Deleter::operator()(Sm90Cta *p) const { delete p; }

namespace {

// The async proxy's view of shared memory (one per host thread, like the arena).
thread_local std::vector<uint8_t> t_shadow;

Sm90Cta &state(Cta &cta) {
  if (!cta.sm90) {
    cta.sm90.reset(new Sm90Cta);
    cta.sm90->wgs.resize(static_cast<size_t>((cta.nthreads + kWarpgroup - 1) / kWarpgroup));
  }
  return *cta.sm90;
}

// The async-proxy view, set up on first use in a CTA: every byte as it was at the CTA's start (0xff) until a
// proxy fence or a TMA copy writes it.
uint8_t *shadow(Cta &cta) {
  Sm90Cta &s = state(cta);
  if (t_shadow.size() != kArenaBytes) t_shadow.assign(kArenaBytes, 0xff);
  if (!s.shadow_ready) {
    std::memset(t_shadow.data(), 0xff, kArenaBytes);
    s.shadow_ready = true;
  }
  return t_shadow.data();
}

MBarrier *find_mbar(Cta &cta, uint32_t addr, Site site, const char *what) {
  Sm90Cta &s = state(cta);
  auto it = s.mbars.find(addr);
  if (it == s.mbars.end()) {
    report(site, false, "%s on shared address %u, which holds no initialised mbarrier (mbarrier.init first)", what,
           addr);
    return nullptr;
  }
  return &it->second;
}

void wake_all(Cta &cta, std::vector<int> &waiters) {
  for (int w : waiters) make_runnable(cta, w);
  waiters.clear();
}

// The current phase completes: pending arrivals and expected bytes are both down to zero (§9.7.13.15.4).
void complete_phase(Cta &cta, uint32_t addr, MBarrier &mb) {
  Sm90Cta &s = state(cta);
  for (const TmaCopy &c : s.copies)
    if (c.mbar == addr && c.phase == mb.phase) {
      report(c.site, false,
             "the mbarrier phase this TMA copy completes on finished while the copy was still in flight: the "
             "phase's expect_tx counted fewer bytes than its copies bring");
      break;
    }
  mb.phase++;
  mb.pending = mb.expected;
  mb.tx = 0;
  wake_all(cta, mb.waiters);
}

void check_phase(Cta &cta, uint32_t addr, MBarrier &mb, Site site) {
  if (mb.pending < 0) {
    report(site, false, "mbarrier at %u: more arrivals in one phase than its expected count %u", addr, mb.expected);
    mb.pending = 0;
  }
  if (mb.pending == 0 && mb.tx < 0)
    report(site, false, "mbarrier at %u: the phase's transactions brought %" PRId64 " bytes more than expected",
           addr, -mb.tx);
  if (mb.pending == 0 && mb.tx <= 0) complete_phase(cta, addr, mb);
}

// ---- shared-memory helpers ----------------------------------------------------------------------------------

// [lo, hi) ranges of shared memory with a copy in flight (ASan-poisoned in ASan builds).
std::vector<std::pair<uint32_t, uint32_t>> inflight_ranges(Cta &cta) {
  std::vector<std::pair<uint32_t, uint32_t>> r;
  if (cta.sm90)
    for (const TmaCopy &c : cta.sm90->copies) r.emplace_back(c.dst, c.dst + c.bytes);
  for (const Thread &t : cta.threads) {
    for (const PendingCopy &c : t.uncommitted) r.emplace_back(c.dst, c.dst + static_cast<uint32_t>(c.bytes));
    for (const auto &g : t.groups)
      for (const PendingCopy &c : g) r.emplace_back(c.dst, c.dst + static_cast<uint32_t>(c.bytes));
  }
  std::sort(r.begin(), r.end());
  return r;
}

// Swizzling of the 128B, 64B and 32B modes (§5.5.6, §9.7.15.5.1.2): the 16-byte unit bits [4, 4 + b) of a
// shared-memory address are XORed with its bits [7, 7 + b), b = 3, 2, 1; mode 0 (none / interleaved) leaves it.
uint32_t swizzle(uint32_t addr, int bits) {
  if (bits == 0) return addr;
  const uint32_t mask = (1u << bits) - 1u;
  return addr ^ (((addr >> 7) & mask) << 4);
}

float to_float(uint16_t e, MmaType type) {
  if (type == kMmaBF16) {
    const uint32_t bits = static_cast<uint32_t>(e) << 16;
    float f;
    std::memcpy(&f, &bits, 4);
    return f;
  }
  const int exp = (e >> 10) & 0x1f, man = e & 0x3ff;
  const float sign = (e & 0x8000) ? -1.f : 1.f;
  if (exp == 0x1f) return man ? NAN : sign * INFINITY;
  if (exp == 0) return sign * std::ldexp(static_cast<float>(man), -24);
  return sign * std::ldexp(static_cast<float>(man | 0x400), exp - 25);
}

// ---- warpgroup collectives -------------------------------------------------------------------------------------

using WgComplete = void (*)(Cta &cta, Warpgroup &wg, int index, WgGather &g);

const char *wg_kind_name(int kind) {
  switch (kind) {
    case 1: return "wgmma.fence";
    case 2: return "wgmma.mma_async";
    case 3: return "wgmma.commit_group";
    case 4: return "wgmma.wait_group";
    case 5: return "setmaxnreg";
    default: return "a warpgroup collective";
  }
}

// Every thread of the calling thread's warpgroup (warps 4w .. 4w + 3) must reach the same instruction (same
// kind, variant and call site); the last to arrive runs `complete` for all of them.
void wg_collective(int kind, int variant, void *payload, Site site, WgComplete complete) {
  Cta *cta = current_cta();
  const char *what = wg_kind_name(kind);
  Thread &t = current_thread(site, what);
  const int index = t.linear / kWarpgroup, member = t.linear % kWarpgroup;
  if ((index + 1) * kWarpgroup > cta->nthreads) {
    report(site, true, "%s by thread %d, whose warpgroup (threads %d-%d) is incomplete: the block has %d threads",
           what, t.linear, index * kWarpgroup, (index + 1) * kWarpgroup - 1, cta->nthreads);
    return;
  }
  Sm90Cta &s = state(*cta);
  Warpgroup &wg = s.wgs[static_cast<size_t>(index)];
  WgGather &g = wg.gather;
  if (!g.active) {
    g.active = true;
    g.kind = kind;
    g.variant = variant;
    g.site = site;
    g.arrived = 0;
    g.here.fill(false);
  } else if (g.kind != kind || g.variant != variant || g.site.line != site.line ||
             std::strcmp(g.site.file, site.file) != 0) {
    report(site, true,
           "divergent warpgroup: thread %d reached %s here while %d threads of warpgroup %d wait at %s (%s:%d): every "
           "thread of a warpgroup must execute the same .sync.aligned instruction",
           t.linear, what, g.arrived, index, wg_kind_name(g.kind), g.site.file, g.site.line);
    return;
  }
  for (int w = 0; w < 4; ++w)
    if (cta->warp_exited[static_cast<size_t>(index * 4 + w)] != 0) {
      report(site, true, "%s waits for warp %d of warpgroup %d, which has exited threads", what, index * 4 + w,
             index);
      return;
    }
  g.payload[static_cast<size_t>(member)] = payload;
  g.here[static_cast<size_t>(member)] = true;
  g.arrived++;
  if (g.arrived == kWarpgroup) {
    WgGather done = g;
    g.active = false;
    complete(*cta, wg, index, done);
    for (int m = 0; m < kWarpgroup; ++m)
      if (m != member) make_runnable(*cta, index * kWarpgroup + m);
    return;
  }
  block_current(*cta, site, what);
}

// ---- wgmma operands ---------------------------------------------------------------------------------------------

struct Desc {
  uint32_t start, lbo, sbo;
  int base_offset;
  int swizzle_mode;  // 0 none, 1 128B, 2 64B, 3 32B
};

Desc decode_desc(uint64_t d) {
  return Desc{static_cast<uint32_t>(d & 0x3fffu) << 4, static_cast<uint32_t>((d >> 16) & 0x3fffu) << 4,
              static_cast<uint32_t>((d >> 32) & 0x3fffu) << 4, static_cast<int>((d >> 49) & 7u),
              static_cast<int>(d >> 62)};
}

// Swizzle span in bytes (the row of a swizzle atom) and the XOR width of a descriptor's mode.
int span_bytes(int mode) { return mode == 1 ? 128 : mode == 2 ? 64 : mode == 3 ? 32 : 16; }
int swizzle_bits(int mode) { return mode == 1 ? 3 : mode == 2 ? 2 : mode == 3 ? 1 : 0; }

// Address of element (mn, k) of a matrix operand in the canonical layouts of §9.7.15.5.1.2 (16-bit elements,
// T = 8 elements per 16-byte unit), before swizzling:
//   K-major, swizzled (span S bytes):  rows of S bytes hold the k elements; 8-row groups SBO apart (LBO unused)
//   K-major, interleaved:              8 x 16-byte core matrices; k units LBO apart, 8-row groups SBO apart
//   MN-major, swizzled:                rows of S bytes hold S / 2 consecutive mn elements for one k; 8 k-rows
//                                      form an atom; k groups of 8 SBO apart, mn blocks of S / 2 LBO apart
//   MN-major, interleaved:             core matrices of 8 k-rows x 8 mn; mn blocks SBO apart, k groups LBO apart
uint32_t operand_address(const Desc &d, bool mn_major, int mn, int k) {
  const int mode = d.swizzle_mode;
  const uint32_t s = static_cast<uint32_t>(span_bytes(mode));
  uint32_t a;
  if (!mn_major) {
    if (mode != 0) a = d.start + (mn / 8) * d.sbo + (mn % 8) * s + static_cast<uint32_t>(k) * 2u;
    else a = d.start + (mn / 8) * d.sbo + (mn % 8) * 16u + (k / 8) * d.lbo + (k % 8) * 2u;
  } else {
    if (mode != 0) {
      const int e = static_cast<int>(s / 2);
      a = d.start + (mn / e) * d.lbo + (k / 8) * d.sbo + (k % 8) * s + (mn % e) * 2u;
    } else {
      a = d.start + (mn / 8) * d.sbo + (k / 8) * d.lbo + (k % 8) * 16u + (mn % 8) * 2u;
    }
  }
  return swizzle(a, swizzle_bits(mode));
}

// Reads a rows x 16 (k) operand through its descriptor: checks each element's bytes (inside the CTA's shared
// memory, no copy in flight, and as the async proxy sees them: written through the generic proxy only before
// a proxy fence). Returns false after the first report.
bool read_operand(Cta &cta, int reader, uint64_t raw_desc, bool mn_major, int rows, Site site, const char *which,
                  SmemOperand *out) {
  const Desc d = decode_desc(raw_desc);
  const uint32_t repeat_mask = d.swizzle_mode == 0 ? 0u : ((1u << swizzle_bits(d.swizzle_mode)) - 1u) << 7;
  if (d.base_offset != 0 || (d.start & repeat_mask) != 0) {
    report(site, false,
           "wgmma %s descriptor: start address %u is not aligned to its swizzle pattern's repeat (%d bytes) or the "
           "base offset is %d; the emulator takes canonical layouts with base offset 0 only",
           which, d.start, span_bytes(d.swizzle_mode) * 8, d.base_offset);
    return false;
  }
  uint8_t *view = shadow(cta);
  out->addr.resize(static_cast<size_t>(rows) * 16);
  out->bits.resize(static_cast<size_t>(rows) * 16);
  for (int r = 0; r < rows; ++r)
    for (int k = 0; k < 16; ++k) {
      const uint32_t a = operand_address(d, mn_major, r, k);
      const size_t i = static_cast<size_t>(r) * 16 + static_cast<size_t>(k);
      out->addr[i] = a;
      if (a % 2 != 0 || !smem_check_read(cta, reader, a, 2, site, which[0] == 'A' ? "wgmma operand A" : "wgmma operand B"))
        return false;
      uint16_t v, seen;
      std::memcpy(&v, cta.arena + a, 2);
      std::memcpy(&seen, view + a, 2);
      if (v != seen) {
        report(site, false,
               "wgmma reads %s element (%d, k %d) at shared address %u, written through the generic proxy with no "
               "fence.proxy.async since (the async proxy still sees 0x%04x, the generic proxy 0x%04x)",
               which, r, k, a, seen, v);
        return false;
      }
      out->bits[i] = v;
    }
  return true;
}

// At retirement: the operand's bytes must be what the wgmma read at issue (nothing overwrote them, no copy is
// in flight into them).
bool operand_unchanged(Cta &cta, const SmemOperand &op) {
  for (size_t i = 0; i < op.addr.size(); ++i) {
    const uint32_t a = op.addr[i];
    const WordMeta &m = cta.meta[a / kSmemWord];
    uint16_t v;
    if (m.inflight_by >= 0) return false;
    std::memcpy(&v, cta.arena + a, 2);
    if (v != op.bits[i]) return false;
  }
  return true;
}

// ---- wgmma --------------------------------------------------------------------------------------------------------

struct MmaArgs {
  float *d;
  int n;
  MmaType type;
  const uint32_t *a_regs;
  uint64_t desc_a, desc_b;
  int scale_d, trans_a, trans_b;
};

// Accumulator register (member thread, index) of element (m, n) of D (m64nN, §9.7.15.5.1): warp w = m / 16 of
// the warpgroup, lane 4 (m % 8) + (n % 8) / 2, register 4 (n / 8) + 2 ((m % 16) / 8) + n % 2.
inline void d_slot(int m, int n, int *member, int *reg) {
  *member = 32 * (m / 16) + 4 * (m % 8) + (n % 8) / 2;
  *reg = 4 * (n / 8) + 2 * ((m % 16) / 8) + (n % 2);
}

void complete_mma_async(Cta &cta, Warpgroup &wg, int index, WgGather &g) {
  const MmaArgs &a0 = *static_cast<MmaArgs *>(g.payload[0]);
  const Site site = g.site;
  for (int m = 1; m < kWarpgroup; ++m) {
    const MmaArgs &x = *static_cast<MmaArgs *>(g.payload[static_cast<size_t>(m)]);
    if (x.desc_a != a0.desc_a || x.desc_b != a0.desc_b || x.scale_d != a0.scale_d || x.n != a0.n ||
        x.type != a0.type || (x.a_regs == nullptr) != (a0.a_regs == nullptr)) {
      report(site, false,
             "wgmma.mma_async operands differ between threads of warpgroup %d (thread %d against thread %d): "
             "descriptors and scale-d must be warpgroup-uniform",
             index, index * kWarpgroup + m, index * kWarpgroup);
      return;
    }
  }
  if (!wg.fenced)
    report(site, false,
           "wgmma.mma_async with no wgmma.fence since warpgroup %d's last wgmma.wait_group (or its start): the "
           "accumulator and A-fragment registers need one after any other access",
           index);
  const int n = a0.n;
  if (n < 8 || n > 256 || n % 8 != 0) {
    report(site, false, "wgmma.mma_async m64n%dk16: N must be a multiple of 8 in [8, 256]", n);
    return;
  }
  const int nd = n / 2;
  const int reader = index * kWarpgroup;
  PendingMma op;
  op.site = site;
  op.n = n;
  op.type = a0.type;
  op.scale_d = a0.scale_d;
  op.rs = a0.a_regs != nullptr;
  op.a.assign(64 * 16, 0.0);
  op.bt.assign(static_cast<size_t>(16) * n, 0.0);
  if (!op.rs) {
    if (!read_operand(cta, reader, a0.desc_a, a0.trans_a != 0, 64, site, "A", &op.a_smem)) return;
    for (int m = 0; m < 64; ++m)
      for (int k = 0; k < 16; ++k)
        op.a[static_cast<size_t>(m) * 16 + k] = to_float(op.a_smem.bits[static_cast<size_t>(m) * 16 + k], op.type);
  } else {
    // A fragment (§9.7.15.5.1, as mma.m16n8k16's A per warp): a0 = (16w + g, 2t..), a1 = (16w + g + 8, 2t..),
    // a2 = (16w + g, 2t + 8..), a3 = (16w + g + 8, 2t + 8..), low half first.
    op.a_regs.resize(kWarpgroup * 4);
    for (int m = 0; m < kWarpgroup; ++m) {
      const MmaArgs &x = *static_cast<MmaArgs *>(g.payload[static_cast<size_t>(m)]);
      op.a_ptr[static_cast<size_t>(m)] = x.a_regs;
      const int w = m / 32, gr = (m % 32) / 4, t = m % 4;
      for (int r = 0; r < 4; ++r) {
        const uint32_t reg = x.a_regs[r];
        op.a_regs[static_cast<size_t>(m) * 4 + r] = reg;
        const int row = 16 * w + gr + ((r & 1) ? 8 : 0), col = 2 * t + ((r & 2) ? 8 : 0);
        op.a[static_cast<size_t>(row) * 16 + col] = to_float(static_cast<uint16_t>(reg & 0xffffu), op.type);
        op.a[static_cast<size_t>(row) * 16 + col + 1] = to_float(static_cast<uint16_t>(reg >> 16), op.type);
      }
    }
  }
  // B is K x N: K-major (trans-b 0) holds each n's 16 k contiguously; N-major (trans-b 1) each k's n.
  if (!read_operand(cta, reader, a0.desc_b, a0.trans_b != 0, n, site, "B", &op.b_smem)) return;
  for (size_t i = 0; i < op.bt.size(); ++i) op.bt[i] = to_float(op.b_smem.bits[i], op.type);  // [n][k] as read

  // The accumulators: chained onto an in-flight array, or snapshotted and poisoned now.
  float *key = a0.d;
  auto it = wg.accs.find(key);
  if (it == wg.accs.end()) {
    const uintptr_t lo = reinterpret_cast<uintptr_t>(key), hi = lo + sizeof(float) * nd;
    for (const auto &kv : wg.accs)
      if (lo < reinterpret_cast<uintptr_t>(kv.first + kv.second.nd) && reinterpret_cast<uintptr_t>(kv.first) < hi) {
        report(site, false,
               "wgmma.mma_async accumulators overlap those of an in-flight wgmma (issued at %s:%d) without being the "
               "same registers",
               kv.second.site.file, kv.second.site.line);
        return;
      }
    Acc acc;
    acc.nd = nd;
    acc.site = site;
    acc.value.resize(static_cast<size_t>(kWarpgroup) * nd);
    for (int m = 0; m < kWarpgroup; ++m) {
      float *r = static_cast<MmaArgs *>(g.payload[static_cast<size_t>(m)])->d;
      acc.regs[static_cast<size_t>(m)] = r;
      std::memcpy(&acc.value[static_cast<size_t>(m) * nd], r, sizeof(float) * nd);
      for (int i = 0; i < nd; ++i) std::memcpy(&r[i], &kPoisonBits, 4);
    }
    it = wg.accs.emplace(key, std::move(acc)).first;
  } else if (it->second.nd != nd) {
    report(site, false, "wgmma.mma_async chains onto in-flight accumulators of another shape (%d registers, now %d)",
           it->second.nd, nd);
    return;
  }
  it->second.in_flight++;
  op.acc_key = key;
  wg.uncommitted.push_back(std::move(op));
}

// Retires one op: D = A B (+ D), its operands checked unchanged since issue.
void retire(Cta &cta, Warpgroup &wg, PendingMma &op, Site wait_site) {
  if ((!op.rs && !operand_unchanged(cta, op.a_smem)) || !operand_unchanged(cta, op.b_smem))
    report(op.site, false,
           "shared memory read by this wgmma.mma_async changed (or a copy into it started) before the "
           "wgmma.wait_group at %s:%d retired it: the buffer was released or refilled too early",
           wait_site.file, wait_site.line);
  if (op.rs)
    for (int m = 0; m < kWarpgroup; ++m)
      if (std::memcmp(op.a_ptr[static_cast<size_t>(m)], &op.a_regs[static_cast<size_t>(m) * 4], 16) != 0) {
        report(op.site, false,
               "the A-fragment registers of this wgmma.mma_async (RS) were modified before the wgmma.wait_group at "
               "%s:%d retired it",
               wait_site.file, wait_site.line);
        break;
      }
  Acc &acc = wg.accs.at(op.acc_key);
  const int n = op.n;
  for (int m = 0; m < 64; ++m)
    for (int nn = 0; nn < n; ++nn) {
      int member, reg;
      d_slot(m, nn, &member, &reg);
      float &d = acc.value[static_cast<size_t>(member) * acc.nd + reg];
      const double *a = &op.a[static_cast<size_t>(m) * 16], *b = &op.bt[static_cast<size_t>(nn) * 16];
      double s = 0.0;
      for (int k = 0; k < 16; ++k) s += a[k] * b[k];
      d = static_cast<float>(op.scale_d != 0 ? s + static_cast<double>(d) : s);
    }
  acc.in_flight--;
}

// Writes back every accumulator array no in-flight op still targets.
void write_back(Warpgroup &wg) {
  for (auto it = wg.accs.begin(); it != wg.accs.end();) {
    Acc &acc = it->second;
    if (acc.in_flight > 0) {
      ++it;
      continue;
    }
    for (int m = 0; m < kWarpgroup; ++m) {
      float *r = acc.regs[static_cast<size_t>(m)];
      for (int i = 0; i < acc.nd; ++i) {
        uint32_t bits;
        std::memcpy(&bits, &r[i], 4);
        if (bits != kPoisonBits && !acc.overwritten_reported) {
          report(acc.site, false,
                 "the accumulator registers of this wgmma.mma_async were written before a wgmma.wait_group retired "
                 "it (thread %d of the warpgroup, register %d)",
                 m, i);
          acc.overwritten_reported = true;
        }
      }
      std::memcpy(r, &acc.value[static_cast<size_t>(m) * acc.nd], sizeof(float) * acc.nd);
    }
    it = wg.accs.erase(it);
  }
}

void complete_fence(Cta &, Warpgroup &wg, int, WgGather &) { wg.fenced = true; }

void complete_commit(Cta &, Warpgroup &wg, int, WgGather &) {
  // "wgmma.commit_group ... creates a new wgmma-group per warpgroup and batches all prior wgmma.mma_async
  // instructions initiated by the executing warp but not committed to any wgmma-group into the new group";
  // with none, the group is empty.
  wg.groups.push_back(std::move(wg.uncommitted));
  wg.uncommitted.clear();
}

void complete_wait(Cta &cta, Warpgroup &wg, int, WgGather &g) {
  // "wait until N or fewer of the most recent wgmma-groups are pending and all the prior wgmma-groups committed
  // by the executing threads are complete".
  const int n = g.variant;
  while (static_cast<int>(wg.groups.size()) > n) {
    for (PendingMma &op : wg.groups.front()) retire(cta, wg, op, g.site);
    wg.groups.pop_front();
  }
  write_back(wg);
  wg.fenced = false;
}

void complete_setmaxnreg(Cta &, Warpgroup &, int index, WgGather &g) {
  const uint32_t v0 = *static_cast<uint32_t *>(g.payload[0]);
  for (int m = 1; m < kWarpgroup; ++m)
    if (*static_cast<uint32_t *>(g.payload[static_cast<size_t>(m)]) != v0) {
      report(g.site, false, "setmaxnreg with different register counts in warpgroup %d", index);
      return;
    }
}

// ---- tensor maps ------------------------------------------------------------------------------------------------

// The emulator's own 128-byte CUtensorMap format (the hardware's is opaque).
struct EmuTensorMap {
  uint32_t magic;
  uint8_t rank, elem_bytes, swizzle, oob_nan;
  uint8_t dtype, interleave, l2, pad0;
  uint32_t pad1;
  uint64_t address;
  uint32_t dim_minus1[5];
  uint32_t pad2;
  uint64_t stride[4];  // bytes, of dimensions 1 .. rank - 1
  uint8_t box[5];      // 1 .. 256 stored as value - 1
  uint8_t estride[5];
  uint8_t pad3[38];
};
static_assert(sizeof(EmuTensorMap) == 128, "one CUtensorMap");
constexpr uint32_t kMapMagic = 0x50414d54u;  // "TMAP"

int dtype_bytes(CUtensorMapDataType t, bool *is_float) {
  *is_float = false;
  switch (t) {
    case CU_TENSOR_MAP_DATA_TYPE_UINT8: return 1;
    case CU_TENSOR_MAP_DATA_TYPE_UINT16: return 2;
    case CU_TENSOR_MAP_DATA_TYPE_UINT32:
    case CU_TENSOR_MAP_DATA_TYPE_INT32: return 4;
    case CU_TENSOR_MAP_DATA_TYPE_UINT64:
    case CU_TENSOR_MAP_DATA_TYPE_INT64: return 8;
    case CU_TENSOR_MAP_DATA_TYPE_FLOAT16:
    case CU_TENSOR_MAP_DATA_TYPE_BFLOAT16: *is_float = true; return 2;
    case CU_TENSOR_MAP_DATA_TYPE_FLOAT32:
    case CU_TENSOR_MAP_DATA_TYPE_TFLOAT32: *is_float = true; return 4;
    case CU_TENSOR_MAP_DATA_TYPE_FLOAT64: *is_float = true; return 8;
    default: return 0;
  }
}

// cuTensorMapEncodeTiled's checks (CUDA Driver API, "Tensor Map Object Management"), for the cases this
// emulator implements: no interleave; a swizzled box's inner dimension exactly the swizzle span.
CUresult encode_tiled(CUtensorMap *map, CUtensorMapDataType dtype, cuuint32_t rank, void *address,
                      const cuuint64_t *dims, const cuuint64_t *strides, const cuuint32_t *box,
                      const cuuint32_t *estrides, CUtensorMapInterleave interleave, CUtensorMapSwizzle swz,
                      CUtensorMapL2promotion l2, CUtensorMapFloatOOBfill oob) {
  if (map == nullptr || reinterpret_cast<uintptr_t>(map) % 64 != 0 || address == nullptr || dims == nullptr ||
      box == nullptr || estrides == nullptr || (rank > 1 && strides == nullptr))
    return CUDA_ERROR_INVALID_VALUE;
  bool is_float = false;
  const int eb = dtype_bytes(dtype, &is_float);
  if (eb == 0 || rank < 1 || rank > 5 || reinterpret_cast<uintptr_t>(address) % 16 != 0)
    return CUDA_ERROR_INVALID_VALUE;
  if (interleave != CU_TENSOR_MAP_INTERLEAVE_NONE) return CUDA_ERROR_NOT_SUPPORTED;  // not emulated
  for (cuuint32_t i = 0; i < rank; ++i) {
    if (dims[i] == 0 || dims[i] > (uint64_t{1} << 32) || box[i] == 0 || box[i] > 256 || estrides[i] == 0 ||
        estrides[i] > 8)
      return CUDA_ERROR_INVALID_VALUE;
    if (estrides[i] != 1) return CUDA_ERROR_NOT_SUPPORTED;  // element strides are not emulated
  }
  for (cuuint32_t i = 0; i + 1 < rank; ++i)
    if (strides[i] % 16 != 0 || strides[i] >= (uint64_t{1} << 40)) return CUDA_ERROR_INVALID_VALUE;
  const uint32_t inner = box[0] * static_cast<uint32_t>(eb);
  if (inner % 16 != 0) return CUDA_ERROR_INVALID_VALUE;
  int swizzle_code = 0;
  switch (swz) {
    case CU_TENSOR_MAP_SWIZZLE_NONE: swizzle_code = 0; break;
    case CU_TENSOR_MAP_SWIZZLE_32B: swizzle_code = 3; break;
    case CU_TENSOR_MAP_SWIZZLE_64B: swizzle_code = 2; break;
    case CU_TENSOR_MAP_SWIZZLE_128B: swizzle_code = 1; break;
    default: return CUDA_ERROR_NOT_SUPPORTED;
  }
  if (swizzle_code != 0) {
    const uint32_t span = static_cast<uint32_t>(span_bytes(swizzle_code));
    if (inner > span) return CUDA_ERROR_INVALID_VALUE;  // the driver's rule: inner box bytes <= the span
    if (inner != span) return CUDA_ERROR_NOT_SUPPORTED;  // narrower boxes are not emulated
  }
  if (oob == CU_TENSOR_MAP_FLOAT_OOB_FILL_NAN_REQUEST_ZERO_FMA && !is_float) return CUDA_ERROR_INVALID_VALUE;
  EmuTensorMap m;
  std::memset(&m, 0, sizeof m);
  m.magic = kMapMagic;
  m.rank = static_cast<uint8_t>(rank);
  m.elem_bytes = static_cast<uint8_t>(eb);
  m.swizzle = static_cast<uint8_t>(swizzle_code);
  m.oob_nan = oob == CU_TENSOR_MAP_FLOAT_OOB_FILL_NAN_REQUEST_ZERO_FMA ? 1 : 0;
  m.dtype = static_cast<uint8_t>(dtype);
  m.interleave = static_cast<uint8_t>(interleave);
  m.l2 = static_cast<uint8_t>(l2);
  m.address = reinterpret_cast<uint64_t>(address);
  for (cuuint32_t i = 0; i < rank; ++i) {
    m.dim_minus1[i] = static_cast<uint32_t>(dims[i] - 1);
    m.box[i] = static_cast<uint8_t>(box[i] - 1);
    m.estride[i] = static_cast<uint8_t>(estrides[i] - 1);
  }
  for (cuuint32_t i = 0; i + 1 < rank; ++i) m.stride[i] = strides[i];
  static_assert(sizeof(CUtensorMap) == sizeof(EmuTensorMap), "the emulated map fills a CUtensorMap");
  std::memcpy(map, &m, sizeof m);
  return CUDA_SUCCESS;
}

bool decode_map(const void *p, EmuTensorMap *m, Site site) {
  if (p == nullptr || reinterpret_cast<uintptr_t>(p) % 64 != 0) {
    report(site, false, "tensor map at %p: not a 64-byte aligned address", p);
    return false;
  }
  std::memcpy(m, p, sizeof *m);
  if (m->magic != kMapMagic || m->rank < 1 || m->rank > 5) {
    report(site, false, "the tensor map at %p was not built by cuTensorMapEncodeTiled (or was overwritten)", p);
    return false;
  }
  return true;
}

}  // namespace

void *tensor_map_encode_tiled_entry() { return reinterpret_cast<void *>(&encode_tiled); }

// ---- scheduler hooks ----------------------------------------------------------------------------------------------

void sm90_cta_begin(Cta &cta) { cta.sm90.reset(); }

bool sm90_make_progress(Cta &cta) {
  Sm90Cta &s = *cta.sm90;
  if (s.copies.empty()) return false;
  bool woke = false;
  for (auto &kv : s.mbars) {
    MBarrier &mb = kv.second;
    if (mb.waiters.empty() || mb.pending != 0) continue;
    // Land every copy of the current phase of a barrier someone waits on (its arrivals are all in).
    const uint32_t addr = kv.first;
    const uint64_t phase = mb.phase;
    std::vector<TmaCopy> rest;
    std::vector<TmaCopy> landing;
    for (TmaCopy &c : s.copies) (c.mbar == addr && c.phase == phase ? landing : rest).push_back(std::move(c));
    if (landing.empty()) continue;
    s.copies = std::move(rest);
    uint8_t *view = shadow(cta);
    for (const TmaCopy &c : landing) {
      HOPE_EMU_UNPOISON(cta.arena + c.dst, c.bytes);
      std::memcpy(cta.arena + c.dst, c.image.data(), c.bytes);
      std::memcpy(view + c.dst, c.image.data(), c.bytes);  // written by the async proxy: both views
      for (uint32_t w = c.dst / kSmemWord; w < (c.dst + c.bytes) / kSmemWord; ++w) {
        WordMeta &m = cta.meta[w];
        m.inflight_by = -1;
        m.inflight_tma = false;
        m.landed_by = -1;
      }
      mb.tx -= c.bytes;  // complete_tx
    }
    const size_t before = mb.waiters.size();
    cta.blame = nullptr;
    check_phase(cta, addr, mb, landing.front().site);
    if (mb.waiters.size() < before) woke = true;
  }
  return woke;
}

void sm90_thread_exit(Cta &cta, Thread &t) {
  Sm90Cta &s = *cta.sm90;
  const size_t index = static_cast<size_t>(t.linear / kWarpgroup);
  if (index < s.wgs.size()) {
    const WgGather &g = s.wgs[index].gather;
    if (g.active && !g.here[static_cast<size_t>(t.linear % kWarpgroup)])
      report(g.site, true, "thread %d exited while its warpgroup waits for it at %s", t.linear, wg_kind_name(g.kind));
  }
}

void sm90_cta_end(Cta &cta) {
  Sm90Cta &s = *cta.sm90;
  for (const TmaCopy &c : s.copies) {
    report(c.site, false, "the block ended with this TMA copy still in flight: nobody waited for its mbarrier phase");
    HOPE_EMU_UNPOISON(cta.arena + c.dst, c.bytes);
    for (uint32_t w = c.dst / kSmemWord; w < (c.dst + c.bytes) / kSmemWord; ++w) {
      cta.meta[w].inflight_by = -1;
      cta.meta[w].inflight_tma = false;
    }
  }
  s.copies.clear();
  for (size_t i = 0; i < s.wgs.size(); ++i) {
    const Warpgroup &wg = s.wgs[i];
    if (!wg.uncommitted.empty() || !wg.groups.empty()) {
      const Site site = !wg.uncommitted.empty() ? wg.uncommitted.front().site : wg.groups.front().front().site;
      report(site, false, "warpgroup %zu ended with wgmma.mma_async operations never retired by a wgmma.wait_group", i);
    }
  }
  for (int id = 0; id < 16; ++id)
    if (s.named[id].arrived != 0)
      report(s.named[id].site, false,
             "the block ended with named barrier %d holding %u of its %u arrivals (a bar.arrive no bar.sync matched)",
             id, s.named[id].arrived, s.named[id].threads);
}

// ---- mbarrier -----------------------------------------------------------------------------------------------------

void mbarrier_init(uint32_t addr, uint32_t count, Site site) {
  Cta *cta = current_cta();
  current_thread(site, "mbarrier.init");
  if (addr % 8 != 0 || !smem_check_range(*cta, addr, 8, site, "mbarrier.init")) {
    if (addr % 8 != 0) report(site, false, "mbarrier.init at shared address %u, which is not 8-byte aligned", addr);
    return;
  }
  if (count < 1 || count > (1u << 20) - 1) {
    report(site, false, "mbarrier.init with count %u (must be in [1, 2^20 - 1])", count);
    return;
  }
  Sm90Cta &s = state(*cta);
  MBarrier &mb = s.mbars[addr];
  if (!mb.waiters.empty()) report(site, false, "mbarrier.init of the mbarrier at %u while threads wait on it", addr);
  mb = MBarrier{};
  mb.expected = count;
  mb.pending = count;
  mb.site = site;
}

void mbarrier_arrive(uint32_t addr, uint32_t tx_bytes, Site site) {
  Cta *cta = current_cta();
  current_thread(site, "mbarrier.arrive");
  MBarrier *mb = find_mbar(*cta, addr, site, "mbarrier.arrive");
  if (mb == nullptr) return;
  if (tx_bytes > (1u << 20) - 1) report(site, false, "mbarrier.arrive.expect_tx of %u bytes (at most 2^20 - 1)", tx_bytes);
  mb->tx += tx_bytes;  // .expect_tx: "increases the tx-count ... prior to the arrive-on operation"
  mb->pending--;
  check_phase(*cta, addr, *mb, site);
  preemption_point();
}

bool mbarrier_try_wait_parity(uint32_t addr, uint32_t parity, Site site) {
  Cta *cta = current_cta();
  Thread &t = current_thread(site, "mbarrier.try_wait");
  for (;;) {
    MBarrier *mb = find_mbar(*cta, addr, site, "mbarrier.try_wait.parity");
    if (mb == nullptr) return true;
    // The phase of parity `parity` is complete unless it is the current (incomplete) phase.
    if ((mb->phase & 1u) != (parity & 1u)) return true;
    if (config().schedule == Schedule::kRandom && (cta->rng() & 3u) == 0) {
      t.fiber.yield();  // "potentially blocking": the time limit ran out
      return false;
    }
    mb->waiters.push_back(t.linear);
    block_current(*cta, site, "mbarrier.try_wait");
  }
}

// ---- TMA ------------------------------------------------------------------------------------------------------------

void tma_prefetch_map(const void *map, Site site) {
  EmuTensorMap m;
  current_thread(site, "prefetch.tensormap");
  (void)decode_map(map, &m, site);
}

void tma_load_tile(uint32_t dst, const void *map, uint32_t mbar, const int32_t *coords, int rank, Site site) {
  Cta *cta = current_cta();
  Thread &t = current_thread(site, "cp.async.bulk.tensor");
  EmuTensorMap m;
  if (!decode_map(map, &m, site)) return;
  if (rank != m.rank) {
    report(site, false, "cp.async.bulk.tensor.%dd with a tensor map of rank %d", rank, m.rank);
    return;
  }
  MBarrier *mb = find_mbar(*cta, mbar, site, "cp.async.bulk.tensor's mbarrier");
  if (mb == nullptr) return;
  uint64_t box_elems = 1;
  for (int i = 0; i < rank; ++i) box_elems *= static_cast<uint64_t>(m.box[i]) + 1;
  const uint32_t bytes = static_cast<uint32_t>(box_elems * m.elem_bytes);
  if (dst % 128 != 0) {
    report(site, false, "cp.async.bulk.tensor into shared address %u, which is not 128-byte aligned", dst);
    return;
  }
  if (!smem_check_range(*cta, dst, bytes, site, "cp.async.bulk.tensor destination")) return;
  for (uint32_t w = dst / kSmemWord; w < (dst + bytes) / kSmemWord; ++w)
    if (cta->meta[w].inflight_by >= 0) {
      const WordMeta &o = cta->meta[w];
      report(site, false, "cp.async.bulk.tensor into shared bytes [%u, %u) that a %s (thread %d, issued at %s:%d) "
             "still has in flight", w * kSmemWord, (w + 1) * kSmemWord, o.inflight_tma ? "TMA copy" : "cp.async",
             o.inflight_by, o.issue_file ? o.issue_file : "?", o.issue_line);
      return;
    }
  TmaCopy c;
  c.dst = dst;
  c.bytes = bytes;
  c.mbar = mbar;
  c.phase = mb->phase;
  c.issuer = t.linear;
  c.site = site;
  c.image.assign(bytes, 0);
  // The box, innermost dimension first, lands densely: box row R (the outer coordinates flattened) at linear
  // offset R * inner; each 16-byte unit at its swizzled address. Out-of-bound elements (negative coordinates
  // included) are zero, or NaN with FLOAT_OOB_FILL_NAN_REQUEST_ZERO_FMA (§5.5).
  const int eb = m.elem_bytes;
  const uint32_t inner = (static_cast<uint32_t>(m.box[0]) + 1) * static_cast<uint32_t>(eb);
  const uint64_t rows = box_elems / (static_cast<uint64_t>(m.box[0]) + 1);
  const int sbits = swizzle_bits(m.swizzle);
  // An all-ones element is NaN in every float type (the NaN fill); zero otherwise.
  const std::vector<uint8_t> fill(static_cast<size_t>(eb), m.oob_nan ? 0xff : 0);
  const uint8_t *base = reinterpret_cast<const uint8_t *>(m.address);
  std::vector<uint8_t> row(inner);
  for (uint64_t r = 0; r < rows; ++r) {
    int64_t outer_off = 0;
    bool row_in = true;
    uint64_t rem = r;
    for (int d = 1; d < rank; ++d) {
      const uint64_t extent = static_cast<uint64_t>(m.box[d]) + 1;
      const int64_t g = static_cast<int64_t>(coords[d]) + static_cast<int64_t>(rem % extent);
      rem /= extent;
      if (g < 0 || g > static_cast<int64_t>(m.dim_minus1[d])) row_in = false;
      else outer_off += g * static_cast<int64_t>(m.stride[d - 1]);
    }
    const int64_t g0 = coords[0];
    const int64_t n0 = static_cast<int64_t>(m.box[0]) + 1;
    // In-bound elements of the row: [lo, hi) of the box's inner index.
    int64_t lo = 0, hi = 0;
    if (row_in) {
      lo = std::max<int64_t>(0, -g0);
      hi = std::min<int64_t>(n0, static_cast<int64_t>(m.dim_minus1[0]) + 1 - g0);
      if (hi < lo) hi = lo;
    }
    for (int64_t i = 0; i < n0; ++i) std::memcpy(&row[static_cast<size_t>(i * eb)], fill.data(), static_cast<size_t>(eb));
    if (hi > lo) {
      const uint8_t *src = base + outer_off + (g0 + lo) * eb;
      const size_t n = static_cast<size_t>((hi - lo) * eb);
      if (!device_range(src, n)) {
        report(site, false, "cp.async.bulk.tensor reads global bytes [%p, +%zu) outside any device allocation (the "
               "tensor map's dimensions or strides exceed the tensor)", static_cast<const void *>(src), n);
        return;
      }
      std::memcpy(&row[static_cast<size_t>(lo * eb)], src, n);
    }
    for (uint32_t u = 0; u < inner; u += 16) {
      const uint32_t lin = dst + static_cast<uint32_t>(r) * inner + u;
      std::memcpy(&c.image[swizzle(lin, sbits) - dst], &row[u], 16);
    }
  }
  // In flight: poisoned and marked until it lands.
  std::memset(cta->arena + dst, 0xff, bytes);
  HOPE_EMU_POISON(cta->arena + dst, bytes);
  for (uint32_t w = dst / kSmemWord; w < (dst + bytes) / kSmemWord; ++w) {
    WordMeta &wm = cta->meta[w];
    wm.inflight_by = t.linear;
    wm.inflight_tma = true;
    wm.issue_file = site.file;
    wm.issue_line = site.line;
  }
  state(*cta).copies.push_back(std::move(c));
  preemption_point();
}

// ---- proxy fence ----------------------------------------------------------------------------------------------------

void fence_proxy_async_shared(Site site) {
  Cta *cta = current_cta();
  current_thread(site, "fence.proxy.async");
  uint8_t *view = shadow(*cta);
  // The async proxy now sees what the generic proxy wrote (bytes with a copy in flight are the copy's).
  uint32_t from = 0;
  for (const auto &r : inflight_ranges(*cta)) {
    if (r.first > from) std::memcpy(view + from, cta->arena + from, r.first - from);
    from = std::max(from, r.second);
  }
  if (cta->used > from) std::memcpy(view + from, cta->arena + from, cta->used - from);
}

// ---- named barriers -------------------------------------------------------------------------------------------------

void named_barrier(uint32_t id, uint32_t threads, bool wait, Site site) {
  Cta *cta = current_cta();
  Thread &t = current_thread(site, wait ? "bar.sync" : "bar.arrive");
  if (id >= 16 || threads == 0 || threads % 32 != 0 || threads > static_cast<uint32_t>(cta->nthreads)) {
    report(site, true, "bar.%s %u, %u: the id must be in [0, 16) and the thread count a non-zero multiple of 32 "
           "no larger than the block (%d)", wait ? "sync" : "arrive", id, threads, cta->nthreads);
    return;
  }
  if (id == 0) {
    report(site, true, "named barrier 0 is the barrier of __syncthreads: use ids 1-15");
    return;
  }
  NamedBarrier &b = state(*cta).named[id];
  if (b.arrived == 0) {
    b.threads = threads;
    b.site = site;
  } else if (b.threads != threads) {
    report(site, true, "named barrier %u: this thread counts %u participants, the threads already arrived (first at "
           "%s:%d) count %u", id, threads, b.site.file, b.site.line, b.threads);
    return;
  }
  b.arrived++;
  if (b.arrived == b.threads) {
    b.arrived = 0;
    wake_all(*cta, b.waiters);
    return;
  }
  if (wait) {
    b.waiters.push_back(t.linear);
    block_current(*cta, site, "bar.sync");
  }
}

// ---- setmaxnreg ------------------------------------------------------------------------------------------------------

void setmaxnreg(uint32_t regs, bool increase, Site site) {
  if (regs < 24 || regs > 256 || regs % 8 != 0)
    report(site, false, "setmaxnreg %u: the count must be a multiple of 8 in [24, 256]", regs);
  uint32_t v = regs * 2 + (increase ? 1 : 0);
  wg_collective(5, 0, &v, site, &complete_setmaxnreg);
}

// ---- wgmma -------------------------------------------------------------------------------------------------------

void wgmma_fence(Site site) { wg_collective(1, 0, nullptr, site, &complete_fence); }
void wgmma_commit_group(Site site) { wg_collective(3, 0, nullptr, site, &complete_commit); }
void wgmma_wait_group(int pending, Site site) {
  if (pending < 0 || pending > 7) report(site, false, "wgmma.wait_group %d (N must be in [0, 7])", pending);
  wg_collective(4, pending < 0 ? 0 : pending, nullptr, site, &complete_wait);
}

void wgmma_mma_async(float *d, int n, MmaType type, const uint32_t *a_regs, uint64_t desc_a, uint64_t desc_b,
                     int scale_d, int trans_a, int trans_b, Site site) {
  MmaArgs args{d, n, type, a_regs, desc_a, desc_b, scale_d, trans_a, trans_b};
  // The shape and the form (SS or RS) are part of the instruction: the variant.
  wg_collective(2, n * 4 + (a_regs != nullptr ? 2 : 0) + trans_b, &args, site, &complete_mma_async);
}

}  // namespace emu
}  // namespace hope
