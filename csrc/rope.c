/* rope.c — SPEC §3 on the host: the pair -> component map, inverse frequencies, cos/sin in double.
 * The cache objects live in rope_cache.c, the rotation in rope_apply.c (validation) and cpu/rope_apply.c. */
#include <float.h>
#include <math.h>
#include <stdlib.h>

#include "internal.h"
#include "rope/rope_host.h"

/* Below this many tokens the cos/sin tables are computed on the calling thread alone. */
#define HOPEI_ROPE_MIN_CHUNK 256

hope_status_t hopei_rotary_resolve(const char *fn, const char *prefix, const char *pairing_name, int32_t pairing,
                                   int32_t rotary_dim, int32_t head_dim, int32_t *resolved) {
  HOPEI_CHECK(pairing == HOPE_PAIRING_ROTATE_HALF || pairing == HOPE_PAIRING_INTERLEAVED,
              "%s: %s%s %d is not a hope_rope_pairing_t (0 rotate-half, 1 interleaved)", fn, prefix, pairing_name,
              (int)pairing);
  if (rotary_dim != 0) {
    HOPEI_CHECK(rotary_dim % 2 == 0, "%s: %srotary_dim %d must be even (0 selects head_dim %d)", fn, prefix,
                (int)rotary_dim, (int)head_dim);
    HOPEI_CHECK(rotary_dim >= 2, "%s: %srotary_dim %d must be >= 2 (0 selects head_dim %d)", fn, prefix,
                (int)rotary_dim, (int)head_dim);
    HOPEI_CHECK(rotary_dim <= head_dim, "%s: %srotary_dim %d must be <= head_dim %d", fn, prefix, (int)rotary_dim,
                (int)head_dim);
  }
  if (resolved != NULL) *resolved = rotary_dim != 0 ? rotary_dim : head_dim;
  return HOPE_SUCCESS;
}

hope_status_t hopei_rope_check_config(const hope_rope_config_t *config, const char *fn) {
  HOPEI_CHECK(config != NULL, "%s: config must not be NULL", fn);
  HOPEI_CHECK(config->kind >= HOPE_ROPE_VANILLA && config->kind <= HOPE_ROPE_HOPE,
              "%s: config->kind %d is not a hope_rope_kind_t (0..4)", fn, (int)config->kind);
  HOPEI_CHECK(config->head_dim >= 2 && config->head_dim <= HOPEI_ROPE_MAX_HEAD_DIM && config->head_dim % 2 == 0,
              "%s: config->head_dim %d must be even and in 2..%d", fn, (int)config->head_dim,
              HOPEI_ROPE_MAX_HEAD_DIM);
  HOPEI_CHECK(isfinite(config->theta) && config->theta > 1.0, "%s: config->theta %g must be finite and > 1", fn,
              config->theta);
  int32_t rotary_dim = 0;
  HOPEI_TRY(hopei_rotary_resolve(fn, "config->", "pairing", config->pairing, config->rotary_dim, config->head_dim,
                                 &rotary_dim));
  HOPEI_CHECK(config->model_exact_freqs == 0 || config->model_exact_freqs == 1,
              "%s: config->model_exact_freqs %d must be 0 (double frequencies) or 1 (PyTorch's float32 ones)", fn,
              (int)config->model_exact_freqs);
  HOPEI_CHECK(config->model_exact_freqs == 0 || config->theta <= (double)FLT_MAX,
              "%s: config->theta %g exceeds float32, which model-exact frequencies compute in", fn, config->theta);
  if (config->kind != HOPE_ROPE_VANILLA) {
    const int32_t *s = config->sections;
    HOPEI_CHECK(s[0] >= 0 && s[1] >= 0 && s[2] >= 0,
                "%s: config->sections (%d, %d, %d) must be non-negative", fn, (int)s[0], (int)s[1], (int)s[2]);
    int64_t sum = (int64_t)s[0] + s[1] + s[2];
    HOPEI_CHECK(sum == rotary_dim / 2,
                "%s: config->sections (%d, %d, %d) sum to %lld, but rotary_dim / 2 is %d (rotary_dim %d)", fn,
                (int)s[0], (int)s[1], (int)s[2], (long long)sum, (int)(rotary_dim / 2), (int)rotary_dim);
  }
  return HOPE_SUCCESS;
}

