// fwd_kernel.cuh — the warp-specialised FlashAttention-3-style prefill kernel with the rotary embedding inside
// (family sm90: wgmma + TMA + mbarriers + setmaxnreg; needs sm_90a).
//
// One CTA per (query tile of kBlockM = 128 rows, q head, sequence), three warpgroups (FwdTraits):
//   producer warp 0 (one lane) — TMA copies: the Q tile once, then K and V tiles of kBlockN keys into a
//     kStages-deep ring, each stage guarded by full/empty mbarriers (arrive.expect_tx / try_wait.parity);
//   producer warps 1-3 — when K is rotated in-kernel (cos_k given, no k_rotated pre-pass), they rotate each
//     landed K stage in shared memory and signal it on a second mbarrier (k_ready), so the consumers never
//     stall on the rotation; otherwise they have nothing to do and leave;
//   consumer warpgroups 1 and 2 — 64 query rows each. Each rotates its own Q rows once, right after the tile
//     lands (float32 from the cos/sin tables, rounded to the dtype: SPEC §4), then fence.proxy.async so that
//     wgmma sees the generic-proxy writes. Per key tile: S = Q K^T (wgmma, both operands in shared memory),
//     the masks, the online softmax in registers (float32, exp2 with softmax_scale * log2 e folded in), and
//     O += P V (wgmma, P from registers). The product of tile i - 1's P V is issued right behind tile i's
//     Q K^T, so the softmax of tile i overlaps it; with kPingPong the two warpgroups also take turns issuing
//     (named barriers), so one's softmax runs under the other's products.
//   setmaxnreg moves registers from the producer warpgroup to the consumers.
//
// Key tiles run from the last one down to the first, so that the tiles that need a mask (the causal diagonal,
// the partial tile at the end of the keys) come first and the rest skip the mask. Key tiles that the causal mask
// hides from every row of the query tile are never loaded.
//
// Varlen without reading cu_seqlens on the host: the tensor maps span every token row of the packed tensors,
// and a tile never reads past the end of its own sequence. A query or key tile that would run past it is moved
// back to end exactly there ("shifted": it starts at len - kBlock, negative coordinates read as zeros); its rows
// before the logical start belong to the previous tile or sequence: query rows there are computed but never
// written, key rows there are masked. No tile therefore touches memory past the last token of the batch.
//
// Rows without a visible key (causal with Nq > Nk, or Nk == 0) end with l == 0 and get o = 0, lse = -inf.
#pragma once

#include <climits>
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "attention/fwd_params.h"
#include "attention/ptx_sm90.cuh"
#include "attention/rope_tile.cuh"
#include "attention/sm90/fwd_traits.cuh"
#include "attention/sm90/tile_plan.h"
#include "attention/softmax_rows.cuh"
#include "common/launch.cuh"
#include "common/vec.cuh"

