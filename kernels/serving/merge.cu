// merge.cu — hope_merge_states on the GPU: (o_a, lse_a) and (o_b, lse_b) over disjoint key sets -> the
// softmax state over their union. One thread per output element, grid-stride; each thread reads its element
// of o_a and o_b before writing out, so out may alias either input. A side with lse = -inf contributes
// nothing (its o is not even read); both -inf gives out = 0 and lse = -inf.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <exception>

#include "common.cuh"
#include "launch.h"

namespace hope {
namespace serving {

constexpr int kMergeStatesThreads = 256;

template <typename T>
__global__ void __launch_bounds__(kMergeStatesThreads) merge_states_kernel(const hope_merge_params_t p, int64_t total) {
  const T *oa = static_cast<const T *>(p.o_a);
  const T *ob = static_cast<const T *>(p.o_b);
  T *out = static_cast<T *>(p.out);
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * kMergeStatesThreads + threadIdx.x; e < total;
       e += static_cast<int64_t>(gridDim.x) * kMergeStatesThreads) {
    const int64_t item = e / p.head_dim;  // token * heads + head
    const int64_t t = item / p.num_heads;
    const int64_t h = item % p.num_heads;
    const int64_t li = h * p.num_tokens + t;
    const float la = p.lse_a[li], lb = p.lse_b[li];
    const float m = fmaxf(la, lb);
    if (!(m > -INFINITY)) {
      out[e] = from_f<T>(0.f);
      if (p.lse_out != nullptr && e % p.head_dim == 0) p.lse_out[li] = -INFINITY;
      continue;
    }
    const float wa = la == -INFINITY ? 0.f : expf(la - m);
    const float wb = lb == -INFINITY ? 0.f : expf(lb - m);
    const float sum = wa + wb;
    float v = 0.f;
    if (wa > 0.f) v = fmaf(wa, to_f(oa[e]), v);
    if (wb > 0.f) v = fmaf(wb, to_f(ob[e]), v);
    out[e] = from_f<T>(v / sum);
    if (p.lse_out != nullptr && e % p.head_dim == 0) p.lse_out[li] = m + logf(sum);
  }
}

template <typename T>
hope_status_t launch(const hope_merge_params_t &p, cudaStream_t stream) {
  const int64_t total = p.num_tokens * p.num_heads * p.head_dim;
  int sm = hopei_device_sm_count();
  if (sm <= 0) sm = 108;
  const int64_t blocks = std::max<int64_t>(
      1, std::min<int64_t>((total + kMergeStatesThreads - 1) / kMergeStatesThreads, static_cast<int64_t>(sm) * 16));
  merge_states_kernel<T><<<static_cast<unsigned>(blocks), kMergeStatesThreads, 0, stream>>>(p, total);
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
