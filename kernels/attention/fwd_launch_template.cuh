// fwd_launch_template.cuh — the launcher of the sm80-family fused forward kernel for one (head_dim, dtype).
// Each kernels/instances/attn_fwd_hd<D>_<dtype>_sm80.cu explicitly instantiates run_attn_fwd_sm80 once, so
// the six kernels compile in parallel and a change to one recompiles one. Host-side choices (which instance,
// the pre-pass, support) are made by the planner in fused_launch.cu; this only launches.
#pragma once

#include <atomic>
#include <cstdint>

#include <cuda_runtime.h>

#include "../../csrc/internal.h"
#include "attention/fwd_kernel.cuh"
#include "attention/fwd_params.h"
#include "attention/fwd_traits.cuh"

namespace hope {

// Launches one variant (one AttnTraits) of the kernel.
template <typename Traits>
hope_status_t launch_attn_fwd_sm80(const AttnFwdParams &params, cudaStream_t stream) {
  constexpr int kSmem = Traits::kSmemBytes;
  auto kernel = &attn_fwd_sm80_kernel<Traits>;
  static const char *fn = "hope_attention_forward";

  // Dynamic shared memory above 48 KB needs a per-device opt-in. Done once per (kernel, device): the bit
  // is set only after the attribute call succeeded (two threads racing both set it, which is harmless).
  if (kSmem > 48 * 1024) {
    static std::atomic<uint64_t> configured{0};
    int device = 0;
    cudaError_t e = cudaGetDevice(&device);
    if (e != cudaSuccess) {
      (void)cudaGetLastError();  // leave no stale error for the next caller's cudaGetLastError()
      return hopei_cuda_fail(e, fn, "cudaGetDevice");
    }
    const uint64_t bit = device >= 0 && device < 64 ? (uint64_t{1} << device) : 0;
    if (bit == 0 || (configured.load(std::memory_order_acquire) & bit) == 0) {
      e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmem);
      if (e != cudaSuccess) {
        (void)cudaGetLastError();
        return hopei_cuda_fail(e, fn, "cudaFuncSetAttribute(max dynamic shared memory)");
      }
      configured.fetch_or(bit, std::memory_order_release);
    }
  }
  // gridDim.z is limited to 65535: a larger batch takes several launches, each told its first sequence.
  constexpr int64_t kMaxGridZ = 65535;
  for (int64_t b0 = 0; b0 < params.batch; b0 += kMaxGridZ) {
    AttnFwdParams chunk = params;
    chunk.batch_offset = static_cast<int32_t>(b0);
    const int64_t nb = params.batch - b0 < kMaxGridZ ? params.batch - b0 : kMaxGridZ;
    const dim3 grid(static_cast<unsigned>(params.num_m_blocks), static_cast<unsigned>(params.num_q_heads),
                    static_cast<unsigned>(nb));
    hope::launch_kernel(kernel, grid, Traits::kNThreads, kSmem, stream, chunk);
    const cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess) return hopei_cuda_fail(e, fn, "launching the fused attention kernel");
  }
  return HOPE_SUCCESS;
}

// The instance entry point: the default tile, or the narrow 64-row tile when the planner chose it
// (params.block_m). Both variants live in the one instance file of (HEAD_DIM, T, sm80).
template <int HEAD_DIM, typename T>
hope_status_t run_attn_fwd_sm80(const AttnFwdParams &params, cudaStream_t stream) {
  using Wide = AttnTraits<HEAD_DIM, T>;
  using Narrow = AttnTraits<HEAD_DIM, T, kNarrowBlockM>;
  if (params.block_m == Wide::kBlockM) return launch_attn_fwd_sm80<Wide>(params, stream);
  if (Narrow::kBlockM != Wide::kBlockM && params.block_m == Narrow::kBlockM)
    return launch_attn_fwd_sm80<Narrow>(params, stream);
  return hopei_fail(HOPE_ERROR_INTERNAL, "hope_attention_forward: no fused kernel variant with a %d-row tile",
                    params.block_m);
}

}  // namespace hope
