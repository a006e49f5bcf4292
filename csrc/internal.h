/* internal.h — declarations shared by the host-side C files (never installed).
 * Cross-file symbols carry the hopei_ prefix; the library exports only hope_* (cmake/hope_attn.map). */
#ifndef HOPE_INTERNAL_H_
#define HOPE_INTERNAL_H_

#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hope_attn.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- errors (status.c) ---------------------------------------------------------------------------- */

/* Records a printf-style message for hope_last_error() on this thread and returns `status`. */
hope_status_t hopei_fail(hope_status_t status, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* Argument-check helpers: each returns from the calling function with INVALID_VALUE and a message. */
#define HOPEI_CHECK(cond, ...)                                         \
  do {                                                                 \
    if (!(cond)) return hopei_fail(HOPE_ERROR_INVALID_VALUE, __VA_ARGS__); \
  } while (0)
#define HOPEI_CHECK_NOT_NULL(fn, ptr) HOPEI_CHECK((ptr) != NULL, "%s: %s must not be NULL", fn, #ptr)
#define HOPEI_TRY(expr)                        \
  do {                                         \
    hope_status_t hopei_try_s_ = (expr);       \
    if (hopei_try_s_ != HOPE_SUCCESS) return hopei_try_s_; \
  } while (0)

/* Overflow-checked int64 arithmetic: false when the result does not fit. */
bool hopei_mul_i64(int64_t a, int64_t b, int64_t *out);
bool hopei_add_i64(int64_t a, int64_t b, int64_t *out);

/* Byte ranges of arguments (status.c). No buffer reaches past HOPEI_ADDRESS_LIMIT (2^57, the largest virtual
 * address space of any 64-bit platform), so a span beyond it means a wrong size, never a real buffer. */
#define HOPEI_ADDRESS_LIMIT ((uintptr_t)1 << 57)
/* [*lo, *hi) = [p, p + bytes); false when that runs past HOPEI_ADDRESS_LIMIT. */
bool hopei_span(const void *p, uint64_t bytes, uintptr_t *lo, uintptr_t *hi);
/* INVALID_VALUE naming `name` when [p, p + bytes) runs past HOPEI_ADDRESS_LIMIT. */
hope_status_t hopei_check_span(const char *fn, const char *name, const void *p, uint64_t bytes);
/* SUCCESS when the two byte ranges are disjoint, or, with may_equal, the very same range (in place); else
 * INVALID_VALUE naming both. NULL or empty ranges never overlap. */
hope_status_t hopei_check_alias(const char *fn, const char *a_name, const void *a, uint64_t a_bytes,
                                const char *b_name, const void *b, uint64_t b_bytes, bool may_equal);

/* SPEC §8 pairing and rotary dimension of a call or config (rope.c): INVALID_VALUE with a message naming `fn` and
 * the fields (`prefix` is "params->" or "config->"; `pairing_name` the pairing field's name) for a pairing other
 * than 0/1 or a rotary_dim that is odd, below 2 or above head_dim; on success *resolved (may be NULL) is the
 * rotary dimension with 0 resolved to head_dim. */
hope_status_t hopei_rotary_resolve(const char *fn, const char *prefix, const char *pairing_name, int32_t pairing,
                                   int32_t rotary_dim, int32_t head_dim, int32_t *resolved);

/* ---- positions (positions.c), shared with scales.c ------------------------------------------------- */

/* Validates a segment list (messages name `fn` and the segment index); *num_tokens (may be NULL) gets the count. */
hope_status_t hopei_segments_check(const char *fn, const hope_segment_t *segments, int32_t num_segments,
                                   int64_t *num_tokens);
/* What hope_positions_build checks before it writes: every position of a validated segment list, and its
 * next_position (returned in *next_position), are finite float32. forced_scale > 0 overrides every vision
 * segment's scale (the fit policy's candidates). INVALID_VALUE with a message naming `fn` otherwise. */
hope_status_t hopei_positions_check_range(const char *fn, const hope_segment_t *segments, int32_t num_segments,
                                          hope_layout_t layout, double default_scale, double forced_scale,
                                          float start, float *next_position);

/* ---- attention backends ----------------------------------------------------------------------------- */

/* The CPU backend of hope_attention_forward (cpu/attention.c); takes validated, resolved params. */
hope_status_t hopei_attention_cpu(const hope_attention_params_t *p);

/* ---- CUDA (cuda/cuda_util.c; no_cuda.c in a build without CUDA, where every CUDA-backend call fails in
 * hopei_require_device with NOT_SUPPORTED and the device count is 0) --------------------------------- */

/* Number of usable CUDA devices, probed once; 0 without a GPU, a driver, or CUDA in the build. */
int hopei_cuda_device_count(void);
/* SUCCESS when a CUDA device is usable, else NO_DEVICE (NOT_SUPPORTED without CUDA) with a message naming `fn`.
 * Cached after the first call. */
hope_status_t hopei_require_device(const char *fn);
/* Maps a cudaError_t (passed as int so this header needs no CUDA header) to a status and message. */
hope_status_t hopei_cuda_fail(int cuda_error, const char *fn, const char *what);
/* Where a pointer lives: HOPE_MEMORY_DEVICE for device or managed memory, HOST otherwise. */
hope_memory_t hopei_pointer_memory(const void *ptr);
/* Number of SMs of the current device (cached per device), 0 on failure. */
int hopei_device_sm_count(void);

/* ---- CPU ISA paths (cpu/isa_report.c): what hope_build_info reports for the CPU backend ------------ */

/* Comma-separated names of the CPU kernel paths compiled into the library ("generic": portable C). */
const char *hopei_cpu_isa_paths(void);
/* The path the CPU backend runs on this machine (with run-time dispatch: the best one the CPU supports). */
const char *hopei_cpu_isa_selected(void);

/* ---- NVTX (nvtx.c): one range per public entry point in domain "hope_attn" ------------------------
 * Compiled in when the build found the nvtx3 headers (HOPE_HAVE_NVTX, cmake/cuda_backend.cmake); otherwise
 * HOPEI_NVTX_SCOPE is a no-op and nvtx.c is not built. tests/nvtx/ checks every entry point. */

typedef enum {
  HOPEI_RANGE_POSITIONS_COUNT,
  HOPEI_RANGE_POSITIONS_BUILD,
  HOPEI_RANGE_POSITIONS_BUILD_EX,
  HOPEI_RANGE_POSITIONS_GENERATED,
  HOPEI_RANGE_SEGMENT_FROM_GRID,
  HOPEI_RANGE_SEGMENT_FROM_GRID_EX,
  HOPEI_RANGE_SCALES_SELECT,
  HOPEI_RANGE_ROPE_COMPONENTS,
  HOPEI_RANGE_ROPE_COS_SIN,
  HOPEI_RANGE_ROPE_CACHE_CREATE,
  HOPEI_RANGE_ROPE_CACHE_FILL,
  HOPEI_RANGE_ROPE_CACHE_GET,
  HOPEI_RANGE_ROPE_CACHE_DESTROY,
  HOPEI_RANGE_ROPE_APPLY,
  HOPEI_RANGE_ATTENTION_FORWARD,
  HOPEI_RANGE_ATTENTION_UNFUSED_WORKSPACE,
  HOPEI_RANGE_ATTENTION_FORWARD_UNFUSED,
  HOPEI_RANGE_KV_APPEND,
  HOPEI_RANGE_DECODE_WORKSPACE,
  HOPEI_RANGE_DECODE_FORWARD,
  HOPEI_RANGE_MERGE_STATES,
  HOPEI_RANGE_CUDA_DEVICE_COUNT,
  HOPEI_RANGE_BUILD_INFO,
  HOPEI_RANGE_COUNT_
} hopei_range_t;

void hopei_nvtx_push(hopei_range_t range);
void hopei_nvtx_pop(int *unused);

/* Opens a range that closes when the enclosing scope ends (gcc/clang cleanup attribute). */
#if defined(HOPE_HAVE_NVTX) && HOPE_HAVE_NVTX
#define HOPEI_NVTX_SCOPE(range) \
  int hopei_nvtx_scope_ __attribute__((cleanup(hopei_nvtx_pop), unused)) = (hopei_nvtx_push(range), 0)
#else
#define HOPEI_NVTX_SCOPE(range) ((void)(range))
#endif

/* ---- dtype helpers (dtype.c) --------------------------------------------------------------------- */

size_t hopei_dtype_size(int32_t dtype); /* 0 for an unknown dtype */
const char *hopei_dtype_name(int32_t dtype);
float hopei_half_to_float(uint16_t h);
uint16_t hopei_float_to_half(float f);   /* round to nearest even */
float hopei_bf16_to_float(uint16_t b);
uint16_t hopei_float_to_bf16(float f);   /* round to nearest even; NaN stays NaN */
/* Element `i` of a dtype array as float, and the store back (round to nearest even). */
static inline float hopei_load(const void *p, int32_t dtype, int64_t i) {
  switch (dtype) {
    case HOPE_DTYPE_FLOAT16: return hopei_half_to_float(((const uint16_t *)p)[i]);
    case HOPE_DTYPE_BFLOAT16: return hopei_bf16_to_float(((const uint16_t *)p)[i]);
    default: return ((const float *)p)[i];
  }
}
static inline void hopei_store(void *p, int32_t dtype, int64_t i, float x) {
  switch (dtype) {
    case HOPE_DTYPE_FLOAT16: ((uint16_t *)p)[i] = hopei_float_to_half(x); break;
    case HOPE_DTYPE_BFLOAT16: ((uint16_t *)p)[i] = hopei_float_to_bf16(x); break;
    default: ((float *)p)[i] = x; break;
  }
}

/* ---- threads (cpu/parallel.c) --------------------------------------------------------------------- */

/* Runs fn(ctx, begin, end) over [0, n) in contiguous chunks of at least min_chunk items on up to
 * hopei_num_threads() threads (the calling thread included). A thread that cannot be started leaves its
 * chunk to the calling thread, so the work is always complete when this returns. */
typedef void (*hopei_range_fn)(void *ctx, int64_t begin, int64_t end);
void hopei_parallel_for(int64_t n, int64_t min_chunk, hopei_range_fn fn, void *ctx);
/* HOPE_NUM_THREADS if set (>= 1), else the number of online CPUs, capped at 64. */
int hopei_num_threads(void);

#ifdef __cplusplus
}
#endif

#endif /* HOPE_INTERNAL_H_ */
