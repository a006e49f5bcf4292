// fwd_kernel.cuh — the fused FlashAttention-2-style prefill kernel with rotary embedding (family sm80).
//
// One CTA per (query tile of kBlockM rows, q head, sequence). The CTA
//   1. loads its Q tile into shared memory with cp.async (rows past the sequence are zero-filled) and starts
//      the first K/V tile behind it;
//   2. rotates the Q tile in place as soon as it lands: float32 arithmetic from the per-token cos/sin tables,
//      rounded back to the dtype (SPEC §4), before any product;
//   3. streams K/V tiles of kBlockN keys through two shared-memory stages (cp.async double buffering: tile
//      j+1 is in flight while tile j is multiplied). When K is rotated in-kernel (cos_k != NULL) each K tile
//      is rotated in shared memory right after it lands, exactly like Q;
//   4. per warp (16 query rows): S = Q K^T with ldmatrix + mma.sync m16n8k16 (float32 accumulators), the
//      bottom-right causal and length masks on the tiles that need them, the online softmax in float32 with
//      exp2f and softmax_scale * log2(e) folded into one FFMA, P rounded to the dtype and O += P V;
//   5. writes O (staged through its own rows of the Q tile for 16-byte stores) and the natural-log LSE once.
// Key tiles that the causal mask hides entirely are never loaded. A row without any visible key (causal with
// Nq > Nk, or Nk == 0) ends with l == 0 and gets o = 0, lse = -inf, never NaN.
#pragma once

#include <cmath>
#include <cstdint>

#include "attention/fwd_params.h"
#include "attention/fwd_traits.cuh"
#include "attention/ptx_sm80.cuh"
#include "attention/rope_tile.cuh"
#include "attention/softmax_rows.cuh"
#include "common/launch.cuh"

