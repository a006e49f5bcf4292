// decode_launch.cu — the extern "C" entry of the paged decode on the GPU: fills DecodeArgs from the
// validated params and the plan, picks the (head_dim, dtype) instance, and with several splits launches the
// kernel that merges the split partials (log2-domain lse) into out and lse.
#include <cuda_runtime.h>

#include <cstdint>
#include <exception>

#include "decode.cuh"

namespace hope {
namespace serving {

extern template hope_status_t launch_decode<64, __half>(const DecodeArgs &, int32_t, cudaStream_t);
extern template hope_status_t launch_decode<128, __half>(const DecodeArgs &, int32_t, cudaStream_t);
extern template hope_status_t launch_decode<256, __half>(const DecodeArgs &, int32_t, cudaStream_t);
extern template hope_status_t launch_decode<64, __nv_bfloat16>(const DecodeArgs &, int32_t, cudaStream_t);
extern template hope_status_t launch_decode<128, __nv_bfloat16>(const DecodeArgs &, int32_t, cudaStream_t);
extern template hope_status_t launch_decode<256, __nv_bfloat16>(const DecodeArgs &, int32_t, cudaStream_t);

constexpr int kMergeThreads = 128;

// One group of head_dim/4 threads per (row = b * max_q + qi, query head); each thread owns 4 dims.
template <typename T>
__global__ void __launch_bounds__(kMergeThreads) merge_splits_kernel(const DecodeArgs a, int head_dim) {
  const int tp = head_dim / 4;
  const int64_t item = static_cast<int64_t>(blockIdx.x) * (kMergeThreads / tp) + threadIdx.x / tp;
  const int c = threadIdx.x % tp;
  const int64_t rows_total = static_cast<int64_t>(a.batch) * a.max_q;
  if (item >= rows_total * a.hq) return;
  const int j = static_cast<int>(item % a.hq);
  const int64_t row = item / a.hq;
  const int b = static_cast<int>(row / a.max_q), qi = static_cast<int>(row % a.max_q);
  const int q0 = a.cu_q[b];
  const int nq = min(a.cu_q[b + 1] - q0, a.max_q);
  if (qi >= nq) return;
  const int64_t token = static_cast<int64_t>(q0) + qi;
  const int64_t total_q = a.cu_q[a.batch];
  const int64_t split_stride = rows_total * a.hq;

  float mx = -INFINITY;
  for (int s = 0; s < a.num_splits; ++s) mx = fmaxf(mx, a.partial_lse[s * split_stride + item]);
  float4 acc = make_float4(0.f, 0.f, 0.f, 0.f);
  float wsum = 0.f;
  if (mx > -INFINITY) {
    for (int s = 0; s < a.num_splits; ++s) {
      const float v = a.partial_lse[s * split_stride + item];
      if (v == -INFINITY) continue;
      const float w = exp2f(v - mx);
      wsum += w;
      const float4 o = *reinterpret_cast<const float4 *>(a.partial_o + (s * split_stride + item) * head_dim + 4 * c);
      acc.x = fmaf(w, o.x, acc.x);
      acc.y = fmaf(w, o.y, acc.y);
      acc.z = fmaf(w, o.z, acc.z);
      acc.w = fmaf(w, o.w, acc.w);
    }
  }
  const float inv = wsum > 0.f ? 1.f / wsum : 0.f;
  T *out = static_cast<T *>(a.out) + (token * a.hq + j) * head_dim + 4 * c;
  out[0] = from_float<T>(acc.x * inv);
  out[1] = from_float<T>(acc.y * inv);
  out[2] = from_float<T>(acc.z * inv);
  out[3] = from_float<T>(acc.w * inv);
  if (c == 0 && a.lse != nullptr)
    a.lse[static_cast<int64_t>(j) * total_q + token] =
        wsum > 0.f ? (mx + log2f(wsum)) * 0.69314718055994530942f : -INFINITY;
}

template <typename T>
hope_status_t launch_merge_splits(const DecodeArgs &a, int head_dim, cudaStream_t stream) {
  const int64_t items = static_cast<int64_t>(a.batch) * a.max_q * a.hq;
  const int per_block = kMergeThreads / (head_dim / 4);
  const int64_t blocks = (items + per_block - 1) / per_block;
  if (blocks > INT32_MAX)
    return hopei_fail(HOPE_ERROR_NOT_SUPPORTED, "hope_decode_forward: too many query rows for the split merge");
  hope::launch_kernel(&merge_splits_kernel<T>, static_cast<unsigned>(blocks), kMergeThreads, 0, stream, a, head_dim);
  return check_launch("hope_decode_forward", "the split-merge kernel launch");
}

template <typename T>
hope_status_t run(const DecodeArgs &a, int head_dim, int32_t row_blocks, cudaStream_t stream) {
  hope_status_t s;
  switch (head_dim) {
    case 64: s = launch_decode<64, T>(a, row_blocks, stream); break;
    case 128: s = launch_decode<128, T>(a, row_blocks, stream); break;
    case 256: s = launch_decode<256, T>(a, row_blocks, stream); break;
    default:
      return hopei_fail(HOPE_ERROR_NOT_SUPPORTED, "hope_decode_forward: no CUDA decode kernel for head_dim %d",
                        head_dim);
  }
  if (s != HOPE_SUCCESS || a.num_splits == 1) return s;
  return launch_merge_splits<T>(a, head_dim, stream);
}

}  // namespace serving
}  // namespace hope

