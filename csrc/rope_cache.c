/* rope_cache.c — cos/sin cache objects (hope_rope_cache_*): tables [capacity][half] float32 on the host or on
 * a CUDA device. A host cache computes in double on the host; a device cache (csrc/cuda/rope_cache_device.c) runs
 * hopei_rope_cache_fill_cuda (kernels/rope/cache_fill.cu), which also computes the angle and sin/cos in double,
 * so both kinds of cache agree with hope_rope_cos_sin to ~1 float ulp. */
#include <stdlib.h>
#include <string.h>

#include "rope/rope_host.h"
#include "rope_cache.h"

/* Frees the host parts and the object (a device cache's tables are released first, by its device half). */
static void free_cache(struct hope_rope_cache_s *c) {
  if (c->memory == HOPE_MEMORY_HOST) {
    free(c->cos);
    free(c->sin);
  }
  free(c->components);
  free(c->inv_freq);
  free(c);
}

static hope_status_t oom(const char *fn, const char *what, struct hope_rope_cache_s *c) {
  free_cache(c);
  return hopei_fail(HOPE_ERROR_OUT_OF_MEMORY, "%s: could not allocate %s", fn, what);
}

hope_status_t hope_rope_cache_create(const hope_rope_config_t *config, int64_t capacity, hope_memory_t memory,
                                     hope_rope_cache_t *cache) {
  HOPEI_NVTX_SCOPE(HOPEI_RANGE_ROPE_CACHE_CREATE);
  static const char kFn[] = "hope_rope_cache_create";
  HOPEI_CHECK_NOT_NULL(kFn, cache);
  *cache = NULL;
  HOPEI_TRY(hopei_rope_check_config(config, kFn));
  HOPEI_CHECK(capacity >= 1, "%s: capacity %lld must be >= 1", kFn, (long long)capacity);
  HOPEI_CHECK(memory == HOPE_MEMORY_HOST || memory == HOPE_MEMORY_DEVICE,
              "%s: memory %d is not a hope_memory_t (0 host, 1 device)", kFn, (int)memory);
  const int32_t half = hopei_rope_half(config);
  int64_t elems = 0, pos_elems = 0;
  HOPEI_CHECK(hopei_mul_i64(capacity, half, &elems) && (uint64_t)elems <= SIZE_MAX / sizeof(float) &&
                  elems <= INT64_MAX / (int64_t)sizeof(float) && hopei_mul_i64(capacity, 3, &pos_elems) &&
                  pos_elems <= INT64_MAX / (int64_t)sizeof(float) &&
                  (uint64_t)pos_elems <= SIZE_MAX / sizeof(float),
              "%s: capacity %lld is too large (capacity * rotary_dim/2 * 4 bytes overflows)", kFn,
              (long long)capacity);
  if (memory == HOPE_MEMORY_DEVICE) HOPEI_TRY(hopei_require_device(kFn));
  const size_t table_bytes = (size_t)elems * sizeof(float);

  struct hope_rope_cache_s *c = (struct hope_rope_cache_s *)calloc(1, sizeof *c);
  if (c == NULL) return hopei_fail(HOPE_ERROR_OUT_OF_MEMORY, "%s: could not allocate the cache object", kFn);
  c->config = *config;
  c->half = half;
  c->capacity = capacity;
  c->memory = memory;
  c->components = (int32_t *)malloc((size_t)half * sizeof(int32_t));
  c->inv_freq = (double *)malloc((size_t)half * sizeof(double));
  if (c->components == NULL || c->inv_freq == NULL) return oom(kFn, "the frequency tables", c);
  hopei_rope_tables(config, c->components, c->inv_freq);

  if (memory == HOPE_MEMORY_HOST) {
    c->cos = (float *)malloc(table_bytes);
    c->sin = (float *)malloc(table_bytes);
    if (c->cos == NULL || c->sin == NULL) return oom(kFn, "the host cos/sin tables", c);
    *cache = c;
    return HOPE_SUCCESS;
  }

  hope_status_t st = hopei_rope_cache_device_create(c, kFn);
  if (st != HOPE_SUCCESS) {
    free_cache(c);
    return st;
  }
  *cache = c;
  return HOPE_SUCCESS;
}

