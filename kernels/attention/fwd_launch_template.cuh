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
#include "common/smem_optin.cuh"

namespace hope {

// Launches one variant (one AttnTraits) of the kernel.
template <typename Traits>
hope_status_t launch_attn_fwd_sm80(const AttnFwdParams &params, cudaStream_t stream) {
  constexpr int kSmem = Traits::kSmemBytes;
  auto kernel = &attn_fwd_sm80_kernel<Traits>;
  static const char *fn = "hope_attention_forward";

  static std::atomic<uint64_t> smem_configured{0};
  HOPEI_TRY(opt_in_dynamic_smem(smem_configured, kernel, kSmem, fn));
  return for_each_batch_chunk(params, [&](const AttnFwdParams &chunk, dim3 grid) {
    hope::launch_kernel(kernel, grid, Traits::kNThreads, kSmem, stream, chunk);
    const cudaError_t e = cudaGetLastError();
    return e == cudaSuccess ? HOPE_SUCCESS : hopei_cuda_fail(e, fn, "launching the fused attention kernel");
  });
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
