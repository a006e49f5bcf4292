/* launch.h — extern "C" launchers of the rotary kernels, called from csrc/. Params arrive validated and
 * resolved (non-zero strides); each launcher checks every CUDA call and the last error after each launch. */
#ifndef HOPE_KERNELS_ROPE_LAUNCH_H_
#define HOPE_KERNELS_ROPE_LAUNCH_H_

#include <stdint.h>

#include "hope_attn.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Rotation of hope_rope_apply on the GPU (also used by the attention paths to pre-rotate q or k). */
hope_status_t hopei_rope_apply_cuda(const hope_rope_apply_params_t *p, void *stream);

/* cos/sin cache fill on the GPU: rows [offset, offset + n) of cos/sin [.][half] from device positions
 * [3][positions_ld]; inv_freq [half] (double, device) and components [half] (int32, device, -1 = none). */
typedef struct {
  float *cos, *sin;
  int64_t offset, n, positions_ld;
  const float *positions;
  const double *inv_freq;
  const int32_t *components;
  int32_t half;
} hopei_cache_fill_args_t;
hope_status_t hopei_rope_cache_fill_cuda(const hopei_cache_fill_args_t *args, void *stream);

#ifdef __cplusplus
}
#endif

#endif
