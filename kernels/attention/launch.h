/* launch.h — the extern "C" launchers of the attention kernels, called from csrc/attention.c.
 * Every launcher receives params already validated and resolved by the host side: strides are non-zero,
 * softmax_scale is > 0, backend is CUDA and a device is present. Each catches everything, checks every CUDA
 * call and the last error after every launch, and returns a status (message through hopei_fail). */
#ifndef HOPE_KERNELS_ATTENTION_LAUNCH_H_
#define HOPE_KERNELS_ATTENTION_LAUNCH_H_

#include <stddef.h>

#include "hope_attn.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The fused FlashAttention-style kernel (kernels/attention/). NOT_SUPPORTED (with a message) for shapes
 * it does not cover; `supported_only` != 0 answers that question without launching anything. */
hope_status_t hopei_attention_fused_cuda(const hope_attention_params_t *p, int supported_only, void *stream);

/* The unfused cuBLAS path (kernels/attention/unfused.cu). */
hope_status_t hopei_attention_unfused_workspace(const hope_attention_params_t *p, size_t *workspace_bytes);
hope_status_t hopei_attention_unfused_cuda(const hope_attention_params_t *p, void *workspace,
                                           size_t workspace_bytes, void *stream);

#ifdef __cplusplus
}
#endif

#endif
