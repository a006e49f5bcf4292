// ptx_sm80.cc — the sm_80 instructions of the kernels' PTX wrappers, emulated from the PTX ISA (version 9.0
// text; section titles given with their numbers, which shift between ISA versions):
//   cp.async / cp.async.commit_group / cp.async.wait_group — §9.7.9.25 "Data Movement and Conversion
//       Instructions: cp.async" and its subsections on commit_group and wait_group;
//   ldmatrix — §9.7.14.5.15 "Warp-level matrix load instruction: ldmatrix" (the figures of the fragment held
//       by each thread, with and without .trans);
//   mma.m16n8k16 (.f16 / .bf16 inputs, .f32 accumulators) — §9.7.14.5.14 "Multiply-and-Accumulate
//       Instruction: mma" and §9.7.14.5.8 "Matrix Fragments for mma.m16n8k16 with floating point type"
//       (figures 79, 81 and 82: A, B and C/D).
// The hazard rules are stricter than the hardware's: a copy's destination is poisoned (0xff, and for
// AddressSanitizer builds ASan-poisoned) from issue to landing, and any access to it before its wait_group
// is an error; copies land only at the wait, so a too-shallow wait reads poison.
#include <cmath>
#include <cstring>
#include <vector>

#include "internal.h"

namespace hope {
namespace emu {

// ---- cp.async -----------------------------------------------------------------------------------------------

void cp_async(uint32_t dst, const void *src, int cp_size, int src_size, Site site) {
  Cta *cta = current_cta();
  Thread &t = current_thread(site, "cp.async");
  // "cp-size ... can be 4, 8 or 16"; .cg allows 16 only; "src-size ... must be less than cp-size" (or equal)
  if (cp_size != 4 && cp_size != 8 && cp_size != 16) {
    report(site, false, "cp.async with cp-size %d (must be 4, 8 or 16)", cp_size);
    return;
  }
  if (src_size < 0 || src_size > cp_size) {
    report(site, false, "cp.async with src-size %d outside [0, cp-size %d]", src_size, cp_size);
    return;
  }
  // "The address operands ... must be aligned to cp-size" (destination and source).
  if (dst % static_cast<uint32_t>(cp_size) != 0 ||
      (src_size > 0 && reinterpret_cast<uintptr_t>(src) % static_cast<uintptr_t>(cp_size) != 0)) {
    report(site, false, "cp.async of %d bytes with a misaligned address (shared %u, global %p)", cp_size, dst, src);
    return;
  }
  if (!smem_check_range(*cta, dst, static_cast<size_t>(cp_size), site, "cp.async destination")) return;
  for (uint32_t w = dst / kSmemWord; w < (dst + static_cast<uint32_t>(cp_size)) / kSmemWord; ++w) {
    const WordMeta &m = cta->meta[w];
    if (m.inflight_by >= 0) {
      report(site, false,
             "cp.async into shared bytes [%u, %u) that another %s (thread %d, issued at %s:%d) still has in flight",
             w * kSmemWord, (w + 1) * kSmemWord, m.inflight_tma ? "TMA copy" : "cp.async", m.inflight_by,
             m.issue_file, m.issue_line);
      return;
    }
  }
  PendingCopy c;
  c.dst = dst;
  c.bytes = cp_size;
  c.site = site;
  std::memset(c.data, 0, sizeof c.data);               // "the remaining ... bytes are filled with zeros"
  if (src_size > 0) std::memcpy(c.data, src, static_cast<size_t>(src_size));  // global memory is read here
  // In flight: poisoned until it lands.
  std::memset(cta->arena + dst, 0xff, static_cast<size_t>(cp_size));
  HOPE_EMU_POISON(cta->arena + dst, static_cast<size_t>(cp_size));
  for (uint32_t w = dst / kSmemWord; w < (dst + static_cast<uint32_t>(cp_size)) / kSmemWord; ++w) {
    WordMeta &m = cta->meta[w];
    m.inflight_by = t.linear;
    m.issue_file = site.file;
    m.issue_line = site.line;
  }
  t.uncommitted.push_back(c);
  preemption_point();
}

void cp_async_commit_group(Site site) {
  Thread &t = current_thread(site, "cp.async.commit_group");
  // "If there are no uncommitted cp.async instructions then cp.async.commit_group results in an empty
  // cp.async-group."
  t.groups.push_back(std::move(t.uncommitted));
  t.uncommitted.clear();
}

static void land(Cta &cta, const Thread &t, const PendingCopy &c) {
  HOPE_EMU_UNPOISON(cta.arena + c.dst, static_cast<size_t>(c.bytes));
  std::memcpy(cta.arena + c.dst, c.data, static_cast<size_t>(c.bytes));
  for (uint32_t w = c.dst / kSmemWord; w < (c.dst + static_cast<uint32_t>(c.bytes)) / kSmemWord; ++w) {
    WordMeta &m = cta.meta[w];
    m.inflight_by = -1;
    m.landed_by = t.linear;
    m.landed_epoch = cta.barrier_epoch;
    m.landed_wepoch = cta.warp_epoch[static_cast<size_t>(t.warp)];
  }
}

void cp_async_wait_group(int n, Site site) {
  Cta *cta = current_cta();
  Thread &t = current_thread(site, "cp.async.wait_group");
  if (n < 0) {
    report(site, false, "cp.async.wait_group %d (N must be >= 0)", n);
    n = 0;
  }
  preemption_point();
  // "waits until only N or fewer of the most recent cp.async-groups are pending and all the prior
  // cp.async-groups committed by the executing threads are complete"; uncommitted copies are not waited for.
  while (static_cast<int>(t.groups.size()) > n) {
    for (const PendingCopy &c : t.groups.front()) land(*cta, t, c);
    t.groups.pop_front();
  }
}

// ---- ldmatrix ---------------------------------------------------------------------------------------------

namespace {
struct LdmatrixPayload {
  uint32_t addr;
  uint32_t *regs;
};
}  // namespace

// Each of the `num` 8x8 matrices of b16 elements has its 8 row addresses supplied by threads 8j..8j+7 (for
// .x1 threads 0-7, .x2 0-15, .x4 0-31; "each row address must be 16-byte aligned"). Thread t receives in
// register j the two elements of matrix j at row t/4, columns 2(t%4) and 2(t%4)+1 (low half first); with
// .trans, the elements at rows 2(t%4) and 2(t%4)+1 of column t/4.
static void complete_ldmatrix(WarpOp &op, Cta &cta, int warp) {
  const int num = op.variant >> 1;
  const bool trans = (op.variant & 1) != 0;
  uint16_t m[4][8][8];
  for (int j = 0; j < num; ++j) {
    for (int r = 0; r < 8; ++r) {
      const int lane = 8 * j + r;
      const uint32_t addr = static_cast<LdmatrixPayload *>(op.payload[lane])->addr;
      bool ok = addr % 16 == 0;
      if (!ok) report(op.site, false, "ldmatrix row address %u (lane %d) is not 16-byte aligned", addr, lane);
      ok = ok && smem_check_read(cta, warp * kWarp + lane, addr, 16, op.site, "ldmatrix");
      if (ok) std::memcpy(m[j][r], cta.arena + addr, 16);
      else std::memset(m[j][r], 0xff, 16);
    }
  }
  for (int l = 0; l < kWarp; ++l) {
    LdmatrixPayload &p = *static_cast<LdmatrixPayload *>(op.payload[l]);
    for (int j = 0; j < num; ++j) {
      uint16_t lo, hi;
      if (!trans) {
        lo = m[j][l / 4][2 * (l % 4)];
        hi = m[j][l / 4][2 * (l % 4) + 1];
      } else {
        lo = m[j][2 * (l % 4)][l / 4];
        hi = m[j][2 * (l % 4) + 1][l / 4];
      }
      p.regs[j] = static_cast<uint32_t>(lo) | (static_cast<uint32_t>(hi) << 16);
    }
  }
}

void ldmatrix(uint32_t *regs, int num, bool trans, uint32_t addr, Site site) {
  if (num != 1 && num != 2 && num != 4) {
    report(site, false, "ldmatrix .num must be .x1, .x2 or .x4 (got %d)", num);
    return;
  }
  LdmatrixPayload p{addr, regs};
  // .sync.aligned: every thread of the warp executes the same ldmatrix.
  const Cta *cta = current_cta();
  const Thread &t = current_thread(site, "ldmatrix");
  warp_collective(4, num * 2 + (trans ? 1 : 0), warp_lane_mask(*cta, t.warp), &p, site, "ldmatrix",
                  &complete_ldmatrix);
}

// ---- mma.m16n8k16 -------------------------------------------------------------------------------------------

// IEEE binary16 / bfloat16 -> float, exact; binary16 tabulated once (every mma converts 384 elements).
static float half_to_float_slow(uint16_t h) {
  const int exp = (h >> 10) & 0x1f, man = h & 0x3ff;
  const float sign = (h & 0x8000) ? -1.f : 1.f;
  if (exp == 0x1f) return man ? NAN : sign * INFINITY;
  if (exp == 0) return sign * std::ldexp(static_cast<float>(man), -24);
  return sign * std::ldexp(static_cast<float>(man | 0x400), exp - 25);
}
static const float *half_table() {
  static const std::vector<float> table = [] {
    std::vector<float> t(65536);
    for (uint32_t i = 0; i < 65536; ++i) t[i] = half_to_float_slow(static_cast<uint16_t>(i));
    return t;
  }();
  return table.data();
}
static inline float bf16_to_float(uint16_t b) {
  const uint32_t bits = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

namespace {
struct MmaPayload {
  float *d;
  const uint32_t *a, *b;
  const float *c;
};
}  // namespace

// D = A B + C over the warp. With groupID g = lane >> 2 and threadID_in_group t = lane % 4:
//   A (16x16, row): a0,a1 = (g, 2t..2t+1), a2,a3 = (g+8, 2t..), a4,a5 = (g, 2t+8..), a6,a7 = (g+8, 2t+8..),
//                   two elements per .f16x2 / .bf16x2 register, low half first;
//   B (16x8, col):  b0,b1 = (k 2t..2t+1, n g), b2,b3 = (k 2t+8..2t+9, n g);
//   C, D (16x8):    c0,c1 = (g, 2t..2t+1), c2,c3 = (g+8, 2t..2t+1).
// The products of 16-bit inputs are exact in double and their sum of 16 (+ c) is rounded once to float32:
// at least as accurate as the tensor core's float32 accumulation.
static void complete_mma(WarpOp &op, Cta &, int) {
  float A[16][16], B[8][16];  // B stored transposed: B[n][k]
  double C[16][8];
  const float *half = op.variant == kMmaF16 ? half_table() : nullptr;
  auto conv = [half](uint32_t reg, int hi) {
    const uint16_t e = static_cast<uint16_t>(hi ? reg >> 16 : reg & 0xffffu);
    return half != nullptr ? half[e] : bf16_to_float(e);
  };
  for (int l = 0; l < kWarp; ++l) {
    const MmaPayload &p = *static_cast<MmaPayload *>(op.payload[l]);
    const int g = l >> 2, t = l & 3;
    // a0,a1 (reg 0) row g; a2,a3 (reg 1) row g+8; a4,a5 (reg 2) row g, +8 columns; a6,a7 (reg 3) row g+8, +8.
    for (int r = 0; r < 4; ++r) {
      const int row = g + ((r & 1) ? 8 : 0), col = 2 * t + ((r & 2) ? 8 : 0);
      A[row][col] = conv(p.a[r], 0);
      A[row][col + 1] = conv(p.a[r], 1);
    }
    // b0,b1 (reg 0) k = 2t, 2t+1; b2,b3 (reg 1) k = 2t+8, 2t+9; column n = g.
    for (int r = 0; r < 2; ++r) {
      const int k = 2 * t + (r ? 8 : 0);
      B[g][k] = conv(p.b[r], 0);
      B[g][k + 1] = conv(p.b[r], 1);
    }
    for (int i = 0; i < 4; ++i) C[g + (i < 2 ? 0 : 8)][2 * t + (i & 1)] = static_cast<double>(p.c[i]);
  }
  for (int l = 0; l < kWarp; ++l) {
    const MmaPayload &p = *static_cast<MmaPayload *>(op.payload[l]);
    const int g = l >> 2, t = l & 3;
    for (int i = 0; i < 4; ++i) {
      const int row = g + (i < 2 ? 0 : 8), col = 2 * t + (i & 1);
      double s = C[row][col];
      for (int k = 0; k < 16; ++k) s += static_cast<double>(A[row][k]) * static_cast<double>(B[col][k]);
      p.d[i] = static_cast<float>(s);
    }
  }
}

void mma_m16n8k16(float *d, const uint32_t *a, const uint32_t *b, const float *c, MmaType type, Site site) {
  MmaPayload p{d, a, b, c};
  const Cta *cta = current_cta();
  const Thread &t = current_thread(site, "mma");
  warp_collective(5, type, warp_lane_mask(*cta, t.warp), &p, site, "mma", &complete_mma);
}

}  // namespace emu
}  // namespace hope