namespace hope {

// ---- tile movement ---------------------------------------------------------------------------------------

// cp.async of ROWS x HEAD_DIM elements from global rows `row_stride` apart into a swizzled tile; rows at or
// past `rows_valid` are zero-filled (and read nothing: `fallback` is any valid address of the tensor).
template <typename Traits, int ROWS, int ITERS>
__device__ __forceinline__ void load_tile_async(typename Traits::Element *smem,
                                                const typename Traits::Element *gmem, int64_t row_stride,
                                                int rows_valid, const void *fallback, int tid) {
  constexpr int C = Traits::kChunksPerRow;
  static_assert(ITERS * Traits::kNThreads == ROWS * C, "tile split");
#pragma unroll
  for (int i = 0; i < ITERS; ++i) {
    const int idx = tid + i * Traits::kNThreads;
    const int r = idx / C, c = idx % C;
    const bool ok = r < rows_valid;
    const void *src = ok ? static_cast<const void *>(gmem + r * row_stride + c * Traits::kChunkElems) : fallback;
    ptx::cp_async_16(ptx::smem_addr(smem + Traits::swizzle(r, c)), src, ok);
  }
}

// Rotates rows [0, rows_valid) of a landed tile in place; cos/sin point at the tile's first token row.
template <typename Traits, int ROWS>
__device__ __forceinline__ void rotate_tile(typename Traits::Element *smem, const float *cos, const float *sin,
                                            int rows_valid, int tid, int rot_half, bool interleaved) {
  using T = typename Traits::Element;
  // cos/sin rows are rot_half floats apart: 16-byte vector loads when the base is aligned (rot_half % 8 == 0).
  const bool aligned = ((reinterpret_cast<uintptr_t>(cos) | reinterpret_cast<uintptr_t>(sin)) & 15u) == 0;
  if (!interleaved && rot_half == Traits::kHalf) {  // the default layout, with compile-time chunk counts
    constexpr int H = Traits::kHalfChunks;
    const int items = (rows_valid < ROWS ? rows_valid : ROWS) * H;
    for (int idx = tid; idx < items; idx += Traits::kNThreads) {
      const int r = idx / H, c = idx % H;
      const int64_t off = static_cast<int64_t>(r) * Traits::kHalf;
      rope_row_chunk<T>([&](int ch) { return reinterpret_cast<uint4 *>(smem + Traits::swizzle(r, ch)); }, c,
                        cos + off, sin + off, Traits::kHalf, false, aligned);
    }
    return;
  }
  const int per_row = rope_items_per_row(rot_half, interleaved);
  const int items = (rows_valid < ROWS ? rows_valid : ROWS) * per_row;
  for (int idx = tid; idx < items; idx += Traits::kNThreads) {
    const int r = idx / per_row, c = idx % per_row;
    const int64_t off = static_cast<int64_t>(r) * rot_half;
    rope_row_chunk<T>([&](int ch) { return reinterpret_cast<uint4 *>(smem + Traits::swizzle(r, ch)); }, c,
                      cos + off, sin + off, rot_half, interleaved, aligned);
  }
}

// ---- the kernel ------------------------------------------------------------------------------------------

template <typename Traits>
__global__ void __launch_bounds__(Traits::kNThreads, 1) attn_fwd_sm80_kernel(const AttnFwdParams p) {
  using T = typename Traits::Element;
  constexpr int kBlockM = Traits::kBlockM;
  constexpr int kBlockN = Traits::kBlockN;
  constexpr int kHeadDim = Traits::kHeadDim;
  constexpr int kNTilesN = Traits::kNTilesN;
  constexpr int kNTilesD = Traits::kNTilesD;
  constexpr int kKStepsD = Traits::kKStepsD;
  constexpr int kKStepsN = Traits::kKStepsN;
  constexpr int C = Traits::kChunksPerRow;

  HOPE_DYNAMIC_SMEM(smem_raw, uint4);  // 16-byte aligned; swizzled tiles need nothing more
  T *const sQ = reinterpret_cast<T *>(smem_raw) + Traits::kSmemQOffset;
  T *const sK = reinterpret_cast<T *>(smem_raw) + Traits::kSmemKOffset;
  T *const sV = reinterpret_cast<T *>(smem_raw) + Traits::kSmemVOffset;

  // Heaviest query tiles (the last ones under a causal mask) are scheduled first.
  const int m_block = static_cast<int>(gridDim.x) - 1 - static_cast<int>(blockIdx.x);
  const int head = blockIdx.y;
  const int b = static_cast<int>(blockIdx.z) + p.batch_offset;
  const int q_start = p.cu_seqlens_q[b];
  const int q_len = p.cu_seqlens_q[b + 1] - q_start;
  const int m0 = m_block * kBlockM;
  if (m0 >= q_len) return;  // past this sequence's true length (max_seqlen_q sized the grid)
  const int k_start = p.cu_seqlens_k[b];
  const int k_len = p.cu_seqlens_k[b + 1] - k_start;
  const int kv_head = head / p.head_group;

  // Keys this tile can see: all of them, or under the bottom-right causal mask those n <= i + Nk - Nq for
  // the tile's last row i = m0 + kBlockM - 1. Tiles beyond are skipped entirely (never loaded).
  int n_end = k_len;
  if (p.causal)  // in int64: m0 + kBlockM + k_len may pass INT_MAX before q_len is subtracted
    n_end = static_cast<int>(min(static_cast<int64_t>(k_len), static_cast<int64_t>(m0) + kBlockM + k_len - q_len));
  const int n_blocks = n_end > 0 ? (n_end + kBlockN - 1) / kBlockN : 0;

  const int tid = threadIdx.x;
  const int warp = tid >> 5;
  const int lane = tid & 31;
  const int g = lane >> 2;  // mma row group
  const int t4 = lane & 3;  // thread in group

  const T *gQ = static_cast<const T *>(p.q) + static_cast<int64_t>(q_start + m0) * p.q_row_stride +
                static_cast<int64_t>(head) * kHeadDim;
  const T *gK = static_cast<const T *>(p.k) + static_cast<int64_t>(k_start) * p.k_row_stride +
                static_cast<int64_t>(kv_head) * kHeadDim;
  const T *gV = static_cast<const T *>(p.v) + static_cast<int64_t>(k_start) * p.v_row_stride +
                static_cast<int64_t>(kv_head) * kHeadDim;
  const int q_rows = min(kBlockM, q_len - m0);

  // ---- prologue: Q (group 0), first K/V tile (group 1; empty when there is none) -------------------------
  load_tile_async<Traits, kBlockM, Traits::kQLoadIters>(sQ, gQ, p.q_row_stride, q_rows, p.q, tid);
  ptx::cp_async_commit();
  if (n_blocks > 0) {
    const int rows = min(kBlockN, k_len);
    load_tile_async<Traits, kBlockN, Traits::kKVLoadIters>(sK, gK, p.k_row_stride, rows, p.k, tid);
    load_tile_async<Traits, kBlockN, Traits::kKVLoadIters>(sV, gV, p.v_row_stride, rows, p.v, tid);
  }
  ptx::cp_async_commit();
  ptx::cp_async_wait<1>();  // Q has landed
  __syncthreads();
  if (p.cos_q != nullptr) {
    const int64_t row0 = static_cast<int64_t>(q_start + m0) * p.rot_half;
    rotate_tile<Traits, kBlockM>(sQ, p.cos_q + row0, p.sin_q + row0, q_rows, tid, p.rot_half, p.interleaved != 0);
    __syncthreads();
  }

  // ---- per-thread state: rows r0 = warp*16 + g and r1 = r0 + 8 of the tile -------------------------------
  float acc_o[kNTilesD][4];
#pragma unroll
  for (int d = 0; d < kNTilesD; ++d) acc_o[d][0] = acc_o[d][1] = acc_o[d][2] = acc_o[d][3] = 0.f;
  float row_max[2] = {-INFINITY, -INFINITY};
  float row_sum[2] = {0.f, 0.f};  // this thread's partial sums; reduced over the quad at the end
  const float scale_log2 = p.scale_log2;
  const int row_in_tile0 = warp * 16 + g;
  // Query index of row r minus the causal offset: key n is visible while n <= q_idx + (Nk - Nq).
  const int causal_shift = k_len - q_len;

  // Per-lane ldmatrix coordinates (see ptx_sm80.cuh for the fragment layouts).
  const int a_row = warp * 16 + (lane & 7) + ((lane >> 3) & 1) * 8;  // Q: A operand
  const int a_chunk = lane >> 4;
  const int kb_row = (lane & 7) + (lane >> 4) * 8;                    // K: B operand (non-transposed)
  const int kb_chunk = (lane >> 3) & 1;
  const int vb_row = (lane & 7) + ((lane >> 3) & 1) * 8;              // V: B operand (transposed)
  const int vb_chunk = lane >> 4;
  const uint32_t sQ_addr = ptx::smem_addr(sQ);

  for (int nb = 0; nb < n_blocks; ++nb) {
    const int stage = nb & 1;
    T *const sK_cur = sK + stage * Traits::kKVElems;
    T *const sV_cur = sV + stage * Traits::kKVElems;
    const int n0 = nb * kBlockN;

    // Prefetch tile nb + 1 into the other stage (freed by the barrier that ended iteration nb - 1).
    if (nb + 1 < n_blocks) {
      const int n1 = n0 + kBlockN;
      const int rows = min(kBlockN, k_len - n1);
      T *const sK_nxt = sK + (stage ^ 1) * Traits::kKVElems;
      T *const sV_nxt = sV + (stage ^ 1) * Traits::kKVElems;
      load_tile_async<Traits, kBlockN, Traits::kKVLoadIters>(sK_nxt, gK + static_cast<int64_t>(n1) * p.k_row_stride,
                                                             p.k_row_stride, rows, p.k, tid);
      load_tile_async<Traits, kBlockN, Traits::kKVLoadIters>(sV_nxt, gV + static_cast<int64_t>(n1) * p.v_row_stride,
                                                             p.v_row_stride, rows, p.v, tid);
    }
    ptx::cp_async_commit();
    ptx::cp_async_wait<1>();  // tile nb has landed
    __syncthreads();
    if (p.cos_k != nullptr) {  // in-kernel K rotation (no pre-pass buffer was given)
      const int64_t row0 = static_cast<int64_t>(k_start + n0) * p.rot_half;
      rotate_tile<Traits, kBlockN>(sK_cur, p.cos_k + row0, p.sin_k + row0, k_len - n0, tid, p.rot_half,
                                   p.interleaved != 0);
      __syncthreads();
    }

    // ---- S = Q K^T (16 x kBlockN per warp) -------------------------------------------------------------
    float acc_s[kNTilesN][4];
#pragma unroll
    for (int t = 0; t < kNTilesN; ++t) acc_s[t][0] = acc_s[t][1] = acc_s[t][2] = acc_s[t][3] = 0.f;
    const uint32_t sK_addr = ptx::smem_addr(sK_cur);
#pragma unroll
    for (int kk = 0; kk < kKStepsD; ++kk) {
      uint32_t a[4];
      ptx::ldmatrix_x4(a, sQ_addr + 2u * Traits::swizzle(a_row, 2 * kk + a_chunk));
#pragma unroll
      for (int nn = 0; nn < kNTilesN / 2; ++nn) {
        uint32_t bk[4];
        ptx::ldmatrix_x4(bk, sK_addr + 2u * Traits::swizzle(nn * 16 + kb_row, 2 * kk + kb_chunk));
        ptx::mma_16816<T>(acc_s[2 * nn], a, bk[0], bk[1]);
        ptx::mma_16816<T>(acc_s[2 * nn + 1], a, bk[2], bk[3]);
      }
    }

    // ---- masks: only on tiles that reach past Nk or across the causal diagonal of the tile's first row ----
    const bool need_mask = (n0 + kBlockN > k_len) || (p.causal && n0 + kBlockN - 1 > m0 + causal_shift);
    if (need_mask) {
#pragma unroll
      for (int t = 0; t < kNTilesN; ++t) {
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int col = n0 + t * 8 + t4 * 2 + (e & 1);
          const int row = m0 + row_in_tile0 + (e >> 1) * 8;
          if (col >= k_len || (p.causal && col > row + causal_shift)) acc_s[t][e] = -INFINITY;
        }
      }
    }

    // ---- online softmax (float32, base 2) ------------------------------------------------------------
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      float mx = row_max[r];
#pragma unroll
      for (int t = 0; t < kNTilesN; ++t) mx = fmaxf(mx, fmaxf(acc_s[t][2 * r], acc_s[t][2 * r + 1]));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
      // A row that has seen no visible key yet keeps max -inf; use 0 as its offset so that
      // exp2(-inf - offset) = 0 and nothing becomes NaN.
      const float offset = mx == -INFINITY ? 0.f : mx * scale_log2;
      const float corr = exp2f(row_max[r] * scale_log2 - offset);  // 0 when the old max was -inf
      row_max[r] = mx;
      row_sum[r] *= corr;
#pragma unroll
      for (int d = 0; d < kNTilesD; ++d) {
        acc_o[d][2 * r] *= corr;
        acc_o[d][2 * r + 1] *= corr;
      }
#pragma unroll
      for (int t = 0; t < kNTilesN; ++t) {
        const float p0 = exp2f(fmaf(acc_s[t][2 * r], scale_log2, -offset));
        const float p1 = exp2f(fmaf(acc_s[t][2 * r + 1], scale_log2, -offset));
        acc_s[t][2 * r] = p0;
        acc_s[t][2 * r + 1] = p1;
        row_sum[r] += p0 + p1;
      }
    }

