/* rope_cache_device.c — the CUDA half of the cos/sin caches (rope_cache.c holds the object and the host tables):
 * device tables, their fill through hopei_rope_cache_fill_cuda (kernels/rope/cache_fill.cu, angle and sin/cos
 * in double, like the host), and device positions read back for a host cache. */
#include <stdlib.h>
#include <string.h>

#include <cuda_runtime_api.h>

#include "rope/launch.h"
#include "rope/rope_host.h"
#include "rope_cache.h"

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

/* Frees every device table (NULL ones skipped) and clears the pointers; returns the first CUDA error met. */
static cudaError_t free_device_tables(struct hope_rope_cache_s *c) {
  cudaError_t first = cudaSuccess;
  void **dev_ptrs[5] = {(void **)&c->cos, (void **)&c->sin, (void **)&c->d_components, (void **)&c->d_inv_freq,
                        (void **)&c->d_positions};
  for (int i = 0; i < 5; ++i) {
    if (*dev_ptrs[i] == NULL) continue;
    cudaError_t e = cudaFree(*dev_ptrs[i]);
    if (e != cudaSuccess && first == cudaSuccess) first = e;
    *dev_ptrs[i] = NULL;
  }
  return first;
}

static hope_status_t oom(const char *fn, const char *what, struct hope_rope_cache_s *c) {
  (void)cudaGetLastError(); /* a failed cudaMalloc is not sticky: clear it */
  (void)free_device_tables(c);
  return hopei_fail(HOPE_ERROR_OUT_OF_MEMORY, "%s: could not allocate %s", fn, what);
}

hope_status_t hopei_rope_cache_device_create(struct hope_rope_cache_s *c, const char *fn) {
  const size_t table_bytes = (size_t)c->capacity * (size_t)c->half * sizeof(float);
  const size_t pos_bytes = (size_t)c->capacity * 3 * sizeof(float);
  cudaError_t e = cudaGetDevice(&c->device);
  if (e != cudaSuccess) return hopei_cuda_fail(e, fn, "cudaGetDevice");
  if (cudaMalloc((void **)&c->cos, table_bytes) != cudaSuccess) return oom(fn, "the device cos table", c);
  if (cudaMalloc((void **)&c->sin, table_bytes) != cudaSuccess) return oom(fn, "the device sin table", c);
  if (cudaMalloc((void **)&c->d_components, (size_t)c->half * sizeof(int32_t)) != cudaSuccess)
    return oom(fn, "the device component map", c);
  if (cudaMalloc((void **)&c->d_inv_freq, (size_t)c->half * sizeof(double)) != cudaSuccess)
    return oom(fn, "the device inverse frequencies", c);
  if (cudaMalloc((void **)&c->d_positions, pos_bytes) != cudaSuccess)
    return oom(fn, "the device position staging rows", c);
  e = cudaMemcpy(c->d_components, c->components, (size_t)c->half * sizeof(int32_t), cudaMemcpyHostToDevice);
  if (e == cudaSuccess)
    e = cudaMemcpy(c->d_inv_freq, c->inv_freq, (size_t)c->half * sizeof(double), cudaMemcpyHostToDevice);
  if (e != cudaSuccess) {
    (void)free_device_tables(c);
    return hopei_cuda_fail(e, fn, "cudaMemcpy of the frequency tables");
  }
  return HOPE_SUCCESS;
}

hope_status_t hopei_rope_cache_device_release(struct hope_rope_cache_s *c, const char *fn) {
  /* Work queued on any stream may still read or write the tables: wait for the device, then free. */
  device_guard_t guard;
  hope_status_t st = device_enter(c, fn, &guard);
  cudaError_t sync = st == HOPE_SUCCESS ? cudaDeviceSynchronize() : cudaSuccess;
  cudaError_t freed = free_device_tables(c);
  if (st != HOPE_SUCCESS) return st;
  device_leave(&guard);
  if (sync != cudaSuccess) return hopei_cuda_fail(sync, fn, "cudaDeviceSynchronize");
  if (freed != cudaSuccess) return hopei_cuda_fail(freed, fn, "cudaFree");
  return HOPE_SUCCESS;
}

hope_status_t hopei_rope_cache_host_fill_from_device(struct hope_rope_cache_s *c, int64_t offset,
                                                     const float *positions, int64_t n, int64_t ld, void *stream,
                                                     const char *fn) {
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

/* Host positions are copied into the cache's staging rows [offset, offset + n) first, with cudaMemcpyAsync on
 * `stream`: from pageable host memory the runtime stages the data before it returns, so the caller may reuse
 * its array at once. Pinned (page-locked) host memory would be read asynchronously, so it is first copied into
 * a pageable temporary to keep that promise. */
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

hope_status_t hopei_rope_cache_device_fill(struct hope_rope_cache_s *c, int64_t offset, const float *positions,
                                           int64_t n, int64_t ld, hope_memory_t positions_memory, void *stream,
                                           const char *fn) {
  HOPEI_TRY(hopei_require_device(fn));
  device_guard_t guard;
  HOPEI_TRY(device_enter(c, fn, &guard));
  hope_status_t st = fill_device(c, offset, positions, n, ld, positions_memory, stream, fn);
  device_leave(&guard);
  return st;
}
