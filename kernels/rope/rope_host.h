/* rope_host.h — host-side helpers shared by csrc/rope.c, csrc/rope_cache.c, csrc/rope_apply.c and
 * csrc/cpu/rope_apply.c (never installed; C, no CUDA header). Other host code (attention, kv_append) may use
 * them too: hopei_rope_rotate_rows_cpu is the CPU rotation of SPEC §4. */
#ifndef HOPE_KERNELS_ROPE_ROPE_HOST_H_
#define HOPE_KERNELS_ROPE_ROPE_HOST_H_

#include <stdint.h>

#include "hope_attn.h"

#ifdef __cplusplus
extern "C" {
#endif

#define HOPEI_ROPE_MAX_HEAD_DIM 1024

/* Checks a rope config (kind, head_dim even 2..1024, theta finite > 1, pairing, rotary_dim, model_exact_freqs,
 * sections summing to rotary_dim/2); INVALID_VALUE with a message naming `fn` and the field otherwise. */
hope_status_t hopei_rope_check_config(const hope_rope_config_t *config, const char *fn);

/* rotary_dim/2 of a checked config (rotary_dim 0 resolved to head_dim): the width of its tables. */
int32_t hopei_rope_half(const hope_rope_config_t *config);

/* For a config that passed hopei_rope_check_config: c(i) (SPEC §3 table) and inv_i (SPEC §3 and §8: theta^(-2i/r)
 * in double, or the model-exact float32 value), i < rotary_dim/2. Either output may be NULL. */
void hopei_rope_tables(const hope_rope_config_t *config, int32_t *components, double *inv_freq);

/* INVALID_VALUE (message naming `fn` and the token) when a position that some pair reads (a row in
 * `components`) is not finite. positions: host [3][ld], tokens [0, n). */
hope_status_t hopei_rope_check_positions(const char *fn, const int32_t *components, int32_t half,
                                         const float *positions, int64_t ld, int64_t n);

/* cos/sin rows [0, n) of the host tables cos_out/sin_out ([n][half], row-major) from host positions [3][ld]:
 * angle = (double)pos * inv_i in double, cos/sin in double, rounded once to float; "none" pairs 1 and 0.
 * Runs on hopei_parallel_for threads for large n. */
void hopei_rope_cos_sin_host(int32_t half, const int32_t *components, const double *inv_freq,
                             const float *positions, int64_t ld, int64_t n, float *cos_out, float *sin_out);

/* The CPU rotation of SPEC §4 and §8 (csrc/cpu/rope_apply.c) on validated, resolved params (non-zero strides,
 * rotary_dim resolved to 2..head_dim, num_tokens >= 1, host pointers, in place only with equal strides). */
void hopei_rope_apply_cpu(const hope_rope_apply_params_t *p);

#ifdef __cplusplus
}
#endif

#endif
