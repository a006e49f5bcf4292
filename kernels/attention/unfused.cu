// unfused.cu — the unfused GPU reference path of SPEC §5 (hope_attention_forward_unfused).
//
// Four steps on the caller's stream, nothing allocated per call and nothing read back:
//   (a) gather_rotate_kernel: q, k and v are gathered from their packed varlen rows into padded per-sequence
//       blocks [batch][heads][max_seqlen][d] in the dtype (q and k rotated first when cos/sin are given,
//       in float32 registers, then rounded to the dtype as tensor cores need; float32 stays float32). The
//       padding rows are zeroed. The rotated K is also written to params->k_rotated (once per key token).
//   (b) cuBLAS: S = Q.K^T in float32, one strided-batched GEMM over (sequence, kv head): the `group` query
//       heads that read one kv head are contiguous in the padded Q, so they form one (group*max_q) x d matrix
//       and no K or V is ever copied per query head.
//   (c) masked_softmax_kernel: float32 row softmax of scale*S with the bottom-right causal mask and the
//       padding masked; writes P = exp(scale*s - max) (unnormalised, in the dtype, as flash kernels round it;
//       float32 in place over S for the float32 path), the float32 row sum, and lse = max + log(sum).
//       A row with no visible key gets P = 0, sum = 0 and lse = -inf.
//   (d) cuBLAS: O = P.V in float32; scatter_out_kernel divides by the row sum and writes the packed
//       [total_q][Hq][d] output in the dtype (rows with no visible key: 0).
//
// cu_seqlens live in device memory: the host sizes and launches everything from batch and max_seqlen_q/k
// only; the kernels read cu_seqlens and skip or mask what lies beyond each sequence's true length.
//
// Workspace (each buffer 256-byte aligned, plus 256 bytes so an unaligned base can be aligned up):
//   cuBLAS workspace   32 MiB (handed to cublasSetWorkspace so cuBLAS never allocates, e.g. during capture)
//   Qp                 batch * Hq * max_q * d      dtype
//   Kp, Vp             batch * Hk * max_k * d      dtype (each)
//   S                  batch * Hq * max_q * max_k  float32
//   P                  batch * Hq * max_q * max_k  dtype (float32: shares S)
//   O                  batch * Hq * max_q * d      float32
//   row sums           batch * Hq * max_q          float32
// i.e. O(Hq * batch * max_seqlen_q * max_seqlen_k) floats: this is a reference path, not a fast one.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <cublas_v2.h>

#include <climits>
#include <cstdint>
#include <exception>
#include <initializer_list>
#include <mutex>
#include <new>

#include "../../csrc/internal.h"
#include "common/dtype.cuh"
#include "common/launch.cuh"
#include "launch.h"
#include "rope/pairs.cuh"

