// cp_async.cuh — the sm_80+ asynchronous global -> shared copy (cp.async, 16 bytes, zero-filling) with its
// commit and wait, shared by the fused attention and the paged decode kernels. The "memory" clobbers keep the
// compiler from moving shared-memory accesses across the copy, commit and wait.
#pragma once

#include <cstdint>

namespace hope {

// The shared-memory (state space) address of a generic pointer into shared memory.
__device__ __forceinline__ uint32_t smem_addr(const void *p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// 16-byte copy that bypasses L1; reads src_bytes (0 or 16) bytes and zero-fills the rest, so src_bytes 0
// reads nothing and writes 16 zero bytes (`gmem` must still be a valid address expression).
__device__ __forceinline__ void cp_async_16_bytes(uint32_t dst, const void *gmem, int src_bytes) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(gmem), "r"(src_bytes)
               : "memory");
}
// The same with a shared-memory address and a validity flag (false: zero-fill, read nothing).
__device__ __forceinline__ void cp_async_16(uint32_t dst, const void *gmem, bool valid) {
  cp_async_16_bytes(dst, gmem, valid ? 16 : 0);
}
// The same with a generic pointer into shared memory and a byte count (0 or 16).
__device__ __forceinline__ void cp_async_16(void *smem, const void *gmem, int src_bytes) {
  cp_async_16_bytes(smem_addr(smem), gmem, src_bytes);
}

__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
// Waits until at most N of this thread's committed groups are still in flight.
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

}  // namespace hope
