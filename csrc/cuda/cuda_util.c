/* cuda_util.c — device discovery and CUDA error mapping for the host side (CUDA builds; csrc/no_cuda.c stands in
 * for this file in a build without CUDA). */
#include <pthread.h>

#include <cuda_runtime_api.h>

#include "internal.h"

static pthread_once_t g_device_once = PTHREAD_ONCE_INIT;
static int g_device_count;
static cudaError_t g_device_error;

static void probe_devices(void) {
  int count = 0;
  g_device_error = cudaGetDeviceCount(&count);
  g_device_count = g_device_error == cudaSuccess ? count : 0;
  if (g_device_error != cudaSuccess) (void)cudaGetLastError(); /* clear the sticky-free error state */
}

int hopei_cuda_device_count(void) {
  pthread_once(&g_device_once, probe_devices);
  return g_device_count;
}

hope_status_t hopei_require_device(const char *fn) {
  pthread_once(&g_device_once, probe_devices);
  if (g_device_count > 0) return HOPE_SUCCESS;
  return hopei_fail(HOPE_ERROR_NO_DEVICE, "%s: the CUDA backend needs a GPU, but none is usable (%s); use "
                    "HOPE_BACKEND_CPU on this machine", fn,
                    g_device_error == cudaSuccess ? "no CUDA device found" : cudaGetErrorString(g_device_error));
}

hope_status_t hopei_cuda_fail(int cuda_error, const char *fn, const char *what) {
  cudaError_t e = (cudaError_t)cuda_error;
  hope_status_t s = HOPE_ERROR_CUDA;
  if (e == cudaErrorMemoryAllocation) s = HOPE_ERROR_OUT_OF_MEMORY;
  else if (e == cudaErrorNoDevice || e == cudaErrorInsufficientDriver) s = HOPE_ERROR_NO_DEVICE;
  return hopei_fail(s, "%s: %s failed: %s (%s)", fn, what, cudaGetErrorString(e), cudaGetErrorName(e));
}

hope_memory_t hopei_pointer_memory(const void *ptr) {
  struct cudaPointerAttributes attr;
  if (ptr == NULL || hopei_require_device("pointer query") != HOPE_SUCCESS) return HOPE_MEMORY_HOST;
  if (cudaPointerGetAttributes(&attr, ptr) != cudaSuccess) {
    (void)cudaGetLastError();
    return HOPE_MEMORY_HOST;
  }
  return (attr.type == cudaMemoryTypeDevice || attr.type == cudaMemoryTypeManaged) ? HOPE_MEMORY_DEVICE
                                                                                   : HOPE_MEMORY_HOST;
}

int hopei_device_sm_count(void) {
  enum { kMaxDevices = 64 };
  static int cached[kMaxDevices]; /* benign race: every writer stores the same value */
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess || dev < 0 || dev >= kMaxDevices) {
    (void)cudaGetLastError();
    return 0;
  }
  int v = __atomic_load_n(&cached[dev], __ATOMIC_RELAXED);
  if (v > 0) return v;
  if (cudaDeviceGetAttribute(&v, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess) {
    (void)cudaGetLastError();
    return 0;
  }
  __atomic_store_n(&cached[dev], v, __ATOMIC_RELAXED);
  return v;
}