    // ---- O += P V: the S accumulators become A fragments (k-step kk covers n8 tiles 2kk and 2kk+1) ------
    const uint32_t sV_addr = ptx::smem_addr(sV_cur);
#pragma unroll
    for (int kk = 0; kk < kKStepsN; ++kk) {
      uint32_t a[4];
      a[0] = ptx::pack2<T>(acc_s[2 * kk][0], acc_s[2 * kk][1]);
      a[1] = ptx::pack2<T>(acc_s[2 * kk][2], acc_s[2 * kk][3]);
      a[2] = ptx::pack2<T>(acc_s[2 * kk + 1][0], acc_s[2 * kk + 1][1]);
      a[3] = ptx::pack2<T>(acc_s[2 * kk + 1][2], acc_s[2 * kk + 1][3]);
#pragma unroll
      for (int dd = 0; dd < kKStepsD; ++dd) {
        uint32_t bv[4];
        ptx::ldmatrix_x4_trans(bv, sV_addr + 2u * Traits::swizzle(kk * 16 + vb_row, 2 * dd + vb_chunk));
        ptx::mma_16816<T>(acc_o[2 * dd], a, bv[0], bv[1]);
        ptx::mma_16816<T>(acc_o[2 * dd + 1], a, bv[2], bv[3]);
      }
    }
    __syncthreads();  // every warp is done with this stage before the next iteration refills it
  }
  ptx::cp_async_wait<0>();  // nothing may still be in flight into shared memory we reuse below

  // ---- epilogue: normalise, stage this warp's 16 rows in its own Q rows, store 16 bytes at a time --------
  float inv[2], lse[2];
  finalize_rows(row_max, row_sum, p.softmax_scale, inv, lse);
  __syncwarp();
