// decode.cuh — the split-KV paged decode kernel (hope_decode_forward on the GPU), sm80+.
//
// One CTA of 128 threads per (sequence, kv head, split, block of 8 query rows). A "row" is one (query token,
// query head) pair of that kv head: GQA packs the group's query heads (and the 1..8 new tokens) together so
// the split's K/V are read once for all of them.
//
//  1. The CTA rotates its rows' q in float32 (from cos_q/sin_q), rounds them to the dtype (as a tensor-core
//     path would), scales them by softmax_scale * log2(e) and keeps them in shared memory; each thread then
//     holds the 8 rows' values for its 16-byte chunk of head_dim in registers.
//  2. The split's keys stream through shared memory in tiles of 4096 / head_dim keys (8 KiB of K and of V),
//     two stages deep, with 16-byte cp.async copies (zero-filled past the end); the page index of each key
//     comes from the page table one tile ahead of its copy.
//  3. Scores: head_dim/8 lanes share a key, each does an 8-element dot product for all 8 rows, and a
//     transposing butterfly reduces the 8 partial sums over those lanes with 7 to 9 shuffles.
//  4. Online softmax in the log2 domain with exp2: warp w owns rows w and w + 4 (running max and sum live in
//     its registers); masked keys (past the split, causal) score -inf.
//  5. P.V: each thread owns a pair of dims for all 8 rows, the CTA's threads splitting the tile's keys
//     between 256 / head_dim groups, reduced through shared memory at the end.
//  6. One split: out (dtype) and lse (natural log) directly. Several: the normalised partial o and the
//     log2-domain lse go to the workspace, and merge_splits_kernel (decode_launch.cu) combines them.
#pragma once

#include <cfloat>
#include <climits>
#include <cstdint>

#include "common.cuh"
#include "launch.h"
#include "rope/pairs.cuh"

