// cp_async.cuh — the sm_80+ asynchronous global -> shared copy (cp.async, 16 bytes, zero-filling) with its
// commit and wait, shared by the fused attention and the paged decode kernels. The "memory" clobbers keep the
// compiler from moving shared-memory accesses across the copy, commit and wait. Under HOPE_EMULATED_DEVICE
// each wrapper calls the emulated instruction instead (emulator/src/ptx_sm80.cc), with the kernel's line.
#pragma once

#include <cstdint>

#ifdef HOPE_EMULATED_DEVICE
#include "hope_emu/exec.h"
// A trailing parameter that records the caller's file and line in emulated builds (nothing on the GPU).
#define HOPE_EMU_SITE_PARAM , ::hope::emu::Site site_ = ::hope::emu::Site::here()
#define HOPE_EMU_SITE_PARAM_FIRST ::hope::emu::Site site_ = ::hope::emu::Site::here()
#else
#define HOPE_EMU_SITE_PARAM
#define HOPE_EMU_SITE_PARAM_FIRST
#endif

namespace hope {

// The shared-memory (state space) address of a generic pointer into shared memory.
__device__ __forceinline__ uint32_t smem_addr(const void *p HOPE_EMU_SITE_PARAM) {
#ifdef HOPE_EMULATED_DEVICE
  return ::hope::emu::shared_address(p, site_);
#else
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
#endif
}

// 16-byte copy that bypasses L1; reads src_bytes (0 or 16) bytes and zero-fills the rest, so src_bytes 0
// reads nothing and writes 16 zero bytes (`gmem` must still be a valid address expression).
__device__ __forceinline__ void cp_async_16_bytes(uint32_t dst, const void *gmem, int src_bytes HOPE_EMU_SITE_PARAM) {
#ifdef HOPE_EMULATED_DEVICE
  ::hope::emu::cp_async(dst, gmem, 16, src_bytes, site_);
#else
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(gmem), "r"(src_bytes)
               : "memory");
#endif
}
// The same with a shared-memory address and a validity flag (false: zero-fill, read nothing).
__device__ __forceinline__ void cp_async_16(uint32_t dst, const void *gmem, bool valid HOPE_EMU_SITE_PARAM) {
#ifdef HOPE_EMULATED_DEVICE
  cp_async_16_bytes(dst, gmem, valid ? 16 : 0, site_);
#else
  cp_async_16_bytes(dst, gmem, valid ? 16 : 0);
#endif
}
// The same with a generic pointer into shared memory and a byte count (0 or 16).
__device__ __forceinline__ void cp_async_16(void *smem, const void *gmem, int src_bytes HOPE_EMU_SITE_PARAM) {
#ifdef HOPE_EMULATED_DEVICE
  cp_async_16_bytes(smem_addr(smem, site_), gmem, src_bytes, site_);
#else
  cp_async_16_bytes(smem_addr(smem), gmem, src_bytes);
#endif
}

__device__ __forceinline__ void cp_async_commit(HOPE_EMU_SITE_PARAM_FIRST) {
#ifdef HOPE_EMULATED_DEVICE
  ::hope::emu::cp_async_commit_group(site_);
#else
  asm volatile("cp.async.commit_group;\n" ::: "memory");
#endif
}
// Waits until at most N of this thread's committed groups are still in flight.
template <int N>
__device__ __forceinline__ void cp_async_wait(HOPE_EMU_SITE_PARAM_FIRST) {
#ifdef HOPE_EMULATED_DEVICE
  ::hope::emu::cp_async_wait_group(N, site_);
#else
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
#endif
}

}  // namespace hope