namespace hope {
namespace unfused {

constexpr size_t kAlign = 256;
constexpr size_t kCublasWorkspaceBytes = size_t{32} << 20;
constexpr int kGatherThreads = 128;
constexpr int kSoftmaxThreads = 256;
constexpr int kScatterThreads = 128;
constexpr int64_t kMaxGrid = int64_t{1} << 20;  // grid-stride loops cover the rest

const char *const kFn = "hope_attention_forward_unfused";
const char *const kWsFn = "hope_attention_unfused_workspace_size";

// ---- (a) gather + rotate ---------------------------------------------------------------------------------
// One block per padded row r = b * max_len + i (grid-stride); threads walk the (head, unit) items of the row,
// a unit being a rotary pair or two dims past rotary_dim (kernels/rope/pairs.cuh; cos/sin rows are rl.rot_half
// wide). dst (may be null): padded [batch][heads][max_len][d]; rotated_out (may be null): packed [total][heads][d].
template <typename T>
__global__ void gather_rotate_kernel(const T *__restrict__ src, int64_t src_stride, const int32_t *__restrict__ cu,
                                     int32_t batch, int32_t max_len, int32_t heads, int32_t head_dim,
                                     const float *__restrict__ cos, const float *__restrict__ sin, RotaryLayout rl,
                                     T *__restrict__ dst, T *__restrict__ rotated_out) {
  const int32_t half = head_dim / 2;
  const int64_t rows = static_cast<int64_t>(batch) * max_len;
  const int64_t items = static_cast<int64_t>(heads) * half;
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const int32_t b = static_cast<int32_t>(r / max_len);
    const int32_t i = static_cast<int32_t>(r % max_len);
    const int32_t start = cu[b];
    const bool live = i < cu[b + 1] - start;
    const int64_t tok = static_cast<int64_t>(start) + i;
    for (int64_t w = threadIdx.x; w < items; w += blockDim.x) {
      const int32_t h = static_cast<int32_t>(w / half), c = static_cast<int32_t>(w % half);
      int32_t da, db;
      const bool rotary = rotary_unit(rl, c, &da, &db);
      T *d0 = dst ? dst + ((static_cast<int64_t>(b) * heads + h) * max_len + i) * head_dim : nullptr;
      if (!live) {
        if (d0) {
          d0[da] = from_float<T>(0.0f);
          d0[db] = from_float<T>(0.0f);
        }
        continue;
      }
      const T *s0 = src + tok * src_stride + static_cast<int64_t>(h) * head_dim;
      T o0 = s0[da], o1 = s0[db];  // past rotary_dim, or without cos/sin: the input's bits
      if (cos != nullptr && rotary) {
        const float x0 = to_float(o0), x1 = to_float(o1);
        const float cs = cos[tok * rl.rot_half + c], sn = sin[tok * rl.rot_half + c];
        o0 = from_float<T>(x0 * cs - x1 * sn);
        o1 = from_float<T>(x1 * cs + x0 * sn);
      }
      if (d0) {
        d0[da] = o0;
        d0[db] = o1;
      }
      if (rotated_out) {
        T *k0 = rotated_out + tok * heads * head_dim + static_cast<int64_t>(h) * head_dim;
        k0[da] = o0;
        k0[db] = o1;
      }
    }
  }
}

// ---- (c) masked softmax ----------------------------------------------------------------------------------
__device__ __forceinline__ float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
// Every thread of the block gets the result. The leading barrier makes back-to-back calls safe.
template <bool kMax>
__device__ __forceinline__ float block_reduce(float v, float *smem) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = (blockDim.x + 31) >> 5;
  v = kMax ? warp_max(v) : warp_sum(v);
  __syncthreads();
  if (lane == 0) smem[warp] = v;
  __syncthreads();
  const float ident = kMax ? -INFINITY : 0.0f;
  v = lane < nwarps ? smem[lane] : ident;
  return kMax ? warp_max(v) : warp_sum(v);
}

// One block per padded row r = (b * Hq + j) * max_q + i (grid-stride). S and P rows are max_k long.
// P may alias S (float32 path): each element is read and then written by the same thread.
template <typename T>
__global__ void masked_softmax_kernel(const float *S, T *P, float *__restrict__ row_sum, float *__restrict__ lse,
                                      const int32_t *__restrict__ cu_q, const int32_t *__restrict__ cu_k,
                                      int32_t batch, int32_t hq, int32_t max_q, int32_t max_k, float scale,
                                      int32_t causal) {
  HOPE_STATIC_SMEM(smem, float[32]);
  const int64_t rows = static_cast<int64_t>(batch) * hq * max_q;
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const int64_t bj = r / max_q;
    const int32_t i = static_cast<int32_t>(r % max_q);
    const int32_t j = static_cast<int32_t>(bj % hq);
    const int32_t b = static_cast<int32_t>(bj / hq);
    const int32_t q0 = cu_q[b];
    const int32_t nq = cu_q[b + 1] - q0;
    const int32_t nk = cu_k[b + 1] - cu_k[b];
    const float *srow = S + r * max_k;
    T *prow = P + r * max_k;
    // Keys 0..last are visible (bottom-right causal: n <= i + nk - nq).
    int64_t last = -1;
    if (i < nq) {
      last = static_cast<int64_t>(min(nk, max_k)) - 1;
      if (causal) last = min(last, static_cast<int64_t>(i) + nk - nq);
    }
    if (last < 0) {
      for (int64_t n = threadIdx.x; n < max_k; n += blockDim.x) prow[n] = from_float<T>(0.0f);
      if (threadIdx.x == 0) {
        row_sum[r] = 0.0f;
        if (lse != nullptr && i < nq) lse[static_cast<int64_t>(j) * cu_q[batch] + q0 + i] = -INFINITY;
      }
      continue;
    }
    float m = -INFINITY;
    for (int64_t n = threadIdx.x; n <= last; n += blockDim.x) m = fmaxf(m, srow[n]);
    m = block_reduce<true>(m, smem);
    const float ms = m * scale;  // scale > 0, so max(scale * s) = scale * max(s)
    float sum = 0.0f;
    for (int64_t n = threadIdx.x; n < max_k; n += blockDim.x) {
      float e = 0.0f;
      if (n <= last) e = expf(fmaf(srow[n], scale, -ms));
      sum += e;
      prow[n] = from_float<T>(e);
    }
    sum = block_reduce<false>(sum, smem);
    if (threadIdx.x == 0) {
      row_sum[r] = sum;
      if (lse != nullptr) lse[static_cast<int64_t>(j) * cu_q[batch] + q0 + i] = ms + logf(sum);
    }
  }
}

