// cache_fill.cu — fills rows of a device cos/sin cache (hope_rope_cache_fill on a device cache).
// One thread per (token, pair), pairs fastest so the stores of a warp are contiguous. The angle is the
// double product (double)pos * inv_i and sin/cos are evaluated in double (full range reduction), then
// rounded once to float: the same arithmetic as the host tables (csrc/rope.c), so the two agree to about one
// float ulp for every position up to 2^20 and beyond. Never __sincosf or float sinf: at position 131071 the
// fast intrinsic is off by ~2e-2.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "../../csrc/internal.h"
#include "common/launch.cuh"
#include "launch.h"

namespace hope {

__global__ void rope_cache_fill_kernel(hopei_cache_fill_args_t a) {
  const int64_t total = a.n * a.half;
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; idx < total; idx += step) {
    const int64_t tok = idx / a.half;
    const int32_t i = static_cast<int32_t>(idx - tok * a.half);
    const int32_t comp = __ldg(a.components + i);
    float c = 1.0f, s = 0.0f;
    if (comp >= 0) {
      const double pos = static_cast<double>(__ldg(a.positions + comp * a.positions_ld + tok));
      const double angle = __dmul_rn(pos, __ldg(a.inv_freq + i));  // no contraction: bit-equal to the host
      double sd, cd;
      sincos(angle, &sd, &cd);
      c = static_cast<float>(cd);
      s = static_cast<float>(sd);
    }
    const int64_t out = (a.offset + tok) * a.half + i;
    a.cos[out] = c;
    a.sin[out] = s;
  }
}

}  // namespace hope

extern "C" hope_status_t hopei_rope_cache_fill_cuda(const hopei_cache_fill_args_t *args, void *stream) {
  static const char kFn[] = "hope_rope_cache_fill";
  try {
    if (args == nullptr) return hopei_fail(HOPE_ERROR_INTERNAL, "%s: NULL launch arguments", kFn);
    if (args->n <= 0 || args->half <= 0) return HOPE_SUCCESS;
    const int64_t total = args->n * args->half;
    constexpr int kThreads = 256;
    int64_t blocks = (total + kThreads - 1) / kThreads;
    const int sms = hopei_device_sm_count();
    const int64_t cap = sms > 0 ? static_cast<int64_t>(sms) * 32 : 4096;  // grid-stride beyond this
    blocks = std::max<int64_t>(1, std::min(blocks, cap));
    hope::launch_kernel(&hope::rope_cache_fill_kernel, static_cast<unsigned>(blocks), kThreads, 0,
        static_cast<cudaStream_t>(stream), *args);
    cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess) return hopei_cuda_fail(e, kFn, "launching rope_cache_fill_kernel");
    return HOPE_SUCCESS;
  } catch (...) {
    return hopei_fail(HOPE_ERROR_INTERNAL, "%s: unexpected C++ exception", kFn);
  }
}
