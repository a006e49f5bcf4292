// fwd_traits.cuh — every constant of the warp-specialised Hopper forward kernel (family sm90), derived from the
// head dimension and the element type, with the checks that keep them consistent. The planner
// (fused_launch.cu) reads kBlockM, kThreads and kSmemBytes from here without seeing the kernel.
#pragma once

#include <cstdint>

#include <cuda_bf16.h>
#include <cuda_fp16.h>

namespace hope {
namespace sm90 {

template <int HEAD_DIM, typename T>
struct FwdTraits {
  using Element = T;
  static_assert(sizeof(T) == 2, "wgmma takes float16 or bfloat16 here");
  static constexpr int kHeadDim = HEAD_DIM;
  static constexpr int kHalf = HEAD_DIM / 2;  // rotary pairs

  // Warp roles: warpgroup 0 produces (warp 0 issues every TMA copy, warps 1-3 rotate landed K tiles when K is
  // rotated in-kernel), warpgroups 1 and 2 consume: each owns 64 query rows (the wgmma M) of the 128-row tile.
  static constexpr int kConsumerWarpgroups = 2;
  static constexpr int kRowsPerWarpgroup = 64;
  static constexpr int kBlockM = kConsumerWarpgroups * kRowsPerWarpgroup;
  static constexpr int kThreads = 128 * (1 + kConsumerWarpgroups);
  static constexpr int kConsumerThreads = 128 * kConsumerWarpgroups;
  static constexpr int kConsumerWarps = kConsumerThreads / 32;
  static constexpr int kRotateThreads = 96;  // producer warps 1-3
  // Keys per tile: the S = Q K^T wgmma is m64 n(kBlockN) k16; hd 256 halves it so that the float32 output
  // accumulator (hd / 2 floats a thread), S and P fit the consumers' registers and the stages fit shared memory.
  static constexpr int kBlockN = HEAD_DIM <= 128 ? 128 : 64;
  static constexpr int kStages = 2;  // K/V ring depth

  // Shared-memory tiles are stored as 64-column blocks (128 bytes a row, the 128-byte swizzle atom): tile
  // [rows][HEAD_DIM] lives as kColBlocks blocks of [rows][64], each filled by one TMA box.
  static constexpr int kColBlocks = HEAD_DIM / 64;
  static constexpr int kQBlockBytes = kBlockM * 128;
  static constexpr int kQBytes = kColBlocks * kQBlockBytes;
  static constexpr int kKVBlockBytes = kBlockN * 128;
  static constexpr int kKVBytes = kColBlocks * kKVBlockBytes;

  // Byte offsets from the 1024-byte-aligned base of dynamic shared memory (the swizzle pattern repeats every
  // 1024 bytes, so every tile starts on such a boundary).
  static constexpr int kOffQ = 0;
  static constexpr int kOffK = kOffQ + kQBytes;
  static constexpr int kOffV = kOffK + kStages * kKVBytes;
  static constexpr int kOffBarriers = kOffV + kStages * kKVBytes;

  // mbarriers (index into the uint64_t array at kOffBarriers) and their arrival counts:
  //   q_full     1 (the producer's arrive.expect_tx) + the Q bytes
  //   k_full[s]  1 + the K tile bytes              (TMA landed)
  //   k_ready[s] kRotateThreads                   (in-kernel K rotation done; consumers wait on it instead)
  //   k_empty[s] kConsumerWarps                   (every consumer warp's S = Q K^T read it)
  //   v_full[s]  1 + the V tile bytes
  //   v_empty[s] kConsumerWarps
  static constexpr int kBarQFull = 0;
  static constexpr int kBarKFull = 1;
  static constexpr int kBarKReady = kBarKFull + kStages;
  static constexpr int kBarKEmpty = kBarKReady + kStages;
  static constexpr int kBarVFull = kBarKEmpty + kStages;
  static constexpr int kBarVEmpty = kBarVFull + kStages;
  static constexpr int kNumBarriers = kBarVEmpty + kStages;
  // + 1024: slack to align the base of dynamic shared memory up to 1024 bytes.
  static constexpr int kSmemBytes = kOffBarriers + kNumBarriers * 8 + 1024;

  // wgmma: S (64 x kBlockN) = Q (64 x HEAD_DIM) K^T in kQKSteps k16 steps, both operands K-major in shared
  // memory; O (64 x HEAD_DIM) += P (64 x kBlockN, registers) V (kBlockN x HEAD_DIM, N-major) in kPVSteps.
  static constexpr int kSAcc = kBlockN / 2;   // float32 S accumulators per thread
  static constexpr int kOAcc = HEAD_DIM / 2;  // float32 O accumulators per thread
  static constexpr int kQKSteps = HEAD_DIM / 16;
  static constexpr int kPVSteps = kBlockN / 16;

  // Registers per thread after setmaxnreg. The kernel starts with kLaunchRegs (65536 / kThreads, rounded down
  // to the allocation granule of 8; __launch_bounds__(kThreads, 1) caps the compiler there), and
  // setmaxnreg.inc only hands out what setmaxnreg.dec released in the same CTA. 232 keeps hd 256's consumers
  // free of spills; the producer warps' K rotation fits 40 in 4-pair items.
  static constexpr int kLaunchRegs = 65536 / kThreads / 8 * 8;
  static constexpr int kProducerRegs = 40;
  static constexpr int kConsumerRegs = 232;

  // Named barriers (id 0 is __syncthreads'): the issue turn of consumer warpgroup c is kBarIdTurn + c (both
  // consumer warpgroups take part: 256 threads); kBarIdWarpgroup + c syncs warpgroup c alone (128 threads).
  static constexpr uint32_t kBarIdTurn = 1;
  static constexpr uint32_t kBarIdWarpgroup = 3;
  // Ping-pong: the two consumer warpgroups take turns issuing their wgmma, so one's softmax overlaps the
  // other's matrix products (FlashAttention-3 §3.1). With hd 256 the products dominate and the turn-taking
  // only serialises, so it is off there.
  static constexpr bool kPingPong = HEAD_DIM <= 128;

  static_assert(HEAD_DIM == 64 || HEAD_DIM == 128 || HEAD_DIM == 256, "head_dim 64, 128 or 256");
  static_assert(kHalf % 8 == 0, "rotary halves are rotated in 8-pair chunks");
  static_assert(kBlockN % 16 == 0 && kBlockN >= 16 && kBlockN <= 256, "wgmma N of S");
  static_assert(HEAD_DIM <= 256, "wgmma N of O");
  static_assert(kQBlockBytes % 1024 == 0 && kKVBlockBytes % 1024 == 0, "tiles stay 1024-byte aligned");
  static_assert(kOffBarriers % 8 == 0, "mbarriers are 8-byte aligned");
  static_assert(kSmemBytes <= 227 * 1024, "fits the 227 KB a Hopper block may opt in to");
  static_assert(128 * kProducerRegs + kConsumerThreads * kConsumerRegs <= kThreads * kLaunchRegs,
                "setmaxnreg redistributes the CTA's registers, it adds none");
  static_assert(kBlockM * HEAD_DIM * 2 <= kQBytes, "the Q tile stages the output");
};

}  // namespace sm90
}  // namespace hope
