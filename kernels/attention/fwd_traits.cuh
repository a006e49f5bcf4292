// fwd_traits.cuh — every tile constant of the fused forward kernel (family sm80), derived from the head
// dimension and the element type, with the checks that keep them consistent. Host code (the planner) reads
// kBlockM, kNThreads and kSmemBytes from here without seeing the kernel.
#pragma once

#include <cstdint>

#include <cuda_bf16.h>
#include <cuda_fp16.h>

namespace hope {

// Default query tile: 128 rows up to hd 128, 64 rows for hd 256. The planner may pick the narrow 64-row
// variant (AttnTraits<D, T, 64>) when the wide one would not fill the device (see fused_launch.cu).
template <int HEAD_DIM>
constexpr int default_block_m() { return HEAD_DIM <= 128 ? 128 : 64; }
constexpr int kNarrowBlockM = 64;

template <int HEAD_DIM, typename T, int BLOCK_M = default_block_m<HEAD_DIM>()>
struct AttnTraits {
  using Element = T;
  static_assert(sizeof(T) == 2, "the tensor-core path takes float16 or bfloat16");
  static constexpr int kHeadDim = HEAD_DIM;
  static constexpr int kHalf = HEAD_DIM / 2;  // rotary pairs

  // One warp owns 16 query rows (one m16 slice); the CTA owns kBlockM rows and streams kBlockN keys at a
  // time. hd 256 halves both to keep the float32 output accumulator (HEAD_DIM / 2 floats per thread for
  // two rows) and shared memory in bounds.
  static constexpr int kBlockM = BLOCK_M;
  static constexpr int kBlockN = HEAD_DIM <= 128 ? 64 : 32;
  static constexpr int kNWarps = kBlockM / 16;
  static constexpr int kNThreads = kNWarps * 32;
  static constexpr int kStages = 2;  // K/V double buffering

  // Shared-memory rows are HEAD_DIM elements of 2 bytes, handled in 16-byte chunks (8 elements). The chunk
  // index is XOR-swizzled with (row % 8), so the 8 row addresses of every ldmatrix phase and every
  // cp.async wave hit 8 different 16-byte bank groups: no bank conflicts and no padding.
  static constexpr int kChunkElems = 8;
  static constexpr int kChunksPerRow = HEAD_DIM / kChunkElems;
  static constexpr int kHalfChunks = kChunksPerRow / 2;

  // MMA tiling: S = Q K^T is (16 x kBlockN) per warp = kNTilesN n8 tiles, k-steps of 16 over HEAD_DIM;
  // O += P V is (16 x HEAD_DIM) = kNTilesD n8 tiles, k-steps of 16 over kBlockN.
  static constexpr int kNTilesN = kBlockN / 8;
  static constexpr int kNTilesD = HEAD_DIM / 8;
  static constexpr int kKStepsD = HEAD_DIM / 16;
  static constexpr int kKStepsN = kBlockN / 16;

  // Shared memory, in elements: Q tile (reused to stage the output), then kStages K tiles, then kStages V.
  static constexpr int kQElems = kBlockM * HEAD_DIM;
  static constexpr int kKVElems = kBlockN * HEAD_DIM;
  static constexpr int kSmemQOffset = 0;
  static constexpr int kSmemKOffset = kQElems;
  static constexpr int kSmemVOffset = kSmemKOffset + kStages * kKVElems;
  static constexpr int kSmemBytes = (kSmemVOffset + kStages * kKVElems) * static_cast<int>(sizeof(T));

  // cp.async passes per tile: every thread moves the same number of 16-byte chunks.
  static constexpr int kQLoadIters = kBlockM * kChunksPerRow / kNThreads;
  static constexpr int kKVLoadIters = kBlockN * kChunksPerRow / kNThreads;

  static_assert(HEAD_DIM % 64 == 0, "the swizzle needs at least 8 chunks of 16 bytes per row");
  static_assert(kChunksPerRow % 8 == 0, "the swizzle permutes groups of 8 chunks");
  static_assert(kHalf % kChunkElems == 0, "rotary halves are handled in whole chunks");
  static_assert(kBlockM % 16 == 0 && kNWarps * 16 == kBlockM, "one warp per 16 query rows");
  static_assert(kBlockN % 16 == 0, "kBlockN is a whole number of mma k-steps");
  static_assert(kNThreads <= 1024, "CTA size");
  static_assert(kBlockM * kChunksPerRow % kNThreads == 0, "Q tile loads evenly over the CTA");
  static_assert(kBlockN * kChunksPerRow % kNThreads == 0, "K/V tile loads evenly over the CTA");
  static_assert(kSmemBytes <= 99 * 1024, "fits the opt-in shared memory of every sm_80+ part (sm_86/89: 99 KB)");

  // Element offset of the 16-byte chunk `chunk` of row `row` inside a tile.
  __host__ __device__ static constexpr int swizzle(int row, int chunk) {
    return row * HEAD_DIM + ((chunk ^ (row & 7)) * kChunkElems);
  }
};

}  // namespace hope