// ---- (d) scatter O ---------------------------------------------------------------------------------------
// One block per padded query row r = b * max_q + i; writes out[q0 + i][j][c] = O[b][j][i][c] / sum.
template <typename T>
__global__ void scatter_out_kernel(const float *__restrict__ O, const float *__restrict__ row_sum,
                                   const int32_t *__restrict__ cu_q, int32_t batch, int32_t hq, int32_t max_q,
                                   int32_t head_dim, T *__restrict__ out) {
  const int64_t rows = static_cast<int64_t>(batch) * max_q;
  const int64_t items = static_cast<int64_t>(hq) * head_dim;
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const int32_t b = static_cast<int32_t>(r / max_q);
    const int32_t i = static_cast<int32_t>(r % max_q);
    const int32_t q0 = cu_q[b];
    if (i >= cu_q[b + 1] - q0) continue;
    T *orow = out + (static_cast<int64_t>(q0) + i) * items;
    for (int64_t w = threadIdx.x; w < items; w += blockDim.x) {
      const int32_t j = static_cast<int32_t>(w / head_dim), c = static_cast<int32_t>(w % head_dim);
      const int64_t pr = (static_cast<int64_t>(b) * hq + j) * max_q + i;
      const float l = row_sum[pr];
      orow[w] = from_float<T>(l > 0.0f ? O[pr * head_dim + c] / l : 0.0f);
    }
  }
}

// ---- workspace plan --------------------------------------------------------------------------------------
struct Plan {
  size_t elem = 0;  // dtype size
  bool gemm = false;
  size_t cublas_off = 0, q_off = 0, k_off = 0, v_off = 0, s_off = 0, p_off = 0, o_off = 0, sum_off = 0;
  size_t total = 0;  // bytes the caller must provide (0: nothing needed)
};

bool mul_sz(size_t a, size_t b, size_t *out) { return !__builtin_mul_overflow(a, b, out); }
bool add_sz(size_t a, size_t b, size_t *out) { return !__builtin_add_overflow(a, b, out); }
// Places a buffer of n bytes at *cursor (aligned up) and advances the cursor.
bool place(size_t n, size_t *cursor, size_t *offset) {
  size_t start;
  if (!add_sz(*cursor, kAlign - 1, &start)) return false;
  start &= ~(kAlign - 1);
  *offset = start;
  return add_sz(start, n, cursor);
}
bool product(size_t *out, std::initializer_list<size_t> xs) {
  size_t acc = 1;
  for (size_t x : xs)
    if (!mul_sz(acc, x, &acc)) return false;
  *out = acc;
  return true;
}

