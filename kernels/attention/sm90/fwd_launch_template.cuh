// fwd_launch_template.cuh — the launcher of the sm90-family fused forward kernel for one (head_dim, dtype):
// builds the Q, K and V tensor maps on the host (no device access, so the call stays graph-capturable), opts in
// to the kernel's shared memory once per device and launches. Each
// kernels/instances/attn_fwd_hd<D>_<dtype>_sm90.cu explicitly instantiates run_attn_fwd_sm90 once; those files
// are compiled for sm_90a only (CMakeLists.txt). The planner (fused_launch.cu) decides that this family runs.
#pragma once

#include <atomic>
#include <cstdint>
#include <type_traits>

#include <cuda_runtime.h>

#include "../../../csrc/internal.h"
#include "attention/fwd_params.h"
#include "attention/ptx_sm90.cuh"
#include "attention/sm90/fwd_kernel.cuh"
#include "attention/sm90/fwd_traits.cuh"
#include "common/launch.cuh"
#include "common/smem_optin.cuh"

namespace hope {
namespace sm90 {

// The tensor map of one operand: rows are tokens (`max_rows` = batch * max_seqlen bounds every row a tile
// reads), `heads` * head_dim / 64 column blocks per row, boxes of `box_rows` rows.
inline hope_status_t operand_tensor_map(TmaDescriptor *desc, const void *base, bool bfloat16, int64_t max_rows,
                                        int32_t heads, int head_dim, int64_t row_stride_elems, int box_rows,
                                        const char *name) {
  const uint64_t rows = static_cast<uint64_t>(max_rows < 1 ? 1 : max_rows);  // a map needs one row at least
  const CUresult r = make_tensor_map_rows_sw128(desc, base, bfloat16, rows,
                                                static_cast<uint64_t>(heads) * static_cast<uint64_t>(head_dim / 64),
                                                static_cast<uint64_t>(row_stride_elems) * 2u,
                                                static_cast<uint32_t>(box_rows));
  if (r == CUDA_SUCCESS) return HOPE_SUCCESS;
  return hopei_fail(HOPE_ERROR_CUDA, "hope_attention_forward: building the TMA tensor map of %s failed (CUresult %d%s)",
                    name, static_cast<int>(r),
                    r == CUDA_ERROR_NOT_SUPPORTED ? ": the driver offers no cuTensorMapEncodeTiled" : "");
}

template <typename Traits>
hope_status_t launch_attn_fwd_sm90(const AttnFwdParams &params, cudaStream_t stream) {
  using T = typename Traits::Element;
  constexpr int kSmem = Traits::kSmemBytes;
  constexpr bool kBf16 = std::is_same<T, __nv_bfloat16>::value;
  auto kernel = &attn_fwd_sm90_kernel<Traits>;
  static const char *fn = "hope_attention_forward";

  FwdParamsSm90 kp{};
  kp.p = params;
  const int64_t q_rows = static_cast<int64_t>(params.batch) * params.max_seqlen_q;
  const int64_t k_rows = static_cast<int64_t>(params.batch) * params.max_seqlen_k;
  HOPEI_TRY(operand_tensor_map(&kp.tma_q, params.q, kBf16, q_rows, params.num_q_heads, Traits::kHeadDim,
                               params.q_row_stride, Traits::kBlockM, "q"));
  HOPEI_TRY(operand_tensor_map(&kp.tma_k, params.k, kBf16, k_rows, params.num_kv_heads, Traits::kHeadDim,
                               params.k_row_stride, Traits::kBlockN, "k"));
  HOPEI_TRY(operand_tensor_map(&kp.tma_v, params.v, kBf16, k_rows, params.num_kv_heads, Traits::kHeadDim,
                               params.v_row_stride, Traits::kBlockN, "v"));

  static std::atomic<uint64_t> smem_configured{0};
  HOPEI_TRY(opt_in_dynamic_smem(smem_configured, kernel, kSmem, fn));
  return for_each_batch_chunk(params, [&](const AttnFwdParams &chunk, dim3 grid) {
    kp.p = chunk;
    hope::launch_kernel(kernel, grid, Traits::kThreads, kSmem, stream, kp);
    const cudaError_t e = cudaGetLastError();
    return e == cudaSuccess ? HOPE_SUCCESS : hopei_cuda_fail(e, fn, "launching the sm90 fused attention kernel");
  });
}

}  // namespace sm90

// The instance entry point (one tile shape per head_dim: params.block_m is FwdTraits::kBlockM).
template <int HEAD_DIM, typename T>
hope_status_t run_attn_fwd_sm90(const AttnFwdParams &params, cudaStream_t stream) {
  using Traits = sm90::FwdTraits<HEAD_DIM, T>;
  if (params.block_m != Traits::kBlockM)
    return hopei_fail(HOPE_ERROR_INTERNAL, "hope_attention_forward: the sm90 kernel has no %d-row tile variant",
                      params.block_m);
  return sm90::launch_attn_fwd_sm90<Traits>(params, stream);
}

}  // namespace hope
