// sm90_util.cuh — pieces the sm_90 known-answer tests (ptx_sm90_kat.cu) and the emulator's sm_90 hazard tests
// (emu_hazards.cu) share.
#pragma once

#include <cstdint>

#include "attention/ptx_sm90.cuh"

namespace hope_test {

// The dynamic shared memory aligned up to 1024 bytes, the repeat of the 128-byte swizzle (launch with 1024 bytes
// of slack).
__device__ __forceinline__ unsigned char *smem_aligned_1024(unsigned char *raw) {
  return raw + ((1024u - (hope::smem_addr(raw) & 1023u)) & 1023u);
}

// Thread 0 initialises the mbarrier for `count` arrivals; every thread of the block sees it after the barrier.
__device__ __forceinline__ void init_mbarrier_for_block(uint64_t *bar, uint32_t count) {
  if (threadIdx.x == 0) {
    hope::sm90::mbarrier_init(bar, count);
    hope::sm90::mbarrier_init_fence();
  }
  __syncthreads();
}

}  // namespace hope_test