#pragma unroll
  for (int d = 0; d < kNTilesD; ++d) {
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const int row = row_in_tile0 + r * 8;
      uint32_t *dst = reinterpret_cast<uint32_t *>(sQ + Traits::swizzle(row, d) + t4 * 2);
      *dst = ptx::pack2<T>(acc_o[d][2 * r] * inv[r], acc_o[d][2 * r + 1] * inv[r]);
    }
  }
  __syncwarp();
  T *const gO = static_cast<T *>(p.out) + static_cast<int64_t>(q_start + m0) * p.o_row_stride +
                static_cast<int64_t>(head) * kHeadDim;
#pragma unroll
  for (int i = 0; i < 16 * C / 32; ++i) {
    const int idx = lane + i * 32;
    const int r = idx / C, c = idx % C;
    const int row = warp * 16 + r;
    if (row < q_rows) {
      const uint4 v = *reinterpret_cast<const uint4 *>(sQ + Traits::swizzle(row, c));
      *reinterpret_cast<uint4 *>(gO + static_cast<int64_t>(row) * p.o_row_stride + c * Traits::kChunkElems) = v;
    }
  }
  if (p.lse != nullptr && t4 == 0) {
    const int64_t total_q = p.cu_seqlens_q[p.batch];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const int row = row_in_tile0 + r * 8;
      if (row < q_rows) p.lse[static_cast<int64_t>(head) * total_q + q_start + m0 + row] = lse[r];
    }
  }
}

}  // namespace hope