namespace hope {
namespace serving {

// Everything the decode kernels read; filled from validated params by decode_launch.cu.
struct DecodeArgs {
  const void *k_pages, *v_pages, *q;
  void *out;
  float *lse;
  const float *cos_q, *sin_q;
  const int32_t *cu_q, *seq_lens, *page_table;
  float *partial_o, *partial_lse;
  int64_t q_row_stride;
  int32_t batch, hq, hk, group, page_size, max_pages, max_q, num_splits, causal;
  float scale_log2;  // softmax_scale * log2(e)
  RotaryLayout rl;   // SPEC §8 pairing and rotary dimension of q; cos_q/sin_q rows are rl.rot_half wide
};

template <int HEAD_DIM, typename T>
struct DecodeTraits {
  static constexpr int kThreads = 128;
  static constexpr int kWarps = kThreads / 32;
  static constexpr int kRows = HOPEI_DECODE_ROWS_PER_CTA;
  static constexpr int kHalf = HEAD_DIM / 2;
  static constexpr int kChunks = HEAD_DIM / 8;                    // 16-byte chunks per key row
  static constexpr int kTileKeys = 4096 / HEAD_DIM;               // 8 KiB of K (and of V) per tile
  static constexpr int kStages = 2;
  static constexpr int kKeysPerPass = kThreads / kChunks;         // keys scored at once by the CTA
  static constexpr int kPasses = kTileKeys / kKeysPerPass;
  static constexpr int kLoads = kTileKeys * kChunks / kThreads;   // 16-byte copies per thread per tensor
  static constexpr int kPairs = HEAD_DIM / 2;                     // P.V: threads per key
  static constexpr int kKeyGroups = kThreads / kPairs;
  static constexpr int kKeysPerGroup = kTileKeys / kKeyGroups;
  static constexpr int kRowsPerWarp = kRows / kWarps;
  static_assert(kRows == 8, "the score reduction is written for 8 rows");
  static_assert(HEAD_DIM % 64 == 0 && HEAD_DIM <= 256, "head_dim 64, 128 or 256");
  static_assert(kChunks >= 8 && kChunks <= 32 && 32 % kChunks == 0, "lanes of a key stay in one warp");
  static_assert(kPasses * kKeysPerPass == kTileKeys && kLoads * kThreads == kTileKeys * kChunks, "tiling");
  static_assert(kKeyGroups * kPairs == kThreads && kKeysPerGroup * kKeyGroups == kTileKeys, "P.V tiling");
  static_assert(kRowsPerWarp * kWarps == kRows, "softmax rows");
};

template <int HEAD_DIM, typename T>
struct DecodeSmem {
  using Tr = DecodeTraits<HEAD_DIM, T>;
  alignas(16) T k[Tr::kStages][Tr::kTileKeys * HEAD_DIM];
  alignas(16) T v[Tr::kStages][Tr::kTileKeys * HEAD_DIM];
  alignas(16) float q[Tr::kRows * HEAD_DIM];  // scaled q; reused for the final P.V reduction
  alignas(16) float s[Tr::kTileKeys * Tr::kRows];  // [key][row]: scores, then probabilities
  float alpha[Tr::kRows];
  float m[Tr::kRows], l[Tr::kRows];
};

// Reduces 8 per-row partial sums over the G lanes of a key (G = 8, 16 or 32, aligned within the warp).
// Returns the full sum of row *row (each lane ends with one row; lanes whose low log2(G/8) bits are 0
// hold distinct rows).
template <int G>
__device__ __forceinline__ float reduce_rows8(const float (&v)[8], int lane, int *row) {
  constexpr unsigned kFull = 0xffffffffu;
  const bool b2 = (lane & (G / 2)) != 0;
  float w[4];
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float send = b2 ? v[i] : v[i + 4];
    const float keep = b2 ? v[i + 4] : v[i];
    w[i] = keep + __shfl_xor_sync(kFull, send, G / 2);
  }
  const bool b1 = (lane & (G / 4)) != 0;
  float u[2];
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    const float send = b1 ? w[i] : w[i + 2];
    const float keep = b1 ? w[i + 2] : w[i];
    u[i] = keep + __shfl_xor_sync(kFull, send, G / 4);
  }
  const bool b0 = (lane & (G / 8)) != 0;
  float x = (b0 ? u[1] : u[0]) + __shfl_xor_sync(kFull, b0 ? u[0] : u[1], G / 8);
#pragma unroll
  for (int o = G / 16; o >= 1; o >>= 1) x += __shfl_xor_sync(kFull, x, o);
  *row = (b2 ? 4 : 0) + (b1 ? 2 : 0) + (b0 ? 1 : 0);
  return x;
}