namespace hope {
namespace sm90 {

// The kernel's parameter block: the three tensor maps (built on the host) and the resolved call parameters.
// Passed as a __grid_constant__ parameter, so &tma_q etc. are valid tensor-map addresses for TMA.
struct FwdParamsSm90 {
  TmaDescriptor tma_q, tma_k, tma_v;
  AttnFwdParams p;
};

// What every thread of a CTA derives from its block index (identical in all threads); tile_plan.h has the
// arithmetic.
struct TileCoords {
  int head, kv_head, b;
  int q_start, q_len, k_start, k_len;
  int m0;        // first query row (in the sequence) this CTA writes
  int q_row0;    // sequence row of the Q tile's first row: m0, or q_len - kBlockM for a shifted last tile
  int n_blocks;  // key tiles to process
  int n_masked;  // the first n_masked iterations (the highest key tiles) need the mask
};

template <typename Traits>
__device__ __forceinline__ bool tile_coords(const AttnFwdParams &p, TileCoords *tc) {
  const int m_block = static_cast<int>(gridDim.x) - 1 - static_cast<int>(blockIdx.x);  // heaviest tiles first
  tc->head = static_cast<int>(blockIdx.y);
  tc->b = static_cast<int>(blockIdx.z) + p.batch_offset;
  tc->q_start = p.cu_seqlens_q[tc->b];
  tc->q_len = p.cu_seqlens_q[tc->b + 1] - tc->q_start;
  tc->m0 = m_block * Traits::kBlockM;
  if (tc->m0 >= tc->q_len) return false;  // past this sequence's true length (max_seqlen_q sized the grid)
  tc->k_start = p.cu_seqlens_k[tc->b];
  tc->k_len = p.cu_seqlens_k[tc->b + 1] - tc->k_start;
  tc->kv_head = tc->head / p.head_group;
  const TilePlan t = plan_tile<Traits::kBlockM, Traits::kBlockN>(tc->q_len, tc->k_len, tc->m0, p.causal != 0);
  tc->q_row0 = t.q_row0;
  tc->n_blocks = t.n_blocks;
  tc->n_masked = t.n_masked;
  return true;
}

template <typename Traits>
__device__ __forceinline__ KeyTile key_tile(const TileCoords &tc, int i) {
  return sm90::key_tile<Traits::kBlockN>(tc.n_blocks, tc.k_len, i);
}

// Rotates rows [r_lo, r_hi) of a landed 128-byte-swizzled tile (kColBlocks blocks of `block_bytes`) in place;
// row r is token `token0 + r` of the cos/sin tables (rows of rot_half floats). SPEC §8: rotate-half pairs
// (i, i + rot_half) or interleaved pairs (2i, 2i + 1) for i < rot_half; the dims past 2 rot_half pass through.
// THREADS threads, `tid` in [0, THREADS); each item is PAIRS consecutive pairs (8: 16-byte accesses; 4: half the
// registers, for the register-starved producer warps). rot_half is a multiple of 8 (the planner refuses other
// rotary dims), so no item crosses a 16-byte unit boundary in a way the layout cannot hold. Every variant
// computes each element exactly as the K pre-pass does (rope_pairs / rope_pairs_interleaved).
template <typename Traits, int THREADS, int PAIRS>
__device__ __forceinline__ void rotate_rows(unsigned char *tile, int block_bytes, int r_lo, int r_hi,
                                            const float *cos, const float *sin, int64_t token0, int tid,
                                            int rot_half, bool interleaved) {
  using T = typename Traits::Element;
  static_assert(PAIRS == 4 || PAIRS == 8, "items are 8 or 16 bytes of each half");
  // The element at column `col` of row r (col % 8 + PAIRS <= 8 for the items below: one 16-byte unit).
  auto at = [&](int r, int col) { return tile + (col / 64) * block_bytes + sw128_offset(r, col % 64); };
  const bool aligned = ((reinterpret_cast<uintptr_t>(cos) | reinterpret_cast<uintptr_t>(sin)) & 15u) == 0;
  // Pairs [e, e + PAIRS) of row r: cos/sin from the row's table entries e ...
  auto load_cs = [&](int r, int e, float (&cs)[PAIRS], float (&sn)[PAIRS]) {
    const int64_t off = (token0 + r) * rot_half + e;
    load_floats_ro<PAIRS>(cs, cos + off, aligned);
    load_floats_ro<PAIRS>(sn, sin + off, aligned);
  };
  // Rotate-half: x[e .. e + PAIRS) with x[e + H ..]; H = rot_half, a compile-time constant in the default case
  // (rotary_dim == head_dim), so the item arithmetic folds.
  auto rotate_half = [&](auto half) {
    const int H = half;
    const int per_row = H / PAIRS;
    const int items = (r_hi - r_lo) * per_row;
    for (int idx = tid; idx < items; idx += THREADS) {
      const int r = r_lo + idx / per_row;
      const int e = (idx % per_row) * PAIRS;
      using Words = uint32_t[PAIRS / 2];
      Words &lo = *reinterpret_cast<Words *>(at(r, e));
      Words &hi = *reinterpret_cast<Words *>(at(r, e + H));
      float cs[PAIRS], sn[PAIRS];
      load_cs(r, e, cs, sn);
      Words a, b;
#pragma unroll
      for (int w = 0; w < PAIRS / 2; ++w) a[w] = lo[w], b[w] = hi[w];
      rope_pairs<T, PAIRS>(a, b, cs, sn);
#pragma unroll
      for (int w = 0; w < PAIRS / 2; ++w) lo[w] = a[w], hi[w] = b[w];
    }
  };
  if (!interleaved) {
    if (rot_half == Traits::kHalf) rotate_half(std::integral_constant<int, Traits::kHalf>{});
    else rotate_half(rot_half);
    return;
  }
  // Interleaved: pairs [e, e + 4) are the 4 words of the 16-byte unit at column 2e (items of 4 pairs).
  const int per_row = rot_half / 4;
  const int items = (r_hi - r_lo) * per_row;
  for (int idx = tid; idx < items; idx += THREADS) {
    const int r = r_lo + idx / per_row;
    const int e = (idx % per_row) * 4;
    uint32_t(&words)[4] = *reinterpret_cast<uint32_t(*)[4]>(at(r, 2 * e));
    float cs[4], sn[4];
    const int64_t off = (token0 + r) * rot_half + e;
    load_floats_ro<4>(cs, cos + off, aligned);
    load_floats_ro<4>(sn, sin + off, aligned);
    uint32_t w[4] = {words[0], words[1], words[2], words[3]};
    rope_pairs_interleaved<T, 4>(w, cs, sn);
#pragma unroll
    for (int j = 0; j < 4; ++j) words[j] = w[j];
  }
}

// ---- producer warp 0, one lane: every TMA copy --------------------------------------------------------------
template <typename Traits>
__device__ __forceinline__ void produce(const FwdParamsSm90 &prm, const TileCoords &tc, unsigned char *smem,
                                        uint64_t *bars) {
  constexpr int C = Traits::kColBlocks;
  tma_prefetch_descriptor(&prm.tma_q);
  tma_prefetch_descriptor(&prm.tma_k);
  tma_prefetch_descriptor(&prm.tma_v);
  mbarrier_arrive_expect_tx(&bars[Traits::kBarQFull], Traits::kQBytes);
#pragma unroll
  for (int c = 0; c < C; ++c)
    tma_load_3d(smem + Traits::kOffQ + c * Traits::kQBlockBytes, &prm.tma_q, &bars[Traits::kBarQFull], 0,
                tc.head * C + c, tc.q_start + tc.q_row0);
  for (int i = 0; i < tc.n_blocks; ++i) {
    const int stage = i % Traits::kStages;
    const uint32_t parity = (i / Traits::kStages) & 1;
    const int row = tc.k_start + key_tile<Traits>(tc, i).row0;
    unsigned char *k_dst = smem + Traits::kOffK + stage * Traits::kKVBytes;
    unsigned char *v_dst = smem + Traits::kOffV + stage * Traits::kKVBytes;
    mbarrier_wait(&bars[Traits::kBarKEmpty + stage], parity ^ 1);  // the consumers released the slot
    mbarrier_arrive_expect_tx(&bars[Traits::kBarKFull + stage], Traits::kKVBytes);
#pragma unroll
    for (int c = 0; c < C; ++c)
      tma_load_3d(k_dst + c * Traits::kKVBlockBytes, &prm.tma_k, &bars[Traits::kBarKFull + stage], 0,
                  tc.kv_head * C + c, row);
    mbarrier_wait(&bars[Traits::kBarVEmpty + stage], parity ^ 1);
    mbarrier_arrive_expect_tx(&bars[Traits::kBarVFull + stage], Traits::kKVBytes);
#pragma unroll
    for (int c = 0; c < C; ++c)
      tma_load_3d(v_dst + c * Traits::kKVBlockBytes, &prm.tma_v, &bars[Traits::kBarVFull + stage], 0,
                  tc.kv_head * C + c, row);
  }
}

// ---- producer warps 1-3: rotate each landed K stage, then signal k_ready ---------------------------------------
template <typename Traits>
__device__ __forceinline__ void rotate_k_stages(const AttnFwdParams &p, const TileCoords &tc, unsigned char *smem,
                                                uint64_t *bars, int tid) {
  for (int i = 0; i < tc.n_blocks; ++i) {
    const int stage = i % Traits::kStages;
    const uint32_t parity = (i / Traits::kStages) & 1;
    const KeyTile kt = key_tile<Traits>(tc, i);
    mbarrier_wait(&bars[Traits::kBarKFull + stage], parity);
    // Rows before n0 of a shifted tile are masked: no need to rotate them (they may lie before token 0).
    rotate_rows<Traits, Traits::kRotateThreads, 4>(smem + Traits::kOffK + stage * Traits::kKVBytes,
                                                Traits::kKVBlockBytes, kt.n0 - kt.row0, Traits::kBlockN, p.cos_k,
                                                p.sin_k, static_cast<int64_t>(tc.k_start) + kt.row0, tid, p.rot_half,
                                                p.interleaved != 0);
    fence_proxy_async_smem();  // the consumers' wgmma (async proxy) read what this thread wrote
    mbarrier_arrive(&bars[Traits::kBarKReady + stage]);
  }
}

// ---- consumers -------------------------------------------------------------------------------------------------

// Rows of this warpgroup whose keys are all invisible (the CTA has no key tile): o = 0, lse = -inf.
template <typename Traits>
__device__ __forceinline__ void write_empty_rows(const AttnFwdParams &p, const TileCoords &tc, int cw, int wtid) {
  using T = typename Traits::Element;
  constexpr int kUnits = Traits::kHeadDim / 8;  // 16-byte units per row
  T *const out = static_cast<T *>(p.out);
  for (int idx = wtid; idx < Traits::kRowsPerWarpgroup * kUnits; idx += 128) {
    const int token = tc.q_row0 + cw * Traits::kRowsPerWarpgroup + idx / kUnits;
    if (token < tc.m0) continue;
    const int64_t row = static_cast<int64_t>(tc.q_start) + token;
    *reinterpret_cast<uint4 *>(out + row * p.o_row_stride + static_cast<int64_t>(tc.head) * Traits::kHeadDim +
                               (idx % kUnits) * 8) = make_uint4(0, 0, 0, 0);
  }
  if (p.lse != nullptr && wtid < Traits::kRowsPerWarpgroup) {
    const int token = tc.q_row0 + cw * Traits::kRowsPerWarpgroup + wtid;
    if (token >= tc.m0) {
      const int64_t total_q = p.cu_seqlens_q[p.batch];
      p.lse[static_cast<int64_t>(tc.head) * total_q + tc.q_start + token] = -INFINITY;
    }
  }
}

// One consumer warpgroup (cw = 0 or 1, wtid = thread in the warpgroup): 64 query rows of the tile.
template <typename Traits>
__device__ __forceinline__ void consume(const AttnFwdParams &p, const TileCoords &tc, unsigned char *smem,
                                        uint64_t *bars, int cw, int wtid) {
  using T = typename Traits::Element;
  constexpr int kBlockN = Traits::kBlockN;
  constexpr int kHeadDim = Traits::kHeadDim;
  constexpr int kStages = Traits::kStages;
  constexpr int kRows = Traits::kRowsPerWarpgroup;
  constexpr uint32_t kWgThreads = 128, kTurnThreads = 256;

  if (tc.n_blocks == 0) {
    write_empty_rows<Traits>(p, tc, cw, wtid);
    return;
  }
  const int warp = wtid / 32, lane = wtid % 32, g = lane / 4, t = lane % 4;
  const int row_in_tile = cw * kRows + warp * 16 + g;  // this thread's rows: row_in_tile and row_in_tile + 8
  const uint32_t wg_bar = Traits::kBarIdWarpgroup + cw;

  // ---- Q: wait for the tile, rotate this warpgroup's rows (those this CTA writes), fence, sync ----------------
  mbarrier_wait(&bars[Traits::kBarQFull], 0);
  if (p.cos_q != nullptr) {
    const int r_lo = max(cw * kRows, tc.m0 - tc.q_row0);
    rotate_rows<Traits, 128, 8>(smem + Traits::kOffQ, Traits::kQBlockBytes, r_lo, (cw + 1) * kRows, p.cos_q, p.sin_q,
                                static_cast<int64_t>(tc.q_start) + tc.q_row0, wtid, p.rot_half, p.interleaved != 0);
    fence_proxy_async_smem();  // wgmma reads the rotated Q rows through the async proxy
    named_barrier_sync(wg_bar, kWgThreads);
  }

  // Descriptors: Q rows of this warpgroup (A, K-major), K and V stage 0 (B; K-major, V N-major). A k16 step
  // moves 32 bytes along a 128-byte row, and to the next 64-column block every 4 steps; for V 16 rows.
  const uint64_t desc_q = smem_desc_sw128(smem + Traits::kOffQ + cw * kRows * 128, 16, 1024);
  const uint64_t desc_k = smem_desc_sw128(smem + Traits::kOffK, 16, 1024);
  const uint64_t desc_v = smem_desc_sw128(smem + Traits::kOffV, Traits::kKVBlockBytes, 1024);
  uint64_t *const k_ready = bars + (p.cos_k != nullptr ? Traits::kBarKReady : Traits::kBarKFull);

  float acc_o[Traits::kOAcc];
#pragma unroll
  for (int i = 0; i < Traits::kOAcc; ++i) acc_o[i] = 0.f;
  float acc_s[Traits::kSAcc];
  uint32_t frag_p[Traits::kPVSteps][4];  // P of the previous tile as wgmma A fragments
  float row_max[2] = {-INFINITY, -INFINITY};
  float row_sum[2] = {0.f, 0.f};  // this thread's partial sums; reduced over the quad at the end
  const float scale_log2 = p.scale_log2;
  const int q_tok0 = tc.q_row0 + row_in_tile;  // sequence rows of this thread's two rows
  const int64_t shift = static_cast<int64_t>(tc.k_len) - tc.q_len;

  auto issue_qk = [&](int stage) {
#pragma unroll
    for (int kk = 0; kk < Traits::kQKSteps; ++kk) {
      const uint32_t in_row = (kk % 4) * 32;  // bytes into the 128-byte row of the 64-column block kk / 4
      wgmma_ss<kBlockN, T>(acc_s, smem_desc_advance(desc_q, (kk / 4) * Traits::kQBlockBytes + in_row),
                           smem_desc_advance(desc_k, stage * Traits::kKVBytes + (kk / 4) * Traits::kKVBlockBytes + in_row),
                           kk > 0 ? 1 : 0);
    }
  };
  auto issue_pv = [&](int stage) {
#pragma unroll
    for (int kk = 0; kk < Traits::kPVSteps; ++kk)
      wgmma_rs<kHeadDim, T>(acc_o, frag_p[kk], smem_desc_advance(desc_v, stage * Traits::kKVBytes + kk * 16 * 128), 1);
  };
  auto release = [&](int barrier) {  // one arrival per consumer warp, after its wgmma_wait
    __syncwarp();
    if (lane == 0) mbarrier_arrive(&bars[barrier]);
  };
  // Ping-pong: warpgroup c issues its wgmma only on its turn (named barrier kBarIdTurn + c, completed by the
  // other warpgroup's arrival), then hands the turn over. Warpgroup 1 hands the first turn to warpgroup 0
  // before the loop and skips its last hand-over, so every barrier phase completes.
  auto take_turn = [&] {
    if (Traits::kPingPong) named_barrier_sync(Traits::kBarIdTurn + cw, kTurnThreads);
  };
  auto pass_turn = [&](int i) {
    if (Traits::kPingPong && !(cw == 1 && i == tc.n_blocks - 1))
      named_barrier_arrive(Traits::kBarIdTurn + (1 - cw), kTurnThreads);
  };

  // Masks of iteration i: keys past this thread's rows' causal limit, and the duplicate rows of a shifted tile.
  auto apply_mask = [&](int i) {
    const KeyTile kt = key_tile<Traits>(tc, i);
    const int limit[2] = {causal_limit(q_tok0, shift, p.causal != 0), causal_limit(q_tok0 + 8, shift, p.causal != 0)};
#pragma unroll
    for (int j = 0; j < kBlockN / 8; ++j) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        if (key_masked(kt.row0 + 8 * j + 2 * t + (e & 1), kt.n0, limit[e >> 1])) acc_s[4 * j + e] = -INFINITY;
      }
    }
  };

