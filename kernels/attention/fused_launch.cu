// fused_launch.cu — host side of the fused attention: one planning function that decides whether a call is
// supported and how it runs (instance, grid, K-rotation strategy), and the dispatch that turns the run-time
// dtype and head_dim into the template constants of the generated instances (kernels/instances/).
//
// K rotation, two strategies (issue: "measure later"); both give bit-identical rotated keys because they
// share rope_chunk (rope_tile.cuh):
//  - pre-pass (params->k_rotated != NULL): a memory-bound kernel (k_prepass.cu) rotates K once into the
//    caller's k_rotated buffer — which the caller wants anyway, e.g. to store in a KV cache — and the
//    attention kernel reads keys from there and rotates nothing. Costs one extra read + write of K.
//  - in-kernel (k_rotated == NULL, cos_k != NULL): each CTA rotates every K tile in shared memory right
//    after it lands. No extra memory traffic, but the rotation is repeated by each of the
//    ceil(Nq / kBlockM) query tiles (and each q head of a GQA group) that reads the tile.
// The call may not allocate, so without k_rotated there is no buffer for a pre-pass. The benchmark
// (benchmarks/prefill_bench.py) compares the two.
//
// Architecture families: compute capability 9.x runs the sm90 family (warp-specialised wgmma + TMA,
// kernels/attention/sm90/) when the build has it (HOPE_WITH_SM90), everything else from 8.0 on the sm80 family
// (mma.sync, fwd_kernel.cuh). HOPE_ATTN_KERNEL_FAMILY=sm80 or sm90 forces one (benchmarks and tests compare
// the two on one GPU); sm90 where it cannot run is NOT_SUPPORTED with the reason.
//
// Nothing here allocates, synchronises or reads device memory back: the call can be captured in a graph.
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include <cuda_runtime.h>

#include "../../csrc/internal.h"
#include "attention/fwd_params.h"
#include "attention/fwd_traits.cuh"
#include "attention/sm90/fwd_traits.cuh"
#include "launch.h"

#ifndef HOPE_WITH_SM90
#define HOPE_WITH_SM90 0  // CMakeLists.txt defines it to 1 when the sm90 instances are built (sm_90a)
#endif

