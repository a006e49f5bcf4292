// k_prepass.cu — the K pre-pass of the fused attention: rotates K once (or copies it when no cos/sin is
// given) into the caller's packed k_rotated buffer [total_k][num_kv_heads][head_dim], so the attention
// kernel then reads rotated keys and rotates nothing. Memory-bound: one read and one write of K.
//
// hopei_rope_apply_cuda cannot serve here: it needs the token count on the host, and total_k lives in
// device memory (cu_seqlens_k[batch]; reading it back would synchronise). This kernel reads it on the
// device and sizes its grid from the host-side bound batch * max_seqlen_k. The rotation arithmetic is the
// one the attention kernel applies in shared memory (rope_chunk in rope_tile.cuh), so both K paths give
// bit-identical keys.
#include <algorithm>

#include "../../csrc/internal.h"
#include "attention/fwd_params.h"
#include "attention/rope_tile.cuh"
#include "common/launch.cuh"

namespace hope {

namespace {

constexpr int kPrepassThreads = 256;

// Work items of one (token, kv head) row: with cos/sin, first the rotary items (rope_items_per_row of them: a
// rotate-half item is chunk c with its partner chunk c + rot_half/8, an interleaved item one chunk of 4 pairs),
// rotated with the arithmetic the attention kernel applies in shared memory so both K paths give bit-identical
// keys; then one item per 16-byte chunk past the rotary dims (every chunk without cos/sin), copied.
template <typename T>
__global__ void __launch_bounds__(kPrepassThreads) k_prepass_kernel(const KPrepassParams p) {
  const int64_t total_k = p.cu_seqlens_k[p.batch];
  const bool interleaved = p.interleaved != 0;
  const int chunks = p.head_dim / 8;
  // Chunks a rotary item writes: 2 per item (rotate-half, the pair of halves) or 1 (interleaved).
  const int rot_items = p.cos_k != nullptr ? rope_items_per_row(p.rot_half, interleaved) : 0;
  const int rot_chunks = p.cos_k != nullptr ? p.rot_half / 4 : 0;  // rotary_dim / 8 chunks in all
  const int per_row = rot_items + (chunks - rot_chunks);
  const int64_t per_token = static_cast<int64_t>(p.num_kv_heads) * per_row;
  const int64_t items = total_k * per_token;
  const bool aligned = p.cos_k == nullptr ||
                       ((reinterpret_cast<uintptr_t>(p.cos_k) | reinterpret_cast<uintptr_t>(p.sin_k)) & 15u) == 0;
  const int64_t out_stride = static_cast<int64_t>(p.num_kv_heads) * p.head_dim;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < items;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t tok = i / per_token;
    const int rem = static_cast<int>(i - tok * per_token);
    const int h = rem / per_row, c = rem % per_row;
    const T *src = static_cast<const T *>(p.k) + tok * p.k_row_stride + h * p.head_dim;
    T *dst = static_cast<T *>(p.k_rotated) + tok * out_stride + h * p.head_dim;
    if (c >= rot_items) {  // a chunk past the rotary dims (or every chunk without cos/sin): copied
      const int ch = rot_chunks + (c - rot_items);
      *reinterpret_cast<uint4 *>(dst + ch * 8) = __ldg(reinterpret_cast<const uint4 *>(src + ch * 8));
      continue;
    }
    // The arithmetic of rope_row_chunk (what rotate_tile applies in shared memory), in registers.
    const int64_t off = tok * p.rot_half;
    if (interleaved) {
      uint4 v = __ldg(reinterpret_cast<const uint4 *>(src + c * 8));
      float cs[4], sn[4];
      load_f4(cs, p.cos_k + off + c * 4, aligned);
      load_f4(sn, p.sin_k + off + c * 4, aligned);
      rope_chunk_interleaved<T>(v, cs, sn);
      *reinterpret_cast<uint4 *>(dst + c * 8) = v;
    } else {
      const int hc = c + p.rot_half / 8;
      uint4 lo = __ldg(reinterpret_cast<const uint4 *>(src + c * 8));
      uint4 hi = __ldg(reinterpret_cast<const uint4 *>(src + hc * 8));
      float cs[8], sn[8];
      load_f8(cs, p.cos_k + off + c * 8, aligned);
      load_f8(sn, p.sin_k + off + c * 8, aligned);
      rope_chunk<T>(lo, hi, cs, sn);
      *reinterpret_cast<uint4 *>(dst + c * 8) = lo;
      *reinterpret_cast<uint4 *>(dst + hc * 8) = hi;
    }
  }
}

}  // namespace

hope_status_t run_k_prepass(const KPrepassParams &params, int32_t dtype, cudaStream_t stream) {
  static const char *fn = "hope_attention_forward";
  const int64_t items = params.max_tokens * params.num_kv_heads * (params.head_dim / 8);  // bounds the work items
  if (items <= 0) return HOPE_SUCCESS;
  const int64_t want = (items + kPrepassThreads - 1) / kPrepassThreads;
  const int blocks = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(want, params.grid_limit)));
  if (dtype == HOPE_DTYPE_FLOAT16)
    hope::launch_kernel(&k_prepass_kernel<__half>, blocks, kPrepassThreads, 0, stream, params);
  else if (dtype == HOPE_DTYPE_BFLOAT16)
    hope::launch_kernel(&k_prepass_kernel<__nv_bfloat16>, blocks, kPrepassThreads, 0, stream, params);
  else
    return hopei_fail(HOPE_ERROR_INTERNAL, "%s: K pre-pass reached with dtype %d", fn, dtype);
  const cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) return hopei_cuda_fail(e, fn, "launching the K rotation pre-pass");
  return HOPE_SUCCESS;
}

}  // namespace hope