hope_status_t make_plan(const hope_attention_params_t *p, const char *fn, Plan *plan) {
  const size_t elem = hopei_dtype_size(p->dtype);
  if (elem == 0) return hopei_fail(HOPE_ERROR_INVALID_VALUE, "%s: params->dtype %d is not a hope_dtype_t", fn, p->dtype);
  if (p->batch < 0 || p->num_q_heads < 1 || p->num_kv_heads < 1 || p->num_q_heads % p->num_kv_heads != 0 ||
      p->head_dim < 2 || p->head_dim % 2 != 0 || p->max_seqlen_q < 0 || p->max_seqlen_k < 0)
    return hopei_fail(HOPE_ERROR_INVALID_VALUE,
                      "%s: bad shape (batch %d, heads %d/%d, head_dim %d, max_seqlen %d/%d)", fn, p->batch,
                      p->num_q_heads, p->num_kv_heads, p->head_dim, p->max_seqlen_q, p->max_seqlen_k);
  Plan pl;
  pl.elem = elem;
  const size_t B = static_cast<size_t>(p->batch), hq = static_cast<size_t>(p->num_q_heads),
               hk = static_cast<size_t>(p->num_kv_heads), d = static_cast<size_t>(p->head_dim),
               mq = static_cast<size_t>(p->max_seqlen_q), mk = static_cast<size_t>(p->max_seqlen_k);
  pl.gemm = B > 0 && mq > 0 && mk > 0;
  if (B == 0 || mq == 0) {  // no query rows: at most k_rotated is written, which needs no workspace
    *plan = pl;
    return HOPE_SUCCESS;
  }
  size_t cursor = 0, n = 0;
  bool ok = true;
  if (pl.gemm) {
    // cuBLAS int limits: n = group * max_q, batch count = batch * Hk.
    const size_t group = hq / hk;
    if (group * mq > static_cast<size_t>(INT_MAX) || B * hk > static_cast<size_t>(INT_MAX))
      return hopei_fail(HOPE_ERROR_NOT_SUPPORTED,
                        "%s: (Hq/Hk) * max_seqlen_q = %zu or batch * Hk = %zu exceeds cuBLAS's int range", fn,
                        group * mq, B * hk);
    ok = ok && place(kCublasWorkspaceBytes, &cursor, &pl.cublas_off);
    ok = ok && product(&n, {B, hq, mq, d, elem}) && place(n, &cursor, &pl.q_off);
    ok = ok && product(&n, {B, hk, mk, d, elem}) && place(n, &cursor, &pl.k_off) && place(n, &cursor, &pl.v_off);
    ok = ok && product(&n, {B, hq, mq, mk, sizeof(float)}) && place(n, &cursor, &pl.s_off);
    if (p->dtype == HOPE_DTYPE_FLOAT32) {
      pl.p_off = pl.s_off;
    } else {
      ok = ok && product(&n, {B, hq, mq, mk, elem}) && place(n, &cursor, &pl.p_off);
    }
    ok = ok && product(&n, {B, hq, mq, d, sizeof(float)}) && place(n, &cursor, &pl.o_off);
  }
  ok = ok && product(&n, {B, hq, mq, sizeof(float)}) && place(n, &cursor, &pl.sum_off);
  ok = ok && add_sz(cursor, kAlign, &pl.total);  // room to align an unaligned base up
  if (!ok)
    return hopei_fail(HOPE_ERROR_OUT_OF_MEMORY, "%s: the workspace for batch %d, Hq %d, max_seqlen %d x %d, "
                      "head_dim %d does not fit in size_t", fn, p->batch, p->num_q_heads, p->max_seqlen_q,
                      p->max_seqlen_k, p->head_dim);
  *plan = pl;
  return HOPE_SUCCESS;
}

// ---- cuBLAS handles: one per device, created lazily, never destroyed (process exit reclaims them) ---------
struct HandleTable {
  static constexpr int kMaxDevices = 64;
  std::mutex mu;  // held while a handle is configured and its GEMMs are enqueued
  cublasHandle_t handles[kMaxDevices] = {};
};
HandleTable &handle_table() {
  static HandleTable *table = new HandleTable();  // leaked on purpose: no destructor after CUDA shuts down
  return *table;
}

hope_status_t cublas_fail(cublasStatus_t s, const char *what) {
  const hope_status_t st = s == CUBLAS_STATUS_ALLOC_FAILED ? HOPE_ERROR_OUT_OF_MEMORY : HOPE_ERROR_CUDA;
  return hopei_fail(st, "%s: %s failed: %s (cuBLAS status %d)", kFn, what, cublasGetStatusString(s),
                    static_cast<int>(s));
}