namespace hope {
namespace {

constexpr const char *kFn = "hope_attention_forward";

// Turn a run-time dtype / head_dim into a type / constant for the lambda body (FlashAttention-2 style).
// The planner has rejected every other value before these run.
#define HOPE_DTYPE_SWITCH(DTYPE, TYPE, ...)         \
  [&]() -> hope_status_t {                          \
    if ((DTYPE) == HOPE_DTYPE_FLOAT16) {            \
      using TYPE = __half;                          \
      return __VA_ARGS__();                         \
    } else {                                        \
      using TYPE = __nv_bfloat16;                   \
      return __VA_ARGS__();                         \
    }                                               \
  }()
#define HOPE_HEADDIM_SWITCH(HD, CONST, ...)         \
  [&]() -> hope_status_t {                          \
    if ((HD) == 64) {                               \
      constexpr int CONST = 64;                     \
      return __VA_ARGS__();                         \
    } else if ((HD) == 128) {                       \
      constexpr int CONST = 128;                    \
      return __VA_ARGS__();                         \
    } else {                                        \
      constexpr int CONST = 256;                    \
      return __VA_ARGS__();                         \
    }                                               \
  }()

// Per-device attributes, queried once (no synchronisation; safe during stream capture).
struct DeviceInfo {
  int cc_major = 0, cc_minor = 0, smem_optin = 0, sm_count = 0;
};
hope_status_t device_info(DeviceInfo *info) {
  constexpr int kMaxDevices = 64;
  static std::atomic<int> cached_major[kMaxDevices], cached_minor[kMaxDevices], cached_smem[kMaxDevices];
  int dev = 0;
  cudaError_t e = cudaGetDevice(&dev);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();  // leave no stale error for the next caller's cudaGetLastError()
    return hopei_cuda_fail(e, kFn, "cudaGetDevice");
  }
  const bool cacheable = dev >= 0 && dev < kMaxDevices;
  // cached_smem is the "valid" flag: stored last with release, loaded first with acquire, so a reader that
  // sees it also sees the other two.
  if (cacheable && cached_smem[dev].load(std::memory_order_acquire) > 0) {
    info->cc_major = cached_major[dev].load(std::memory_order_relaxed);
    info->cc_minor = cached_minor[dev].load(std::memory_order_relaxed);
    info->smem_optin = cached_smem[dev].load(std::memory_order_relaxed);
  } else {
    e = cudaDeviceGetAttribute(&info->cc_major, cudaDevAttrComputeCapabilityMajor, dev);
    if (e == cudaSuccess) e = cudaDeviceGetAttribute(&info->cc_minor, cudaDevAttrComputeCapabilityMinor, dev);
    if (e == cudaSuccess) e = cudaDeviceGetAttribute(&info->smem_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev);
    if (e != cudaSuccess) {
      (void)cudaGetLastError();
      return hopei_cuda_fail(e, kFn, "cudaDeviceGetAttribute");
    }
    if (cacheable) {
      cached_major[dev].store(info->cc_major, std::memory_order_relaxed);
      cached_minor[dev].store(info->cc_minor, std::memory_order_relaxed);
      cached_smem[dev].store(info->smem_optin, std::memory_order_release);  // written last: the "valid" flag
    }
  }
  info->sm_count = hopei_device_sm_count();
  return HOPE_SUCCESS;
}

bool aligned16(const void *ptr) { return (reinterpret_cast<uintptr_t>(ptr) & 15u) == 0; }

// What the planner decided for one call.
struct FusedPlan {
  int family = 80;               // architecture family: 80 (mma.sync, runs on sm_80+) or 90 (wgmma, sm_90a)
  int block_m = 0, threads = 0, smem_bytes = 0;
  int num_m_blocks = 0;          // grid.x
  bool k_prepass = false;        // rotate/copy K into k_rotated first, the kernel reads it from there
  bool rotate_k_in_kernel = false;
  int prepass_grid = 0;          // CTAs of the pre-pass (a grid-stride loop covers the rest)
};

// The variants an instance offers: the default tile and the narrow 64-row tile.
struct VariantInfo {
  int block_m, threads, smem_bytes;
};
template <int HD, typename T>
void variants(VariantInfo *wide, VariantInfo *narrow) {
  using Wide = AttnTraits<HD, T>;
  using Narrow = AttnTraits<HD, T, kNarrowBlockM>;
  *wide = {Wide::kBlockM, Wide::kNThreads, Wide::kSmemBytes};
  *narrow = {Narrow::kBlockM, Narrow::kNThreads, Narrow::kSmemBytes};
}
// The sm90 family has one tile per instance.
template <int HD, typename T>
VariantInfo variant_sm90() {
  using Traits = sm90::FwdTraits<HD, T>;
  return {Traits::kBlockM, Traits::kThreads, Traits::kSmemBytes};
}

// HOPE_ATTN_KERNEL_FAMILY: unset, empty or "auto" -> 0 (the planner chooses), "sm80"/"80" -> 80,
// "sm90"/"90" -> 90. Read on every call (a getenv), so a process may switch between calls.
hope_status_t requested_family(int *family) {
  const char *env = std::getenv("HOPE_ATTN_KERNEL_FAMILY");
  *family = 0;
  if (env == nullptr || env[0] == '\0' || std::strcmp(env, "auto") == 0) return HOPE_SUCCESS;
  if (std::strcmp(env, "sm80") == 0 || std::strcmp(env, "80") == 0) *family = 80;
  else if (std::strcmp(env, "sm90") == 0 || std::strcmp(env, "90") == 0) *family = 90;
  else
    return hopei_fail(HOPE_ERROR_INVALID_VALUE,
                      "%s: HOPE_ATTN_KERNEL_FAMILY is \"%.32s\"; use auto, sm80 or sm90", kFn, env);
  return HOPE_SUCCESS;
}

// THE planning function: every "is it supported" answer and every run goes through it, so they agree.
hope_status_t plan_fused(const hope_attention_params_t *p, FusedPlan *plan) {
  if (p->dtype == HOPE_DTYPE_FLOAT32)
    return hopei_fail(HOPE_ERROR_NOT_SUPPORTED,
                      "%s: the fused CUDA kernel takes float16 or bfloat16 (tensor cores); for float32 use the CPU "
                      "backend or hope_attention_forward_unfused", kFn);
  if (p->dtype != HOPE_DTYPE_FLOAT16 && p->dtype != HOPE_DTYPE_BFLOAT16)
    return hopei_fail(HOPE_ERROR_NOT_SUPPORTED, "%s: dtype %d is not supported by the fused CUDA kernel", kFn,
                      p->dtype);
  if (p->head_dim != 64 && p->head_dim != 128 && p->head_dim != 256)
    return hopei_fail(HOPE_ERROR_NOT_SUPPORTED,
                      "%s: head_dim %d is not supported by the fused CUDA kernel (supported: 64, 128, 256); "
                      "hope_attention_forward_unfused takes any even head_dim", kFn, p->head_dim);
  // cp.async and the 16-byte stores need 16-byte aligned rows: pointers and strides (8 elements).
  const struct { const void *ptr; const char *name; } ptrs[] = {
      {p->q, "q"}, {p->k, "k"}, {p->v, "v"}, {p->out, "out"}, {p->k_rotated, "k_rotated"}};
  for (const auto &x : ptrs) {
    if (x.ptr != nullptr && !aligned16(x.ptr))
      return hopei_fail(HOPE_ERROR_NOT_SUPPORTED,
                        "%s: params->%s is not 16-byte aligned, which the fused CUDA kernel needs (cp.async); "
                        "use hope_attention_forward_unfused", kFn, x.name);
  }
  const struct { int64_t stride; const char *name; } strides[] = {
      {p->q_row_stride, "q_row_stride"}, {p->k_row_stride, "k_row_stride"}, {p->v_row_stride, "v_row_stride"}};
  for (const auto &x : strides) {
    if (x.stride % 8 != 0)
      return hopei_fail(HOPE_ERROR_NOT_SUPPORTED,
                        "%s: params->%s is %lld elements, not a multiple of 8 (16 bytes), which the fused CUDA "
                        "kernel needs (cp.async); use hope_attention_forward_unfused", kFn, x.name,
                        static_cast<long long>(x.stride));
  }
  // SPEC §8: the rotary dims are rotated in whole 16-byte chunks (rotate-half pairs chunk c with c + rot/16);
  // without cos/sin nothing rotates and any rotary_dim goes.
  const int32_t rot = p->rotary_dim != 0 ? p->rotary_dim : p->head_dim;
  if (rot % 16 != 0 && (p->cos_q != nullptr || p->cos_k != nullptr))
    return hopei_fail(HOPE_ERROR_NOT_SUPPORTED,
                      "%s: the fused CUDA kernel rotates whole 16-byte chunks and needs rotary_dim to be a multiple "
                      "of 16 (got %d); hope_attention_forward_unfused and the CPU backend take any even rotary_dim",
                      kFn, rot);
  // gridDim.y is num_q_heads (limit 65535); a batch above 65535 is split over several launches.
  if (p->num_q_heads > 65535)
    return hopei_fail(HOPE_ERROR_NOT_SUPPORTED,
                      "%s: num_q_heads (%d) must be <= 65535 for the fused CUDA kernel's grid", kFn, p->num_q_heads);

  DeviceInfo dev;
  HOPEI_TRY(device_info(&dev));
  if (dev.cc_major < 8)
    return hopei_fail(HOPE_ERROR_NOT_SUPPORTED,
                      "%s: the fused CUDA kernel needs compute capability 8.0 or newer (this device is %d.%d); "
                      "use hope_attention_forward_unfused", kFn, dev.cc_major, dev.cc_minor);
  int forced = 0;
  HOPEI_TRY(requested_family(&forced));
  const bool hopper = dev.cc_major == 9;
  if (forced == 90 && !HOPE_WITH_SM90)
    return hopei_fail(HOPE_ERROR_NOT_SUPPORTED,
                      "%s: HOPE_ATTN_KERNEL_FAMILY=sm90, but this library was built without the sm90 kernels "
                      "(configure with -DHOPE_SM90=ON and a CUDA 12+ toolkit)", kFn);
  if (forced == 90 && !hopper)
    return hopei_fail(HOPE_ERROR_NOT_SUPPORTED,
                      "%s: HOPE_ATTN_KERNEL_FAMILY=sm90 needs a compute capability 9.x device (this one is %d.%d)",
                      kFn, dev.cc_major, dev.cc_minor);
  plan->family = forced != 0 ? forced : (HOPE_WITH_SM90 && hopper ? 90 : 80);
  // In int64: max_seqlen_q may be as large as INT32_MAX (+ block_m - 1 would overflow int).
  const int64_t max_q = p->max_seqlen_q;
  VariantInfo chosen{};
  if (plan->family == 90) {
    (void)HOPE_DTYPE_SWITCH(p->dtype, T, [&] {
      return HOPE_HEADDIM_SWITCH(p->head_dim, HD, [&] {
        chosen = variant_sm90<HD, T>();
        return HOPE_SUCCESS;
      });
    });
  } else {
    VariantInfo wide{}, narrow{};
    (void)HOPE_DTYPE_SWITCH(p->dtype, T, [&] {
      return HOPE_HEADDIM_SWITCH(p->head_dim, HD, [&] {
        variants<HD, T>(&wide, &narrow);
        return HOPE_SUCCESS;
      });
    });
    // Tile choice from the device: the wide tile (more reuse of each K/V tile) unless its grid would not
    // even give every SM one CTA; then the 64-row tile doubles the CTAs (short prompts, few heads).
    const int64_t wide_ctas = (max_q + wide.block_m - 1) / wide.block_m * p->num_q_heads * p->batch;
    const bool use_narrow = narrow.block_m < wide.block_m && dev.sm_count > 0 && wide_ctas < dev.sm_count;
    chosen = use_narrow ? narrow : wide;
  }
  plan->block_m = chosen.block_m;
  plan->threads = chosen.threads;
  plan->smem_bytes = chosen.smem_bytes;
  if (plan->smem_bytes > dev.smem_optin)
    return hopei_fail(HOPE_ERROR_NOT_SUPPORTED,
                      "%s: the fused kernel (family sm%d) for head_dim %d needs %d bytes of shared memory per "
                      "block, this device offers %d", kFn, plan->family, p->head_dim, plan->smem_bytes,
                      dev.smem_optin);
  plan->num_m_blocks = static_cast<int>((max_q + plan->block_m - 1) / plan->block_m);  // < 2^31 / 64
  plan->k_prepass = p->k_rotated != nullptr;
  plan->rotate_k_in_kernel = !plan->k_prepass && p->cos_k != nullptr;
  // The pre-pass is a grid-stride loop: a few waves of 256-thread CTAs saturate memory bandwidth.
  plan->prepass_grid = (dev.sm_count > 0 ? dev.sm_count : 108) * 8;
  return HOPE_SUCCESS;
}

hope_status_t run_fused(const hope_attention_params_t *p, const FusedPlan &plan, cudaStream_t stream) {
  AttnFwdParams kp{};
  kp.q = p->q;
  kp.k = p->k;
  kp.v = p->v;
  kp.out = p->out;
  kp.lse = p->lse;
  kp.cos_q = p->cos_q;
  kp.sin_q = p->sin_q;
  kp.cu_seqlens_q = p->cu_seqlens_q;
  kp.cu_seqlens_k = p->cu_seqlens_k;
  kp.q_row_stride = p->q_row_stride;
  kp.k_row_stride = p->k_row_stride;
  kp.v_row_stride = p->v_row_stride;
  kp.o_row_stride = static_cast<int64_t>(p->num_q_heads) * p->head_dim;
  kp.batch = p->batch;
  kp.num_q_heads = p->num_q_heads;
  kp.num_kv_heads = p->num_kv_heads;
  kp.head_group = p->num_q_heads / p->num_kv_heads;
  kp.block_m = plan.block_m;
  kp.num_m_blocks = plan.num_m_blocks;
  kp.causal = p->causal != 0;
  kp.softmax_scale = p->softmax_scale;
  kp.scale_log2 = static_cast<float>(static_cast<double>(p->softmax_scale) * 1.4426950408889634);
  kp.rot_half = (p->rotary_dim != 0 ? p->rotary_dim : p->head_dim) / 2;
  kp.interleaved = p->rope_pairing == HOPE_PAIRING_INTERLEAVED;
  kp.max_seqlen_q = p->max_seqlen_q;
  kp.max_seqlen_k = p->max_seqlen_k;

  if (plan.k_prepass) {
    KPrepassParams pp{};
    pp.k = p->k;
    pp.k_row_stride = p->k_row_stride;
    pp.k_rotated = p->k_rotated;
    pp.cos_k = p->cos_k;
    pp.sin_k = p->sin_k;
    pp.cu_seqlens_k = p->cu_seqlens_k;
    pp.batch = p->batch;
    pp.num_kv_heads = p->num_kv_heads;
    pp.head_dim = p->head_dim;
    pp.max_tokens = static_cast<int64_t>(p->batch) * p->max_seqlen_k;
    pp.grid_limit = plan.prepass_grid;
    pp.rot_half = kp.rot_half;
    pp.interleaved = kp.interleaved;
    HOPEI_TRY(run_k_prepass(pp, p->dtype, stream));
    kp.k = p->k_rotated;
    kp.k_row_stride = static_cast<int64_t>(p->num_kv_heads) * p->head_dim;
  } else if (plan.rotate_k_in_kernel) {
    kp.cos_k = p->cos_k;
    kp.sin_k = p->sin_k;
  }
  if (plan.num_m_blocks == 0 || p->batch == 0) return HOPE_SUCCESS;  // no query rows anywhere
  return HOPE_DTYPE_SWITCH(p->dtype, T, [&] {
    return HOPE_HEADDIM_SWITCH(p->head_dim, HD, [&] {
#if HOPE_WITH_SM90
      if (plan.family == 90) return run_attn_fwd_sm90<HD, T>(kp, stream);
#endif
      return run_attn_fwd_sm80<HD, T>(kp, stream);
    });
  });
}

}  // namespace
}  // namespace hope

extern "C" hope_status_t hopei_attention_fused_cuda(const hope_attention_params_t *p, int supported_only,
                                                    void *stream) {
  try {
    if (p == nullptr) return hopei_fail(HOPE_ERROR_INTERNAL, "%s: NULL params reached the fused kernel", hope::kFn);
    hope::FusedPlan plan;
    HOPEI_TRY(hope::plan_fused(p, &plan));
    if (supported_only) return HOPE_SUCCESS;
    return hope::run_fused(p, plan, static_cast<cudaStream_t>(stream));
  } catch (...) {
    return hopei_fail(HOPE_ERROR_INTERNAL, "%s: unexpected C++ exception in the fused CUDA path", hope::kFn);
  }
}
