/* rope_cache.c — cos/sin cache objects (hope_rope_cache_*): tables [capacity][half] float32 on the host or on
 * a CUDA device. A host cache computes in double on the host; a device cache runs
 * hopei_rope_cache_fill_cuda (kernels/rope/cache_fill.cu), which also computes the angle and sin/cos in double,
 * so both kinds of cache agree with hope_rope_cos_sin to ~1 float ulp. */
#include <stdlib.h>
#include <string.h>

#include <cuda_runtime_api.h>

#include "internal.h"
#include "rope/launch.h"
#include "rope/rope_host.h"

struct hope_rope_cache_s {
  hope_rope_config_t config;
  int32_t half;
  int64_t capacity;
  hope_memory_t memory;
  int device;               /* device cache: the CUDA device it was created on */
  float *cos, *sin;         /* [capacity][half], host or device */
  int32_t *components;      /* host [half] */
  double *inv_freq;         /* host [half] */
  int32_t *d_components;    /* device cache: device copy of components */
  double *d_inv_freq;       /* device cache: device copy of inv_freq */
  float *d_positions;       /* device cache: staging rows for host positions, [3][capacity] */
};

/* Makes the cache's device current for the duration of a call; restores the caller's device after. */
typedef struct {
  int previous;
  bool switched;
} device_guard_t;

static hope_status_t device_enter(const struct hope_rope_cache_s *c, const char *fn, device_guard_t *g) {
  g->switched = false;
  cudaError_t e = cudaGetDevice(&g->previous);
  if (e != cudaSuccess) return hopei_cuda_fail(e, fn, "cudaGetDevice");
  if (g->previous != c->device) {
    e = cudaSetDevice(c->device);
    if (e != cudaSuccess) return hopei_cuda_fail(e, fn, "cudaSetDevice");
    g->switched = true;
  }
  return HOPE_SUCCESS;
}

static void device_leave(const device_guard_t *g) {
  if (g->switched) (void)cudaSetDevice(g->previous);
}

/* Frees everything; returns the first CUDA error met (the frees still all happen). */
static cudaError_t free_cache(struct hope_rope_cache_s *c) {
  cudaError_t first = cudaSuccess;
  if (c->memory == HOPE_MEMORY_DEVICE) {
    void *dev_ptrs[5] = {c->cos, c->sin, c->d_components, c->d_inv_freq, c->d_positions};
    for (int i = 0; i < 5; ++i) {
      if (dev_ptrs[i] == NULL) continue;
      cudaError_t e = cudaFree(dev_ptrs[i]);
      if (e != cudaSuccess && first == cudaSuccess) first = e;
    }
  } else {
    free(c->cos);
    free(c->sin);
  }
  free(c->components);
  free(c->inv_freq);
  free(c);
  return first;
}

static hope_status_t oom(const char *fn, const char *what, struct hope_rope_cache_s *c) {
  if (c->memory == HOPE_MEMORY_DEVICE) (void)cudaGetLastError(); /* a failed cudaMalloc is not sticky: clear it */
  (void)free_cache(c);
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

  cudaError_t e = cudaGetDevice(&c->device);
  if (e != cudaSuccess) {
    (void)free_cache(c);
    return hopei_cuda_fail(e, kFn, "cudaGetDevice");
  }
  if (cudaMalloc((void **)&c->cos, table_bytes) != cudaSuccess) return oom(kFn, "the device cos table", c);
  if (cudaMalloc((void **)&c->sin, table_bytes) != cudaSuccess) return oom(kFn, "the device sin table", c);
  if (cudaMalloc((void **)&c->d_components, (size_t)half * sizeof(int32_t)) != cudaSuccess)
    return oom(kFn, "the device component map", c);
  if (cudaMalloc((void **)&c->d_inv_freq, (size_t)half * sizeof(double)) != cudaSuccess)
    return oom(kFn, "the device inverse frequencies", c);
  if (cudaMalloc((void **)&c->d_positions, (size_t)pos_elems * sizeof(float)) != cudaSuccess)
    return oom(kFn, "the device position staging rows", c);
  e = cudaMemcpy(c->d_components, c->components, (size_t)half * sizeof(int32_t), cudaMemcpyHostToDevice);
  if (e == cudaSuccess)
    e = cudaMemcpy(c->d_inv_freq, c->inv_freq, (size_t)half * sizeof(double), cudaMemcpyHostToDevice);
  if (e != cudaSuccess) {
    (void)free_cache(c);
    return hopei_cuda_fail(e, kFn, "cudaMemcpy of the frequency tables");
  }
  *cache = c;
  return HOPE_SUCCESS;
}

/* Host cache, positions on the device: copy the three rows back on `stream` (ordered after the work that
 * produced them), wait, then compute on the host. */
static hope_status_t fill_host_from_device(struct hope_rope_cache_s *c, int64_t offset, const float *positions,
                                           int64_t n, int64_t ld, void *stream, const char *fn) {
  HOPEI_TRY(hopei_require_device(fn));
  HOPEI_CHECK(hopei_pointer_memory(positions) == HOPE_MEMORY_DEVICE,
              "%s: positions_memory is HOPE_MEMORY_DEVICE but positions is not a device pointer", fn);
  float *tmp = (float *)malloc((size_t)n * 3 * sizeof(float));
  if (tmp == NULL) return hopei_fail(HOPE_ERROR_OUT_OF_MEMORY, "%s: could not allocate %lld host positions", fn,
                                     (long long)(3 * n));
  cudaStream_t s = (cudaStream_t)stream;
  cudaError_t e = cudaSuccess;
  for (int r = 0; r < 3 && e == cudaSuccess; ++r) /* one copy per row: no 2-D pitch limit to meet */
    e = cudaMemcpyAsync(tmp + r * n, positions + r * ld, (size_t)n * sizeof(float), cudaMemcpyDeviceToHost, s);
  if (e == cudaSuccess) e = cudaStreamSynchronize(s);
  if (e != cudaSuccess) {
    free(tmp);
    return hopei_cuda_fail(e, fn, "copying the device positions back to the host");
  }
  hope_status_t st = hopei_rope_check_positions(fn, c->components, c->half, tmp, n, n);
  if (st == HOPE_SUCCESS)
    hopei_rope_cos_sin_host(c->half, c->components, c->inv_freq, tmp, n, n, c->cos + offset * c->half,
                            c->sin + offset * c->half);
  free(tmp);
  return st;
}

