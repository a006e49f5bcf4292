/* rope_cache.h — the cos/sin cache object, shared by rope_cache.c (the object, its checks and the host tables)
 * and its device half, csrc/cuda/rope_cache_device.c (csrc/no_cuda.c in a build without CUDA). */
#ifndef HOPE_ROPE_CACHE_H_
#define HOPE_ROPE_CACHE_H_

#include "internal.h"

#ifdef __cplusplus
extern "C" {
#endif

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

/* Device cache: allocates the device tables on the current device and uploads components / inv_freq (set by
 * the caller). On failure everything it allocated is released again and the status says why. */
hope_status_t hopei_rope_cache_device_create(struct hope_rope_cache_s *c, const char *fn);
/* Device cache: waits for the device, then frees the device tables (all of them, even after an error); the
 * first error met is the status. The host parts stay for the caller to free. */
hope_status_t hopei_rope_cache_device_release(struct hope_rope_cache_s *c, const char *fn);
/* Device cache: rows [offset, offset + n) from positions (host or device memory) on `stream`, on the cache's
 * device. Arguments already checked by hope_rope_cache_fill. */
hope_status_t hopei_rope_cache_device_fill(struct hope_rope_cache_s *c, int64_t offset, const float *positions,
                                           int64_t n, int64_t ld, hope_memory_t positions_memory, void *stream,
                                           const char *fn);
/* Host cache, positions in device memory: copies them back on `stream`, waits, computes on the host. */
hope_status_t hopei_rope_cache_host_fill_from_device(struct hope_rope_cache_s *c, int64_t offset,
                                                     const float *positions, int64_t n, int64_t ld, void *stream,
                                                     const char *fn);

#ifdef __cplusplus
}
#endif

#endif /* HOPE_ROPE_CACHE_H_ */
