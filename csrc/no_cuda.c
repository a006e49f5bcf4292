/* no_cuda.c — the CUDA backend's host-side stand-ins in a library built without CUDA (HOPE_WITH_CUDA=OFF, or no
 * toolkit found; see cmake/cuda_backend.cmake). It replaces the C files of csrc/cuda/ and the extern "C" launchers of
 * kernels/ (kernels/attention/launch.h, kernels/rope/launch.h, kernels/serving/launch.h), so every other file of
 * csrc/ is the same in both builds and the library exports the same symbols.
 *
 * Every CUDA-backend entry point checks hopei_require_device before anything else of the CUDA path, so the
 * caller sees HOPE_ERROR_NOT_SUPPORTED with the message below; the launchers answer the same way should one
 * ever be reached. hope_cuda_device_count reports 0, as on a machine without a GPU. */
#include "attention/launch.h"
#include "internal.h"
#include "rope/launch.h"
#include "rope_cache.h"
#include "serving/launch.h"

static hope_status_t built_without_cuda(const char *fn) {
  return hopei_fail(HOPE_ERROR_NOT_SUPPORTED,
                    "%s: the CUDA backend is not available: this libhope_attn was built without CUDA "
                    "(HOPE_WITH_CUDA=OFF, or no CUDA toolkit at build time); use HOPE_BACKEND_CPU", fn);
}

/* ---- csrc/cuda/cuda_util.c ------------------------------------------------------------------------- */

int hopei_cuda_device_count(void) { return 0; }
hope_status_t hopei_require_device(const char *fn) { return built_without_cuda(fn); }
int hopei_device_sm_count(void) { return 0; }

/* ---- csrc/cuda/rope_cache_device.c ----------------------------------------------------------------- */

hope_status_t hopei_rope_cache_device_create(struct hope_rope_cache_s *c, const char *fn) {
  return built_without_cuda(fn);
}
hope_status_t hopei_rope_cache_device_release(struct hope_rope_cache_s *c, const char *fn) {
  return built_without_cuda(fn);
}
hope_status_t hopei_rope_cache_device_fill(struct hope_rope_cache_s *c, int64_t offset, const float *positions,
                                           int64_t n, int64_t ld, hope_memory_t positions_memory, void *stream,
                                           const char *fn) {
  return built_without_cuda(fn);
}
hope_status_t hopei_rope_cache_host_fill_from_device(struct hope_rope_cache_s *c, int64_t offset,
                                                     const float *positions, int64_t n, int64_t ld, void *stream,
                                                     const char *fn) {
  return built_without_cuda(fn);
}

/* ---- kernels/: the extern "C" launchers ---------------------------------------------------------------- */

hope_status_t hopei_attention_fused_cuda(const hope_attention_params_t *p, int supported_only, void *stream) {
  return built_without_cuda("hope_attention_forward");
}
hope_status_t hopei_attention_unfused_workspace(const hope_attention_params_t *p, size_t *workspace_bytes) {
  return built_without_cuda("hope_attention_unfused_workspace_size");
}
hope_status_t hopei_attention_unfused_cuda(const hope_attention_params_t *p, void *workspace,
                                           size_t workspace_bytes, void *stream) {
  return built_without_cuda("hope_attention_forward_unfused");
}
hope_status_t hopei_rope_apply_cuda(const hope_rope_apply_params_t *p, void *stream) {
  return built_without_cuda("hope_rope_apply");
}
hope_status_t hopei_kv_append_cuda(const hope_kv_append_params_t *p, void *stream) {
  return built_without_cuda("hope_kv_append");
}
int hopei_decode_cuda_supported(int32_t dtype, int32_t head_dim) { return 0; }
hope_status_t hopei_decode_cuda(const hope_decode_params_t *p, const hopei_decode_plan_t *plan, void *stream) {
  return built_without_cuda("hope_decode_forward");
}
hope_status_t hopei_merge_states_cuda(const hope_merge_params_t *p, void *stream) {
  return built_without_cuda("hope_merge_states");
}