hope_status_t hope_rope_cache_fill(hope_rope_cache_t cache, int64_t offset, const float *positions, int64_t n,
                                   int64_t positions_ld, hope_memory_t positions_memory, void *stream) {
  HOPEI_NVTX_SCOPE(HOPEI_RANGE_ROPE_CACHE_FILL);
  static const char kFn[] = "hope_rope_cache_fill";
  HOPEI_CHECK_NOT_NULL(kFn, cache);
  struct hope_rope_cache_s *c = cache;
  HOPEI_CHECK(offset >= 0, "%s: offset %lld must be >= 0", kFn, (long long)offset);
  HOPEI_CHECK(n >= 0, "%s: n %lld must be >= 0", kFn, (long long)n);
  HOPEI_CHECK(n <= c->capacity && offset <= c->capacity - n,
              "%s: rows [offset, offset + n) with offset %lld and n %lld end past the capacity %lld", kFn,
              (long long)offset, (long long)n, (long long)c->capacity);
  HOPEI_CHECK(positions_ld == 0 || positions_ld >= n, "%s: positions_ld %lld must be 0 or >= n (%lld)", kFn,
              (long long)positions_ld, (long long)n);
  HOPEI_CHECK(positions_memory == HOPE_MEMORY_HOST || positions_memory == HOPE_MEMORY_DEVICE,
              "%s: positions_memory %d is not a hope_memory_t (0 host, 1 device)", kFn, (int)positions_memory);
  const int64_t ld = positions_ld == 0 ? n : positions_ld;
  HOPEI_CHECK(ld <= INT64_MAX / 3 / (int64_t)sizeof(float), "%s: positions_ld %lld is too large", kFn,
              (long long)ld);
  if (n == 0) return HOPE_SUCCESS;
  HOPEI_CHECK_NOT_NULL(kFn, positions);

  if (c->memory == HOPE_MEMORY_HOST) {
    if (positions_memory == HOPE_MEMORY_DEVICE)
      return hopei_rope_cache_host_fill_from_device(c, offset, positions, n, ld, stream, kFn);
    HOPEI_TRY(hopei_rope_check_positions(kFn, c->components, c->half, positions, ld, n));
    hopei_rope_cos_sin_host(c->half, c->components, c->inv_freq, positions, ld, n, c->cos + offset * c->half,
                            c->sin + offset * c->half);
    return HOPE_SUCCESS;
  }
  return hopei_rope_cache_device_fill(c, offset, positions, n, ld, positions_memory, stream, kFn);
}

hope_status_t hope_rope_cache_get(hope_rope_cache_t cache, const float **cos, const float **sin,
                                  int64_t *capacity, hope_memory_t *memory) {
  HOPEI_NVTX_SCOPE(HOPEI_RANGE_ROPE_CACHE_GET);
  HOPEI_CHECK_NOT_NULL("hope_rope_cache_get", cache);
  if (cos != NULL) *cos = cache->cos;
  if (sin != NULL) *sin = cache->sin;
  if (capacity != NULL) *capacity = cache->capacity;
  if (memory != NULL) *memory = cache->memory;
  return HOPE_SUCCESS;
}

hope_status_t hope_rope_cache_destroy(hope_rope_cache_t cache) {
  HOPEI_NVTX_SCOPE(HOPEI_RANGE_ROPE_CACHE_DESTROY);
  static const char kFn[] = "hope_rope_cache_destroy";
  if (cache == NULL) return HOPE_SUCCESS;
  const hope_status_t st =
      cache->memory == HOPE_MEMORY_DEVICE ? hopei_rope_cache_device_release(cache, kFn) : HOPE_SUCCESS;
  free_cache(cache);
  return st;
}