  // Online softmax of S (float32, base 2): P replaces S in acc_s; corr is the factor that moves the previous
  // tiles' O and row sums to the new row maximum.
  auto softmax = [&](float (&corr)[2]) {
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      float mx = row_max[r];
#pragma unroll
      for (int j = 0; j < kBlockN / 8; ++j) mx = fmaxf(mx, fmaxf(acc_s[4 * j + 2 * r], acc_s[4 * j + 2 * r + 1]));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
      // A row that has seen no visible key yet keeps max -inf; 0 as its offset keeps every exp2 at 0, no NaN.
      const float offset = mx == -INFINITY ? 0.f : mx * scale_log2;
      corr[r] = exp2f(row_max[r] * scale_log2 - offset);  // 0 while the old max was -inf
      row_max[r] = mx;
      float sum = 0.f;
#pragma unroll
      for (int j = 0; j < kBlockN / 8; ++j) {
        const float p0 = exp2f(fmaf(acc_s[4 * j + 2 * r], scale_log2, -offset));
        const float p1 = exp2f(fmaf(acc_s[4 * j + 2 * r + 1], scale_log2, -offset));
        acc_s[4 * j + 2 * r] = p0;
        acc_s[4 * j + 2 * r + 1] = p1;
        sum += p0 + p1;
      }
      row_sum[r] = row_sum[r] * corr[r] + sum;
    }
  };
  // P as wgmma A fragments (rounded to T): k16 step kk covers the n8 accumulator blocks 2kk and 2kk + 1.
  auto p_to_fragments = [&] {
#pragma unroll
    for (int kk = 0; kk < Traits::kPVSteps; ++kk) {
      frag_p[kk][0] = pack2<T>(acc_s[8 * kk + 0], acc_s[8 * kk + 1]);
      frag_p[kk][1] = pack2<T>(acc_s[8 * kk + 2], acc_s[8 * kk + 3]);
      frag_p[kk][2] = pack2<T>(acc_s[8 * kk + 4], acc_s[8 * kk + 5]);
      frag_p[kk][3] = pack2<T>(acc_s[8 * kk + 6], acc_s[8 * kk + 7]);
    }
  };
  auto wait_k = [&](int i) { mbarrier_wait(&k_ready[i % kStages], (i / kStages) & 1); };
  auto wait_v = [&](int i) { mbarrier_wait(&bars[Traits::kBarVFull + i % kStages], (i / kStages) & 1); };

  if (Traits::kPingPong && cw == 1) named_barrier_arrive(Traits::kBarIdTurn + 0, kTurnThreads);

  // ---- iteration 0: S of the highest key tile, its softmax; O is still zero -----------------------------------
  wait_k(0);
  take_turn();
  wgmma_fence_operands(acc_s);
  wgmma_arrive();
  issue_qk(0);
  wgmma_commit();
  pass_turn(0);
  wgmma_wait<0>(acc_s);
  release(Traits::kBarKEmpty + 0);
  if (tc.n_masked > 0) apply_mask(0);
  {
    float corr[2];
    softmax(corr);
  }
  p_to_fragments();

  // ---- iteration i >= 1: S of tile i issued, then P V of tile i - 1 behind it; tile i's softmax runs while the
  // P V product is in flight --------------------------------------------------------------------------------
  auto step = [&](int i, auto masked) {
    const int stage = i % kStages, prev = (i - 1) % kStages;
    wait_k(i);
    wait_v(i - 1);
    take_turn();
    wgmma_fence_operands(acc_s);
    wgmma_arrive();
    issue_qk(stage);
    wgmma_commit();
    wgmma_fence_operands(acc_o);
    wgmma_fence_operands(frag_p);
    wgmma_arrive();
    issue_pv(prev);
    wgmma_commit();
    pass_turn(i);
    wgmma_wait<1>(acc_s);  // S of tile i is done; P V of tile i - 1 may still run
    release(Traits::kBarKEmpty + stage);
    if (decltype(masked)::value) apply_mask(i);
    float corr[2];
    softmax(corr);
    wgmma_wait<0>(acc_o);  // O is final up to tile i - 1 and V of tile i - 1 is free
    release(Traits::kBarVEmpty + prev);
#pragma unroll
    for (int j = 0; j < kHeadDim / 8; ++j) {
      acc_o[4 * j] *= corr[0];
      acc_o[4 * j + 1] *= corr[0];
      acc_o[4 * j + 2] *= corr[1];
      acc_o[4 * j + 3] *= corr[1];
    }
    p_to_fragments();
  };
  int i = 1;
  for (; i < tc.n_masked; ++i) step(i, std::true_type{});
  for (; i < tc.n_blocks; ++i) step(i, std::false_type{});

  // ---- the last tile's P V --------------------------------------------------------------------------------
  {
    const int last = tc.n_blocks - 1;
    mbarrier_wait(&bars[Traits::kBarVFull + last % kStages], (last / kStages) & 1);
    wgmma_fence_operands(acc_o);
    wgmma_fence_operands(frag_p);
    wgmma_arrive();
    issue_pv(last % kStages);
    wgmma_commit();
    wgmma_wait<0>(acc_o);
  }

  // ---- epilogue: normalise, stage in this warpgroup's own Q rows (swizzled), 16-byte stores ---------------
  float inv[2], lse[2];
  finalize_rows(row_max, row_sum, p.softmax_scale, inv, lse);
  named_barrier_sync(wg_bar, kWgThreads);  // every warp's wgmma reads of these Q rows have retired