/* Device cache. Host positions are copied into the cache's staging rows [offset, offset + n) first, with
 * cudaMemcpyAsync on `stream`: from pageable host memory the runtime stages the data before it returns, so
 * the caller may reuse its array at once. Pinned (page-locked) host memory would be read asynchronously, so
 * it is first copied into a pageable temporary to keep that promise. */
static hope_status_t fill_device(struct hope_rope_cache_s *c, int64_t offset, const float *positions, int64_t n,
                                 int64_t ld, hope_memory_t positions_memory, void *stream, const char *fn) {
  cudaStream_t s = (cudaStream_t)stream;
  hopei_cache_fill_args_t args;
  args.cos = c->cos;
  args.sin = c->sin;
  args.offset = offset;
  args.n = n;
  args.inv_freq = c->d_inv_freq;
  args.components = c->d_components;
  args.half = c->half;
  if (positions_memory == HOPE_MEMORY_DEVICE) {
    HOPEI_CHECK(hopei_pointer_memory(positions) == HOPE_MEMORY_DEVICE,
                "%s: positions_memory is HOPE_MEMORY_DEVICE but positions is not a device pointer", fn);
    args.positions = positions;
    args.positions_ld = ld;
    return hopei_rope_cache_fill_cuda(&args, stream);
  }
  struct cudaPointerAttributes attr;
  cudaError_t e = cudaPointerGetAttributes(&attr, positions);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    attr.type = cudaMemoryTypeUnregistered;
  }
  HOPEI_CHECK(attr.type != cudaMemoryTypeDevice,
              "%s: positions_memory is HOPE_MEMORY_HOST but positions is a device pointer", fn);
  HOPEI_TRY(hopei_rope_check_positions(fn, c->components, c->half, positions, ld, n));
  const float *src = positions;
  int64_t src_ld = ld;
  float *tmp = NULL;
  if (attr.type == cudaMemoryTypeHost || attr.type == cudaMemoryTypeManaged) {
    tmp = (float *)malloc((size_t)n * 3 * sizeof(float));
    if (tmp == NULL) return hopei_fail(HOPE_ERROR_OUT_OF_MEMORY, "%s: could not allocate %lld host positions", fn,
                                       (long long)(3 * n));
    for (int r = 0; r < 3; ++r) memcpy(tmp + r * n, positions + r * ld, (size_t)n * sizeof(float));
    src = tmp;
    src_ld = n;
  }
  e = cudaSuccess;
  for (int r = 0; r < 3 && e == cudaSuccess; ++r) /* one copy per row: no 2-D pitch limit to meet */
    e = cudaMemcpyAsync(c->d_positions + r * c->capacity + offset, src + r * src_ld, (size_t)n * sizeof(float),
                        cudaMemcpyHostToDevice, s);
  free(tmp); /* pageable: staged by the runtime before cudaMemcpyAsync returned */
  if (e != cudaSuccess) return hopei_cuda_fail(e, fn, "copying the host positions to the device");
  args.positions = c->d_positions + offset;
  args.positions_ld = c->capacity;
  return hopei_rope_cache_fill_cuda(&args, stream);
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
              "%s: rows [offset %lld, offset + n %lld) exceed the capacity %lld", kFn, (long long)offset,
              (long long)n, (long long)c->capacity);
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
      return fill_host_from_device(c, offset, positions, n, ld, stream, kFn);
    HOPEI_TRY(hopei_rope_check_positions(kFn, c->components, c->half, positions, ld, n));
    hopei_rope_cos_sin_host(c->half, c->components, c->inv_freq, positions, ld, n, c->cos + offset * c->half,
                            c->sin + offset * c->half);
    return HOPE_SUCCESS;
  }
  HOPEI_TRY(hopei_require_device(kFn));
  device_guard_t guard;
  HOPEI_TRY(device_enter(c, kFn, &guard));
  hope_status_t st = fill_device(c, offset, positions, n, ld, positions_memory, stream, kFn);
  device_leave(&guard);
  return st;
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
  if (cache->memory == HOPE_MEMORY_HOST) {
    (void)free_cache(cache);
    return HOPE_SUCCESS;
  }
  /* Work queued on any stream may still read or write the tables: wait for the device, then free. */
  device_guard_t guard;
  hope_status_t st = device_enter(cache, kFn, &guard);
  cudaError_t sync = st == HOPE_SUCCESS ? cudaDeviceSynchronize() : cudaSuccess;
  cudaError_t freed = free_cache(cache);
  if (st == HOPE_SUCCESS) device_leave(&guard);
  if (st != HOPE_SUCCESS) return st;
  if (sync != cudaSuccess) return hopei_cuda_fail(sync, kFn, "cudaDeviceSynchronize");
  if (freed != cudaSuccess) return hopei_cuda_fail(freed, kFn, "cudaFree");
  return HOPE_SUCCESS;
}