/* c(i) of the SPEC §3 table for a checked config. */
static int32_t component_of(const hope_rope_config_t *config, int32_t i) {
  const int32_t st = config->sections[0], sh = config->sections[1], sw = config->sections[2];
  switch (config->kind) {
    case HOPE_ROPE_MROPE:
      if (i < st) return HOPE_COMPONENT_T;
      return i < st + sh ? HOPE_COMPONENT_H : HOPE_COMPONENT_W;
    case HOPE_ROPE_MROPE_INTERLEAVED:
      if (i % 3 == 1 && i < 3 * sh) return HOPE_COMPONENT_H;
      if (i % 3 == 2 && i < 3 * sw) return HOPE_COMPONENT_W;
      return HOPE_COMPONENT_T;
    case HOPE_ROPE_VIDEOROPE:
      if (i < sh + sw) return i % 2 == 0 ? HOPE_COMPONENT_H : HOPE_COMPONENT_W;
      return HOPE_COMPONENT_T;
    case HOPE_ROPE_HOPE:
      if (i < sh + sw) return i % 2 == 0 ? HOPE_COMPONENT_H : HOPE_COMPONENT_W;
      return HOPE_COMPONENT_NONE;
    case HOPE_ROPE_VANILLA:
    default: return HOPE_COMPONENT_T;
  }
}

int32_t hopei_rope_half(const hope_rope_config_t *config) {
  return (config->rotary_dim != 0 ? config->rotary_dim : config->head_dim) / 2;
}

/* SPEC §8 model-exact inverse frequency: what PyTorch model code computes in float32,
 * 1.0 / (theta ** (torch.arange(0, r, 2).float() / r)): the exponent 2i / r divided in float32, the power of the
 * float32 base rounded to float32 (from the double power, so correctly rounded), then the float32 reciprocal. */
static double model_exact_inv_freq(double theta, int32_t i, int32_t rotary_dim) {
  const float exponent = (float)(2 * i) / (float)rotary_dim;
  const float power = (float)pow((double)(float)theta, (double)exponent);
  const float inv = 1.0f / power;
  return (double)inv;
}

void hopei_rope_tables(const hope_rope_config_t *config, int32_t *components, double *inv_freq) {
  const int32_t half = hopei_rope_half(config), rotary_dim = 2 * half;
  for (int32_t i = 0; i < half; ++i) {
    if (components != NULL) components[i] = component_of(config, i);
    if (inv_freq == NULL) continue;
    inv_freq[i] = config->model_exact_freqs ? model_exact_inv_freq(config->theta, i, rotary_dim)
                                            : pow(config->theta, -(double)(2 * i) / (double)rotary_dim);
  }
}

hope_status_t hopei_rope_check_positions(const char *fn, const int32_t *components, int32_t half,
                                         const float *positions, int64_t ld, int64_t n) {
  bool used[3] = {false, false, false};
  for (int32_t i = 0; i < half; ++i)
    if (components[i] >= 0 && components[i] < 3) used[components[i]] = true;
  static const char *const kRow[3] = {"t", "h", "w"};
  for (int r = 0; r < 3; ++r) {
    if (!used[r]) continue;
    const float *row = positions + (int64_t)r * ld;
    for (int64_t k = 0; k < n; ++k)
      HOPEI_CHECK(isfinite(row[k]), "%s: positions row %s, token %lld is not finite (%g)", fn, kRow[r],
                  (long long)k, (double)row[k]);
  }
  return HOPE_SUCCESS;
}

