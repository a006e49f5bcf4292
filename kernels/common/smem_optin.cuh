// smem_optin.cuh — the per-device opt-in a kernel needs before it may use more than 48 KB of dynamic shared
// memory, done once per (kernel, device) and never again on the hot path.
#pragma once

#include <atomic>
#include <cstdint>

#include <cuda_runtime.h>

#include "../../csrc/internal.h"

namespace hope {

// Raises `kernel`'s dynamic shared-memory limit to `bytes` on the current device unless `configured` (one
// static per kernel, a bit per device) says it was done. The bit is set only after the attribute call
// succeeded; two threads racing both set it, which is harmless.
template <typename Kernel>
hope_status_t opt_in_dynamic_smem(std::atomic<uint64_t> &configured, Kernel *kernel, int bytes, const char *fn) {
  if (bytes <= 48 * 1024) return HOPE_SUCCESS;
  int device = 0;
  cudaError_t e = cudaGetDevice(&device);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();  // leave no stale error for the next caller's cudaGetLastError()
    return hopei_cuda_fail(e, fn, "cudaGetDevice");
  }
  const uint64_t bit = device >= 0 && device < 64 ? (uint64_t{1} << device) : 0;
  if (bit != 0 && (configured.load(std::memory_order_acquire) & bit) != 0) return HOPE_SUCCESS;
  e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    return hopei_cuda_fail(e, fn, "cudaFuncSetAttribute(max dynamic shared memory)");
  }
  configured.fetch_or(bit, std::memory_order_release);
  return HOPE_SUCCESS;
}

}  // namespace hope