#pragma unroll
  for (int j = 0; j < kHeadDim / 8; ++j) {
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const int col = 8 * j + 2 * t;
      uint32_t *dst = reinterpret_cast<uint32_t *>(smem + Traits::kOffQ + (col / 64) * Traits::kQBlockBytes +
                                                   sw128_offset(row_in_tile + 8 * r, col % 64));
      *dst = pack2<T>(acc_o[4 * j + 2 * r] * inv[r], acc_o[4 * j + 2 * r + 1] * inv[r]);
    }
  }
  named_barrier_sync(wg_bar, kWgThreads);
  constexpr int kUnits = kHeadDim / 8;
  T *const out = static_cast<T *>(p.out);
#pragma unroll
  for (int k = 0; k < kRows * kUnits / 128; ++k) {
    const int idx = wtid + k * 128;
    const int row = cw * kRows + idx / kUnits;  // row in the tile
    const int u = idx % kUnits;
    const int token = tc.q_row0 + row;
    if (token >= tc.m0) {
      const uint4 v = *reinterpret_cast<const uint4 *>(smem + Traits::kOffQ + (u / 8) * Traits::kQBlockBytes +
                                                       sw128_offset(row, (u % 8) * 8));
      *reinterpret_cast<uint4 *>(out + (static_cast<int64_t>(tc.q_start) + token) * p.o_row_stride +
                                 static_cast<int64_t>(tc.head) * kHeadDim + u * 8) = v;
    }
  }
  if (p.lse != nullptr && t == 0) {
    const int64_t total_q = p.cu_seqlens_q[p.batch];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const int token = q_tok0 + 8 * r;
      if (token >= tc.m0) p.lse[static_cast<int64_t>(tc.head) * total_q + tc.q_start + token] = lse[r];
    }
  }
}

