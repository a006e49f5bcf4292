// merge.cu — hope_merge_states on the GPU: (o_a, lse_a) and (o_b, lse_b) over disjoint key sets -> the
// softmax state over their union. One warp per (token, head) row, grid-stride over rows; the lanes walk the
// row in chunks of V elements (V = 4 when head_dim and the three o pointers allow 4-element vectors, else 1).
//
// Aliasing: out may alias o_a or o_b (each element is read and then written by the same lane), and lse_out
// may alias lse_a or lse_b (as in FlashInfer's in-place merge and as the CPU backend allows): every lane of
// the row's warp reads lse_a/lse_b before the __syncwarp, and only lane 0 writes lse_out after it. A side with
// lse = -inf contributes nothing (its o is not even read); both -inf gives out = 0 and lse = -inf; a NaN or +inf
// lse on either side gives NaN out and lse (whichever side holds it, as on the CPU backend).
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <exception>

#include "common.cuh"
#include "launch.h"

namespace hope {
namespace serving {

constexpr int kMergeStatesThreads = 256;
constexpr int kMergeWarps = kMergeStatesThreads / 32;

// V consecutive elements of T as one naturally aligned access.
template <typename T, int V>
struct MergeVec;
template <typename T>
struct MergeVec<T, 1> {
  using Raw = T;
};
template <>
struct MergeVec<float, 4> {
  using Raw = float4;
};
template <>
struct MergeVec<__half, 4> {
  using Raw = uint2;
};
template <>
struct MergeVec<__nv_bfloat16, 4> {
  using Raw = uint2;
};

template <typename T, int V>
__device__ __forceinline__ void merge_load(const T *p, float (&f)[V]) {
  using Raw = typename MergeVec<T, V>::Raw;
  const Raw raw = *reinterpret_cast<const Raw *>(p);  // plain load: out may alias this input
  const auto e = bit_cast<ElemArray<T, V>>(raw);
#pragma unroll
  for (int i = 0; i < V; ++i) f[i] = to_float(e.v[i]);
}

template <typename T, int V>
__device__ __forceinline__ void merge_store(T *p, const float (&f)[V]) {
  using Raw = typename MergeVec<T, V>::Raw;
  ElemArray<T, V> e;
#pragma unroll
  for (int i = 0; i < V; ++i) e.v[i] = from_float<T>(f[i]);
  *reinterpret_cast<Raw *>(p) = bit_cast<Raw>(e);
}

template <typename T, int V>
__global__ void __launch_bounds__(kMergeStatesThreads) merge_states_kernel(const hope_merge_params_t p, int64_t rows) {
  const T *oa = static_cast<const T *>(p.o_a);
  const T *ob = static_cast<const T *>(p.o_b);
  T *out = static_cast<T *>(p.out);
  const int lane = threadIdx.x & 31;
  const int chunks = p.head_dim / V;
  const int64_t step = static_cast<int64_t>(gridDim.x) * kMergeWarps;
  // row = token * num_heads + head (uniform across the warp, so the __syncwarp below is safe).
  for (int64_t row = static_cast<int64_t>(blockIdx.x) * kMergeWarps + (threadIdx.x >> 5); row < rows; row += step) {
    const int64_t t = row / p.num_heads;
    const int64_t h = row - t * p.num_heads;
    const int64_t li = h * p.num_tokens + t;
    const float la = p.lse_a[li], lb = p.lse_b[li];
    const float m = fmaxf(la, lb);
    // A NaN or +inf lse on either side gives NaN out and lse (as the CPU backend; fmaxf alone would drop a NaN).
    const bool invalid = !(la < INFINITY) || !(lb < INFINITY);
    const bool any = !invalid && m > -INFINITY;
    float wa = 0.f, wb = 0.f;
    if (any) {
      wa = la == -INFINITY ? 0.f : expf(la - m);
      wb = lb == -INFINITY ? 0.f : expf(lb - m);
    }
    const float sum = wa + wb;
    const int64_t base = row * p.head_dim;
    for (int c = lane; c < chunks; c += 32) {
      const int64_t e = base + static_cast<int64_t>(c) * V;
      float a[V], b[V], y[V];
#pragma unroll
      for (int i = 0; i < V; ++i) a[i] = b[i] = 0.f;
      if (wa > 0.f) merge_load<T, V>(oa + e, a);
      if (wb > 0.f) merge_load<T, V>(ob + e, b);
#pragma unroll
      for (int i = 0; i < V; ++i) {
        float v = 0.f;
        if (wa > 0.f) v = fmaf(wa, a[i], v);
        if (wb > 0.f) v = fmaf(wb, b[i], v);
        y[i] = invalid ? NAN : (any ? v / sum : 0.f);
      }
      merge_store<T, V>(out + e, y);
    }
    __syncwarp();  // every lane has read lse_a[li] / lse_b[li] before lse_out[li] (which may alias them) changes
    if (lane == 0 && p.lse_out != nullptr) p.lse_out[li] = invalid ? NAN : (any ? m + logf(sum) : -INFINITY);
  }
}

inline bool aligned_to(const void *ptr, size_t bytes) { return reinterpret_cast<uintptr_t>(ptr) % bytes == 0; }

template <typename T>
hope_status_t launch(const hope_merge_params_t &p, cudaStream_t stream) {
  const int64_t rows = p.num_tokens * p.num_heads;
  if (rows <= 0) return HOPE_SUCCESS;
  int sm = hopei_device_sm_count();
  if (sm <= 0) sm = 108;
  const int64_t blocks =
      std::max<int64_t>(1, std::min<int64_t>((rows + kMergeWarps - 1) / kMergeWarps, static_cast<int64_t>(sm) * 16));
  const size_t vec_bytes = 4 * sizeof(T);
  const bool vec = p.head_dim % 4 == 0 && aligned_to(p.o_a, vec_bytes) && aligned_to(p.o_b, vec_bytes) &&
                   aligned_to(p.out, vec_bytes);
  if (vec)
    hope::launch_kernel(&merge_states_kernel<T, 4>, static_cast<unsigned>(blocks), kMergeStatesThreads, 0, stream, p,
        rows);
  else
    hope::launch_kernel(&merge_states_kernel<T, 1>, static_cast<unsigned>(blocks), kMergeStatesThreads, 0, stream, p,
        rows);
  return check_launch("hope_merge_states", "the merge kernel launch");
}

}  // namespace serving
}  // namespace hope

extern "C" hope_status_t hopei_merge_states_cuda(const hope_merge_params_t *p, void *stream) {
  try {
    using namespace hope::serving;
    cudaStream_t st = static_cast<cudaStream_t>(stream);
    switch (p->dtype) {
      case HOPE_DTYPE_FLOAT16: return launch<__half>(*p, st);
      case HOPE_DTYPE_BFLOAT16: return launch<__nv_bfloat16>(*p, st);
      case HOPE_DTYPE_FLOAT32: return launch<float>(*p, st);
      default: return hopei_fail(HOPE_ERROR_INVALID_VALUE, "hope_merge_states: unknown dtype %d", p->dtype);
    }
  } catch (const std::exception &e) {
    return hopei_fail(HOPE_ERROR_INTERNAL, "hope_merge_states: %s", e.what());
  } catch (...) {
    return hopei_fail(HOPE_ERROR_INTERNAL, "hope_merge_states: unknown exception");
  }
}