extern "C" int hopei_decode_cuda_supported(int32_t dtype, int32_t head_dim) {
  return (dtype == HOPE_DTYPE_FLOAT16 || dtype == HOPE_DTYPE_BFLOAT16) &&
         (head_dim == 64 || head_dim == 128 || head_dim == 256);
}

extern "C" hope_status_t hopei_decode_cuda(const hope_decode_params_t *p, const hopei_decode_plan_t *plan,
                                           void *stream) {
  try {
    using namespace hope::serving;
    if (plan->row_blocks > 65535)
      return hopei_fail(HOPE_ERROR_NOT_SUPPORTED,
                        "hope_decode_forward: max_seqlen_q * num_q_heads / num_kv_heads = %lld query rows per kv "
                        "head exceed the CUDA grid", (long long)plan->row_blocks * HOPEI_DECODE_ROWS_PER_CTA);
    DecodeArgs a;
    a.k_pages = p->cache.k_pages;
    a.v_pages = p->cache.v_pages;
    a.q = p->q;
    a.out = p->out;
    a.lse = p->lse;
    a.cos_q = p->cos_q;
    a.sin_q = p->sin_q;
    a.cu_q = p->cu_seqlens_q;
    a.seq_lens = p->seq_lens;
    a.page_table = p->page_table;
    a.partial_o = plan->partial_o;
    a.partial_lse = plan->partial_lse;
    a.q_row_stride = plan->q_row_stride;
    a.batch = p->batch;
    a.hq = p->num_q_heads;
    a.hk = p->cache.num_kv_heads;
    a.group = p->num_q_heads / p->cache.num_kv_heads;
    a.page_size = p->cache.page_size;
    a.max_pages = p->max_pages_per_seq;
    a.max_q = p->max_seqlen_q;
    a.num_splits = plan->num_splits;
    a.causal = p->causal != 0;
    a.scale_log2 = plan->softmax_scale * 1.44269504088896340736f;
    a.rl = hope::make_rotary_layout(p->cache.head_dim, p->rope_pairing, p->rotary_dim);
    if (a.num_splits > 1 && (a.partial_o == nullptr || a.partial_lse == nullptr))
      return hopei_fail(HOPE_ERROR_INTERNAL, "hope_decode_forward: split plan without a workspace");
    // page_size * max_pages_per_seq bounds every key index the kernel forms in int32
    if (static_cast<int64_t>(a.page_size) * a.max_pages > INT32_MAX)
      return hopei_fail(HOPE_ERROR_NOT_SUPPORTED,
                        "hope_decode_forward: max_pages_per_seq * page_size exceeds 2^31 - 1 keys");
    cudaStream_t st = static_cast<cudaStream_t>(stream);
    if (p->cache.dtype == HOPE_DTYPE_FLOAT16) return run<__half>(a, p->cache.head_dim, plan->row_blocks, st);
    if (p->cache.dtype == HOPE_DTYPE_BFLOAT16) return run<__nv_bfloat16>(a, p->cache.head_dim, plan->row_blocks, st);
    return hopei_fail(HOPE_ERROR_NOT_SUPPORTED, "hope_decode_forward: the CUDA backend takes float16 or bfloat16");
  } catch (const std::exception &e) {
    return hopei_fail(HOPE_ERROR_INTERNAL, "hope_decode_forward: %s", e.what());
  } catch (...) {
    return hopei_fail(HOPE_ERROR_INTERNAL, "hope_decode_forward: unknown exception");
  }
}