__device__ __forceinline__ float warp_max(float x) {
#pragma unroll
  for (int o = 16; o >= 1; o >>= 1) x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, o));
  return x;
}
__device__ __forceinline__ float warp_sum(float x) {
#pragma unroll
  for (int o = 16; o >= 1; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
  return x;
}

template <int HEAD_DIM, typename T>
__global__ void __launch_bounds__(128, 3) decode_kernel(const DecodeArgs a) {
  using Tr = DecodeTraits<HEAD_DIM, T>;
  constexpr int D = HEAD_DIM, R = Tr::kRows, TK = Tr::kTileKeys;
  HOPE_STATIC_SMEM(sm, DecodeSmem<HEAD_DIM, T>);

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int b = static_cast<int>(blockIdx.x / static_cast<unsigned>(a.hk));
  const int h = static_cast<int>(blockIdx.x % static_cast<unsigned>(a.hk));
  const int split = blockIdx.y;
  const int row0 = blockIdx.z * R;

  const int q0 = a.cu_q[b];
  const int nq = min(a.cu_q[b + 1] - q0, a.max_q);
  const int nrows = nq * a.group;
  if (row0 >= nrows) return;  // uniform over the CTA
  const int64_t total_q = a.cu_q[a.batch];

  // The split's keys; seq_len is clamped to the page table row so a broken promise cannot read past it.
  int len = a.seq_lens[b];
  len = max(0, min(len, a.max_pages * a.page_size));
  const int chunk = (len + a.num_splits - 1) / a.num_splits;
  const int start = min(len, split * chunk);
  const int end = min(len, start + chunk);
  // Key limit (exclusive) per softmax row of this warp, and the CTA's largest.
  int limit[Tr::kRowsPerWarp];
#pragma unroll
  for (int k = 0; k < Tr::kRowsPerWarp; ++k) {
    const int gr = row0 + warp + k * Tr::kWarps;
    int lim = start;  // a row past the block's rows sees nothing
    if (gr < nrows) {
      lim = end;
      if (a.causal) lim = min(end, len - nq + gr / a.group + 1);
    }
    limit[k] = lim;
  }
  int cta_end = end;
  if (a.causal) cta_end = min(end, len - nq + (min(row0 + R, nrows) - 1) / a.group + 1);
  const int num_tiles = cta_end > start ? (cta_end - start + TK - 1) / TK : 0;

  // 1. q: rotate, round to T, scale; rows past the block are zero. Unit i of a row is rotary pair i or two dims
  // past rotary_dim (kernels/rope/pairs.cuh); the default layout is the pair (i, i + kHalf).
  for (int idx = tid; idx < R * Tr::kHalf; idx += Tr::kThreads) {
    const int r = idx / Tr::kHalf, i = idx % Tr::kHalf;
    const int gr = row0 + r;
    int32_t da, db;
    const bool rotary = rotary_unit(a.rl, i, &da, &db);
    float y1 = 0.f, y2 = 0.f;
    if (gr < nrows) {
      const int64_t token = static_cast<int64_t>(q0) + gr / a.group;
      const int j = h * a.group + gr % a.group;
      const T *qp = static_cast<const T *>(a.q) + token * a.q_row_stride + static_cast<int64_t>(j) * D;
      const float x1 = to_float(qp[da]), x2 = to_float(qp[db]);
      if (a.cos_q != nullptr && rotary) {
        const float c = a.cos_q[token * a.rl.rot_half + i], s = a.sin_q[token * a.rl.rot_half + i];
        // no contraction into fma: the CPU backend rounds every product the same way
        y1 = round_to<T>(__fsub_rn(__fmul_rn(x1, c), __fmul_rn(x2, s)));
        y2 = round_to<T>(__fadd_rn(__fmul_rn(x2, c), __fmul_rn(x1, s)));
      } else {
        y1 = x1;
        y2 = x2;
      }
    }
    sm.q[r * D + da] = y1 * a.scale_log2;
    sm.q[r * D + db] = y2 * a.scale_log2;
  }

  const T *kbase = static_cast<const T *>(a.k_pages);
  const T *vbase = static_cast<const T *>(a.v_pages);
  const int32_t *table = a.page_table + static_cast<int64_t>(b) * a.max_pages;
  const int64_t head_off = static_cast<int64_t>(h) * D;
  const int64_t slot_stride = static_cast<int64_t>(a.hk) * D;

  // Page indices of this thread's copies for a tile (0 for keys past the CTA's range).
  int pg[Tr::kLoads];
  auto load_pages = [&](int tile) {
#pragma unroll
    for (int i = 0; i < Tr::kLoads; ++i) {
      const int key = start + tile * TK + (tid + i * Tr::kThreads) / Tr::kChunks;
      pg[i] = key < cta_end ? __ldg(table + key / a.page_size) : 0;
    }
  };
  auto issue = [&](int tile, int stage) {
#pragma unroll
    for (int i = 0; i < Tr::kLoads; ++i) {
      const int idx = tid + i * Tr::kThreads;
      const int n = idx / Tr::kChunks, c = idx % Tr::kChunks;
      const int key = start + tile * TK + n;
      const bool valid = key < cta_end;
      int64_t off = 0;
      if (valid) off = (static_cast<int64_t>(pg[i]) * a.page_size + key % a.page_size) * slot_stride + head_off + c * 8;
      cp_async_16(&sm.k[stage][n * D + c * 8], kbase + off, valid ? 16 : 0);
      cp_async_16(&sm.v[stage][n * D + c * 8], vbase + off, valid ? 16 : 0);
    }
  };

  if (num_tiles > 0) {
    load_pages(0);
    issue(0, 0);
  }
  cp_async_commit();
  if (num_tiles > 1) load_pages(1);
  __syncthreads();  // sm.q complete

  // q of this thread's chunk, 8 rows, in registers.
  const int qc = tid % Tr::kChunks;
  float qr[R][8];
#pragma unroll
  for (int r = 0; r < R; ++r) {
    const float4 lo = *reinterpret_cast<const float4 *>(&sm.q[r * D + qc * 8]);
    const float4 hi = *reinterpret_cast<const float4 *>(&sm.q[r * D + qc * 8 + 4]);
    qr[r][0] = lo.x; qr[r][1] = lo.y; qr[r][2] = lo.z; qr[r][3] = lo.w;
    qr[r][4] = hi.x; qr[r][5] = hi.y; qr[r][6] = hi.z; qr[r][7] = hi.w;
  }

  float m_run[Tr::kRowsPerWarp], l_run[Tr::kRowsPerWarp];
#pragma unroll
  for (int k = 0; k < Tr::kRowsPerWarp; ++k) {
    m_run[k] = -INFINITY;
    l_run[k] = 0.f;
  }
  const int pd = tid % Tr::kPairs, kg = tid / Tr::kPairs;
  float acc[R][2];
#pragma unroll
  for (int r = 0; r < R; ++r) acc[r][0] = acc[r][1] = 0.f;

  for (int t = 0; t < num_tiles; ++t) {
    const int stage = t & 1;
    if (t + 1 < num_tiles) issue(t + 1, stage ^ 1);
    cp_async_commit();
    if (t + 2 < num_tiles) load_pages(t + 2);
    cp_async_wait<1>();
    __syncthreads();

    // 3. scores of the tile, [key][row]
    const T *ks = sm.k[stage];
#pragma unroll
    for (int pass = 0; pass < Tr::kPasses; ++pass) {
      const int n = pass * Tr::kKeysPerPass + tid / Tr::kChunks;
      const uint4 raw = *reinterpret_cast<const uint4 *>(ks + n * D + qc * 8);
      float kf[8];
      unpack8<T>(raw, kf);
      float dot[R];
#pragma unroll
      for (int r = 0; r < R; ++r) {
        float x = 0.f;
#pragma unroll
        for (int e = 0; e < 8; ++e) x = fmaf(qr[r][e], kf[e], x);
        dot[r] = x;
      }
      int row;
      const float x = reduce_rows8<Tr::kChunks>(dot, lane, &row);
      if ((lane & (Tr::kChunks / 8 - 1)) == 0) sm.s[n * R + row] = x;
    }
    __syncthreads();

    // 4. online softmax, warp `warp` owns rows warp + k * kWarps
    const int tile_start = start + t * TK;
#pragma unroll
    for (int k = 0; k < Tr::kRowsPerWarp; ++k) {
      const int r = warp + k * Tr::kWarps;
      constexpr int kPerLane = (TK + 31) / 32;
      float sv[kPerLane];
      float mx = -INFINITY;
#pragma unroll
      for (int i = 0; i < kPerLane; ++i) {
        const int n = lane + 32 * i;
        float s = -INFINITY;
        if (n < TK && tile_start + n < limit[k]) s = sm.s[n * R + r];
        sv[i] = s;
        mx = fmaxf(mx, s);
      }
      mx = warp_max(mx);
      const float m_new = fmaxf(m_run[k], mx);
      const float m_use = m_new == -INFINITY ? 0.f : m_new;
      const float alpha = exp2f(m_run[k] - m_use);
      float sum = 0.f;
#pragma unroll
      for (int i = 0; i < kPerLane; ++i) {
        const int n = lane + 32 * i;
        const float p = exp2f(sv[i] - m_use);
        sum += p;
        if (n < TK) sm.s[n * R + r] = p;
      }
      sum = warp_sum(sum);
      l_run[k] = l_run[k] * alpha + sum;
      m_run[k] = m_new;
      if (lane == 0) sm.alpha[r] = alpha;
    }
    __syncthreads();

    // 5. acc += P.V over this thread's key group
    {
      const T *vs = sm.v[stage];
#pragma unroll
      for (int r = 0; r < R; ++r) {
        const float al = sm.alpha[r];
        acc[r][0] *= al;
        acc[r][1] *= al;
      }
#pragma unroll 8
      for (int i = 0; i < Tr::kKeysPerGroup; ++i) {
        const int n = kg + i * Tr::kKeyGroups;
        const float2 vv = Pair<T>::to_float2(*reinterpret_cast<const typename Pair<T>::Type *>(vs + n * D + 2 * pd));
        const float4 p0 = *reinterpret_cast<const float4 *>(&sm.s[n * R]);
        const float4 p1 = *reinterpret_cast<const float4 *>(&sm.s[n * R + 4]);
        const float p[8] = {p0.x, p0.y, p0.z, p0.w, p1.x, p1.y, p1.z, p1.w};
#pragma unroll
        for (int r = 0; r < R; ++r) {
          acc[r][0] = fmaf(p[r], vv.x, acc[r][0]);
          acc[r][1] = fmaf(p[r], vv.y, acc[r][1]);
        }
      }
    }
    __syncthreads();
  }
  cp_async_wait<0>();

  // 6. reduce the key groups' accumulators into sm.q (free now), then write.
  if (lane == 0) {
#pragma unroll
    for (int k = 0; k < Tr::kRowsPerWarp; ++k) {
      sm.m[warp + k * Tr::kWarps] = m_run[k];
      sm.l[warp + k * Tr::kWarps] = l_run[k];
    }
  }
  __syncthreads();  // every thread is done reading sm.q for its q registers
#pragma unroll
  for (int g = 0; g < Tr::kKeyGroups; ++g) {
    if (kg == g) {
#pragma unroll
      for (int r = 0; r < R; ++r) {
        float2 *dst = reinterpret_cast<float2 *>(&sm.q[r * D + 2 * pd]);
        if (g == 0) {
          *dst = make_float2(acc[r][0], acc[r][1]);
        } else {
          const float2 cur = *dst;
          *dst = make_float2(cur.x + acc[r][0], cur.y + acc[r][1]);
        }
      }
    }
    __syncthreads();
  }

  const int64_t rows_total = static_cast<int64_t>(a.batch) * a.max_q;
  for (int idx = tid; idx < R * D; idx += Tr::kThreads) {
    const int r = idx / D, i = idx % D;
    const int gr = row0 + r;
    if (gr >= nrows) continue;
    const int qi = gr / a.group, j = h * a.group + gr % a.group;
    const float l = sm.l[r];
    const float o = l > 0.f ? sm.q[idx] / l : 0.f;
    if (a.num_splits == 1) {
      const int64_t token = static_cast<int64_t>(q0) + qi;
      static_cast<T *>(a.out)[(token * a.hq + j) * D + i] = from_float<T>(o);
      if (i == 0 && a.lse != nullptr)
        a.lse[static_cast<int64_t>(j) * total_q + token] =
            l > 0.f ? (sm.m[r] + log2f(l)) * 0.69314718055994530942f : -INFINITY;
    } else {
      const int64_t prow = (static_cast<int64_t>(split) * rows_total + static_cast<int64_t>(b) * a.max_q + qi) * a.hq + j;
      a.partial_o[prow * D + i] = o;
      if (i == 0) a.partial_lse[prow] = l > 0.f ? sm.m[r] + log2f(l) : -INFINITY;
    }
  }
}

// Launches decode_kernel<HEAD_DIM, T>; one explicit instance per generated kernels/instances/decode_hd*_*_sm80.cu
template <int HEAD_DIM, typename T>
hope_status_t launch_decode(const DecodeArgs &a, int32_t row_blocks, cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>(a.batch) * static_cast<unsigned>(a.hk), static_cast<unsigned>(a.num_splits),
                  static_cast<unsigned>(row_blocks));
  hope::launch_kernel(&decode_kernel<HEAD_DIM, T>, grid, DecodeTraits<HEAD_DIM, T>::kThreads, 0, stream, a);
  return check_launch("hope_decode_forward", "the decode kernel launch");
}

}  // namespace serving
}  // namespace hope