#define HOPE_UNFUSED_CUDA(expr)                                                 \
  do {                                                                          \
    cudaError_t e_ = (expr);                                                    \
    if (e_ != cudaSuccess) return hopei_cuda_fail(static_cast<int>(e_), kFn, #expr); \
  } while (0)
#define HOPE_UNFUSED_LAUNCHED(what)                                             \
  do {                                                                          \
    cudaError_t e_ = cudaGetLastError();                                        \
    if (e_ != cudaSuccess) return hopei_cuda_fail(static_cast<int>(e_), kFn, what); \
  } while (0)
#define HOPE_UNFUSED_CUBLAS(expr)                        \
  do {                                                   \
    cublasStatus_t s_ = (expr);                          \
    if (s_ != CUBLAS_STATUS_SUCCESS) return cublas_fail(s_, #expr); \
  } while (0)

unsigned grid_for(int64_t rows) { return static_cast<unsigned>(rows < kMaxGrid ? rows : kMaxGrid); }

template <typename T>
struct CudaType;
template <>
struct CudaType<float> { static constexpr cudaDataType_t kValue = CUDA_R_32F; };
template <>
struct CudaType<__half> { static constexpr cudaDataType_t kValue = CUDA_R_16F; };
template <>
struct CudaType<__nv_bfloat16> { static constexpr cudaDataType_t kValue = CUDA_R_16BF; };

// The two GEMMs, with the handle table's lock held by the caller.
template <typename T>
hope_status_t run_gemms(cublasHandle_t h, const hope_attention_params_t *p, const Plan &pl, char *ws,
                        cudaStream_t stream) {
  const cudaDataType_t ab = CudaType<T>::kValue;
  const int d = p->head_dim, mq = p->max_seqlen_q, mk = p->max_seqlen_k;
  const int group = p->num_q_heads / p->num_kv_heads;
  const int rows = group * mq;  // the query heads of one kv head, stacked
  const int count = p->batch * p->num_kv_heads;
  const float one = 1.0f, zero = 0.0f;
  HOPE_UNFUSED_CUBLAS(cublasSetStream(h, stream));
  // cublasSetStream resets the workspace to cuBLAS's own pool: set ours after it.
  HOPE_UNFUSED_CUBLAS(cublasSetWorkspace(h, ws + pl.cublas_off, kCublasWorkspaceBytes));
  HOPE_UNFUSED_CUBLAS(cublasSetPointerMode(h, CUBLAS_POINTER_MODE_HOST));
  // Column-major view: S^T (mk x rows, ld mk) = Kp^T[op T of d x mk] * Qp^T (d x rows).
  HOPE_UNFUSED_CUBLAS(cublasGemmStridedBatchedEx(
      h, CUBLAS_OP_T, CUBLAS_OP_N, mk, rows, d, &one, ws + pl.k_off, ab, d, static_cast<long long>(mk) * d,
      ws + pl.q_off, ab, d, static_cast<long long>(rows) * d, &zero, ws + pl.s_off, CUDA_R_32F, mk,
      static_cast<long long>(rows) * mk, count, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  return HOPE_SUCCESS;
}

template <typename T>
hope_status_t run_pv(cublasHandle_t h, const hope_attention_params_t *p, const Plan &pl, char *ws) {
  const cudaDataType_t ab = CudaType<T>::kValue;
  const int d = p->head_dim, mq = p->max_seqlen_q, mk = p->max_seqlen_k;
  const int rows = (p->num_q_heads / p->num_kv_heads) * mq;
  const int count = p->batch * p->num_kv_heads;
  const float one = 1.0f, zero = 0.0f;
  // Column-major view: O^T (d x rows, ld d) = Vp^T (d x mk) * P^T (mk x rows, ld mk).
  HOPE_UNFUSED_CUBLAS(cublasGemmStridedBatchedEx(
      h, CUBLAS_OP_N, CUBLAS_OP_N, d, rows, mk, &one, ws + pl.v_off, ab, d, static_cast<long long>(mk) * d,
      ws + pl.p_off, ab, mk, static_cast<long long>(rows) * mk, &zero, ws + pl.o_off, CUDA_R_32F, d,
      static_cast<long long>(rows) * d, count, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  return HOPE_SUCCESS;
}

template <typename T>
hope_status_t forward(const hope_attention_params_t *p, const Plan &pl, char *ws, cudaStream_t stream) {
  const int32_t B = p->batch, hq = p->num_q_heads, hk = p->num_kv_heads, d = p->head_dim;
  const int32_t mq = p->max_seqlen_q, mk = p->max_seqlen_k;
  const bool rot_q = p->cos_q != nullptr && p->sin_q != nullptr;
  const bool rot_k = p->cos_k != nullptr && p->sin_k != nullptr;
  T *k_rot = static_cast<T *>(p->k_rotated);
  const RotaryLayout rl = make_rotary_layout(d, p->rope_pairing, p->rotary_dim);

  // (a) gather + rotate. K runs whenever there are keys, so k_rotated is written even without queries.
  if (B > 0 && mk > 0 && (pl.gemm || k_rot != nullptr)) {
    const int64_t rows = static_cast<int64_t>(B) * mk;
    hope::launch_kernel(&gather_rotate_kernel<T>, grid_for(rows), kGatherThreads, 0, stream,
        static_cast<const T *>(p->k), p->k_row_stride, p->cu_seqlens_k, B, mk, hk, d, rot_k ? p->cos_k : nullptr,
        rot_k ? p->sin_k : nullptr, rl, pl.gemm ? reinterpret_cast<T *>(ws + pl.k_off) : nullptr, k_rot);
    HOPE_UNFUSED_LAUNCHED("gather_rotate_kernel (k)");
  }
  if (B == 0 || mq == 0) return HOPE_SUCCESS;  // no query rows: nothing else to write
  if (pl.gemm) {
    const int64_t rows_k = static_cast<int64_t>(B) * mk, rows_q = static_cast<int64_t>(B) * mq;
    hope::launch_kernel(&gather_rotate_kernel<T>, grid_for(rows_k), kGatherThreads, 0, stream,
        static_cast<const T *>(p->v), p->v_row_stride, p->cu_seqlens_k, B, mk, hk, d, nullptr, nullptr, rl,
        reinterpret_cast<T *>(ws + pl.v_off), nullptr);
    HOPE_UNFUSED_LAUNCHED("gather_rotate_kernel (v)");
    hope::launch_kernel(&gather_rotate_kernel<T>, grid_for(rows_q), kGatherThreads, 0, stream,
        static_cast<const T *>(p->q), p->q_row_stride, p->cu_seqlens_q, B, mq, hq, d, rot_q ? p->cos_q : nullptr,
        rot_q ? p->sin_q : nullptr, rl, reinterpret_cast<T *>(ws + pl.q_off), nullptr);
    HOPE_UNFUSED_LAUNCHED("gather_rotate_kernel (q)");
  }

  // (b) S = Q.K^T, (c) softmax, (d) O = P.V, under one hold of the device's handle.
  int dev = 0;
  HOPE_UNFUSED_CUDA(cudaGetDevice(&dev));
  if (dev < 0 || dev >= HandleTable::kMaxDevices)
    return hopei_fail(HOPE_ERROR_NOT_SUPPORTED, "%s: device %d is beyond the %d devices supported", kFn, dev,
                      HandleTable::kMaxDevices);
  HandleTable &table = handle_table();
  std::lock_guard<std::mutex> lock(table.mu);
  cublasHandle_t h = table.handles[dev];
  if (pl.gemm && h == nullptr) {
    HOPE_UNFUSED_CUBLAS(cublasCreate(&h));
    // No TF32: the float32 path must meet SPEC's 1e-5 relative tolerance.
    cublasStatus_t s = cublasSetMathMode(h, CUBLAS_DEFAULT_MATH);
    if (s != CUBLAS_STATUS_SUCCESS) {
      (void)cublasDestroy(h);
      return cublas_fail(s, "cublasSetMathMode");
    }
    table.handles[dev] = h;
  }
  if (pl.gemm) HOPEI_TRY(run_gemms<T>(h, p, pl, ws, stream));

  float *S = pl.gemm ? reinterpret_cast<float *>(ws + pl.s_off) : nullptr;
  T *P = pl.gemm ? reinterpret_cast<T *>(ws + pl.p_off) : nullptr;
  float *sums = reinterpret_cast<float *>(ws + pl.sum_off);
  const int64_t rows_s = static_cast<int64_t>(B) * hq * mq;
  // With max_seqlen_k == 0 the kernel touches no S/P element: it only writes sums = 0 and lse = -inf.
  hope::launch_kernel(&masked_softmax_kernel<T>, grid_for(rows_s), kSoftmaxThreads, 0, stream, S, P, sums, p->lse,
      p->cu_seqlens_q, p->cu_seqlens_k, B, hq, mq, mk, p->softmax_scale, p->causal != 0);
  HOPE_UNFUSED_LAUNCHED("masked_softmax_kernel");

  if (pl.gemm) HOPEI_TRY(run_pv<T>(h, p, pl, ws));

  const int64_t rows_o = static_cast<int64_t>(B) * mq;
  hope::launch_kernel(&scatter_out_kernel<T>, grid_for(rows_o), kScatterThreads, 0, stream,
      pl.gemm ? reinterpret_cast<const float *>(ws + pl.o_off) : nullptr, sums, p->cu_seqlens_q, B, hq, mq, d,
      static_cast<T *>(p->out));
  HOPE_UNFUSED_LAUNCHED("scatter_out_kernel");
  return HOPE_SUCCESS;
}

}  // namespace unfused
}  // namespace hope

extern "C" hope_status_t hopei_attention_unfused_workspace(const hope_attention_params_t *p, size_t *workspace_bytes) {
  using namespace hope::unfused;
  try {
    if (p == nullptr || workspace_bytes == nullptr)
      return hopei_fail(HOPE_ERROR_INVALID_VALUE, "%s: params and workspace_bytes must not be NULL", kWsFn);
    Plan pl;
    HOPEI_TRY(make_plan(p, kWsFn, &pl));
    *workspace_bytes = pl.total;
    return HOPE_SUCCESS;
  } catch (const std::bad_alloc &) {
    return hopei_fail(HOPE_ERROR_OUT_OF_MEMORY, "%s: out of host memory", kWsFn);
  } catch (...) {
    return hopei_fail(HOPE_ERROR_INTERNAL, "%s: unexpected exception", kWsFn);
  }
}

extern "C" hope_status_t hopei_attention_unfused_cuda(const hope_attention_params_t *p, void *workspace,
                                                      size_t workspace_bytes, void *stream) {
  using namespace hope::unfused;
  try {
    if (p == nullptr) return hopei_fail(HOPE_ERROR_INVALID_VALUE, "%s: params must not be NULL", kFn);
    Plan pl;
    HOPEI_TRY(make_plan(p, kFn, &pl));
    // Checked before anything is launched: a short workspace writes nothing.
    if (workspace_bytes < pl.total)
      return hopei_fail(HOPE_ERROR_OUT_OF_MEMORY,
                        "%s: the workspace has %zu bytes but this call needs %zu (ask "
                        "hope_attention_unfused_workspace_size)", kFn, workspace_bytes, pl.total);
    if (pl.total > 0 && workspace == nullptr)
      return hopei_fail(HOPE_ERROR_INVALID_VALUE, "%s: workspace is NULL but this call needs %zu bytes", kFn,
                        pl.total);
    char *ws = nullptr;
    if (pl.total > 0) {
      const uintptr_t base = reinterpret_cast<uintptr_t>(workspace);
      ws = reinterpret_cast<char *>((base + kAlign - 1) & ~static_cast<uintptr_t>(kAlign - 1));
    }
    cudaStream_t s = static_cast<cudaStream_t>(stream);
    switch (p->dtype) {
      case HOPE_DTYPE_FLOAT16: return forward<__half>(p, pl, ws, s);
      case HOPE_DTYPE_BFLOAT16: return forward<__nv_bfloat16>(p, pl, ws, s);
      case HOPE_DTYPE_FLOAT32: return forward<float>(p, pl, ws, s);
      default: return hopei_fail(HOPE_ERROR_INVALID_VALUE, "%s: params->dtype %d is not a hope_dtype_t", kFn, p->dtype);
    }
  } catch (const std::bad_alloc &) {
    return hopei_fail(HOPE_ERROR_OUT_OF_MEMORY, "%s: out of host memory", kFn);
  } catch (...) {
    return hopei_fail(HOPE_ERROR_INTERNAL, "%s: unexpected exception", kFn);
  }
}