typedef struct {
  int32_t half;
  const int32_t *components;
  const double *inv_freq;
  const float *positions;
  int64_t ld;
  float *cos_out, *sin_out;
} cos_sin_job_t;

static void cos_sin_range(void *ctx, int64_t begin, int64_t end) {
  const cos_sin_job_t *j = (const cos_sin_job_t *)ctx;
  for (int64_t k = begin; k < end; ++k) {
    float *c = j->cos_out + k * j->half;
    float *s = j->sin_out + k * j->half;
    for (int32_t i = 0; i < j->half; ++i) {
      const int32_t comp = j->components[i];
      if (comp < 0) {
        c[i] = 1.0f;
        s[i] = 0.0f;
        continue;
      }
      const double angle = (double)j->positions[comp * j->ld + k] * j->inv_freq[i];
      c[i] = (float)cos(angle);
      s[i] = (float)sin(angle);
    }
  }
}

void hopei_rope_cos_sin_host(int32_t half, const int32_t *components, const double *inv_freq,
                             const float *positions, int64_t ld, int64_t n, float *cos_out, float *sin_out) {
  cos_sin_job_t job = {half, components, inv_freq, positions, ld, cos_out, sin_out};
  /* Each token costs ~half double sin/cos pairs: split into chunks worth a thread only for large n. */
  int64_t min_chunk = HOPEI_ROPE_MIN_CHUNK * 64 / (half > 0 ? half : 1);
  if (min_chunk < 16) min_chunk = 16;
  hopei_parallel_for(n, min_chunk, cos_sin_range, &job);
}

hope_status_t hope_rope_components(const hope_rope_config_t *config, int32_t *components) {
  HOPEI_NVTX_SCOPE(HOPEI_RANGE_ROPE_COMPONENTS);
  HOPEI_TRY(hopei_rope_check_config(config, "hope_rope_components"));
  hopei_rope_tables(config, components, NULL);
  return HOPE_SUCCESS;
}

/* Non-finite positions (NaN, inf) are INVALID_VALUE here: the host has them at hand, and a NaN angle would
 * only produce NaN tables. (Device-side fills cannot check without a round trip; there they give NaN rows.) */
hope_status_t hope_rope_cos_sin(const hope_rope_config_t *config, const float *positions, int64_t n,
                                float *cos_out, float *sin_out) {
  HOPEI_NVTX_SCOPE(HOPEI_RANGE_ROPE_COS_SIN);
  static const char kFn[] = "hope_rope_cos_sin";
  HOPEI_TRY(hopei_rope_check_config(config, kFn));
  HOPEI_CHECK(n >= 0, "%s: n %lld must be >= 0", kFn, (long long)n);
  if (n == 0) return HOPE_SUCCESS;
  HOPEI_CHECK_NOT_NULL(kFn, positions);
  HOPEI_CHECK_NOT_NULL(kFn, cos_out);
  HOPEI_CHECK_NOT_NULL(kFn, sin_out);
  const int32_t half = hopei_rope_half(config);
  int64_t elems = 0, pos_elems = 0;
  HOPEI_CHECK(hopei_mul_i64(n, half, &elems) && elems <= INT64_MAX / 4 && hopei_mul_i64(n, 3, &pos_elems) &&
                  pos_elems <= INT64_MAX / 4,
              "%s: n %lld is too large (the tables' size overflows)", kFn, (long long)n);
  int32_t components[HOPEI_ROPE_MAX_HEAD_DIM / 2];
  double inv_freq[HOPEI_ROPE_MAX_HEAD_DIM / 2];
  hopei_rope_tables(config, components, inv_freq);
  HOPEI_TRY(hopei_rope_check_positions(kFn, components, half, positions, n, n));
  hopei_rope_cos_sin_host(half, components, inv_freq, positions, n, n, cos_out, sin_out);
  return HOPE_SUCCESS;
}