// ---- the kernel ------------------------------------------------------------------------------------------------
template <typename Traits>
__global__ void __launch_bounds__(Traits::kThreads, 1) attn_fwd_sm90_kernel(const __grid_constant__ FwdParamsSm90 prm) {
  HOPE_DYNAMIC_SMEM(smem_raw, unsigned char);
  unsigned char *const smem = smem_raw + ((1024u - (smem_addr(smem_raw) & 1023u)) & 1023u);
  uint64_t *const bars = reinterpret_cast<uint64_t *>(smem + Traits::kOffBarriers);
  TileCoords tc;
  if (!tile_coords<Traits>(prm.p, &tc)) return;  // uniform over the CTA

  if (threadIdx.x == 0) {
    mbarrier_init(&bars[Traits::kBarQFull], 1);
#pragma unroll
    for (int s = 0; s < Traits::kStages; ++s) {
      mbarrier_init(&bars[Traits::kBarKFull + s], 1);
      mbarrier_init(&bars[Traits::kBarKReady + s], Traits::kRotateThreads);
      mbarrier_init(&bars[Traits::kBarKEmpty + s], Traits::kConsumerWarps);
      mbarrier_init(&bars[Traits::kBarVFull + s], 1);
      mbarrier_init(&bars[Traits::kBarVEmpty + s], Traits::kConsumerWarps);
    }
    mbarrier_init_fence();
  }
  __syncthreads();

  const int warpgroup = static_cast<int>(threadIdx.x) / 128;  // uniform over each warpgroup
  if (warpgroup == 0) {
    setmaxnreg_dec<Traits::kProducerRegs>();
    const int warp = static_cast<int>(threadIdx.x) / 32;
    if (warp == 0) {
      if (threadIdx.x == 0 && tc.n_blocks > 0) produce<Traits>(prm, tc, smem, bars);
    } else if (prm.p.cos_k != nullptr) {
      rotate_k_stages<Traits>(prm.p, tc, smem, bars, static_cast<int>(threadIdx.x) - 32);
    }
  } else {
    setmaxnreg_inc<Traits::kConsumerRegs>();
    consume<Traits>(prm.p, tc, smem, bars, warpgroup - 1, static_cast<int>(threadIdx.x) % 128);
  }
}

}  // namespace sm90
}  // namespace hope
