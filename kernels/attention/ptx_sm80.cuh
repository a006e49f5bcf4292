// ptx_sm80.cuh — the few Ampere-generation (sm_80+) PTX instructions the fused attention kernel uses:
// cp.async (16-byte, zero-filling), ldmatrix (x1/x2/x4, plain and transposed) and the m16n8k16 tensor-core mma
// for float16 and bfloat16 with float32 accumulation, plus packing helpers. Written for this library; no
// CUTLASS/CuTe dependency. Fragment layouts are those of the PTX ISA ("Matrix Fragments for mma.m16n8k16"):
// with g = lane / 4 and t = lane % 4,
//   A (16x16, row):  a0 = (g, 2t..2t+1), a1 = (g+8, 2t..), a2 = (g, 2t+8..), a3 = (g+8, 2t+8..)
//   B (16x8,  col):  b0 = (k 2t..2t+1, n g), b1 = (k 2t+8..2t+9, n g)
//   C (16x8,  f32):  c0,c1 = (g, 2t..2t+1), c2,c3 = (g+8, 2t..2t+1)
#pragma once

#include <cstdint>

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "common/cp_async.cuh"
#include "common/vec.cuh"

namespace hope {
namespace ptx {

// cp.async (with its "memory" clobbers) and the pack/unpack helpers live in kernels/common/.
using hope::cp_async_16;
using hope::cp_async_commit;
using hope::cp_async_wait;
using hope::pack2;
using hope::smem_addr;
using hope::unpack2;

// One or two 8x8 b16 matrices (lanes 0-7, and 8-15, give the row addresses), plain and transposed. The
// kernels use x4; these complete the instruction's variants for the known-answer tests (tests/kat/).
__device__ __forceinline__ void ldmatrix_x1(uint32_t &r, uint32_t addr HOPE_EMU_SITE_PARAM) {
#ifdef HOPE_EMULATED_DEVICE
  ::hope::emu::ldmatrix(&r, 1, false, addr, site_);
#else
  asm volatile("ldmatrix.sync.aligned.m8n8.x1.shared.b16 {%0}, [%1];\n" : "=r"(r) : "r"(addr));
#endif
}
__device__ __forceinline__ void ldmatrix_x1_trans(uint32_t &r, uint32_t addr HOPE_EMU_SITE_PARAM) {
#ifdef HOPE_EMULATED_DEVICE
  ::hope::emu::ldmatrix(&r, 1, true, addr, site_);
#else
  asm volatile("ldmatrix.sync.aligned.m8n8.x1.trans.shared.b16 {%0}, [%1];\n" : "=r"(r) : "r"(addr));
#endif
}
__device__ __forceinline__ void ldmatrix_x2(uint32_t (&r)[2], uint32_t addr HOPE_EMU_SITE_PARAM) {
#ifdef HOPE_EMULATED_DEVICE
  ::hope::emu::ldmatrix(r, 2, false, addr, site_);
#else
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0, %1}, [%2];\n" : "=r"(r[0]), "=r"(r[1]) : "r"(addr));
#endif
}
__device__ __forceinline__ void ldmatrix_x2_trans(uint32_t (&r)[2], uint32_t addr HOPE_EMU_SITE_PARAM) {
#ifdef HOPE_EMULATED_DEVICE
  ::hope::emu::ldmatrix(r, 2, true, addr, site_);
#else
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0, %1}, [%2];\n"
               : "=r"(r[0]), "=r"(r[1])
               : "r"(addr));
#endif
}

// Four 8x8 b16 matrices; lanes 8j..8j+7 give the row addresses of matrix j, register j receives matrix j.
__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], uint32_t addr HOPE_EMU_SITE_PARAM) {
#ifdef HOPE_EMULATED_DEVICE
  ::hope::emu::ldmatrix(r, 4, false, addr, site_);
#else
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
#endif
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], uint32_t addr HOPE_EMU_SITE_PARAM) {
#ifdef HOPE_EMULATED_DEVICE
  ::hope::emu::ldmatrix(r, 4, true, addr, site_);
#else
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
#endif
}

// D = A * B + D, m16n8k16, float32 accumulators, element type T (__half or __nv_bfloat16).
template <typename T>
__device__ __forceinline__ void mma_16816(float (&d)[4], const uint32_t (&a)[4], uint32_t b0,
                                          uint32_t b1 HOPE_EMU_SITE_PARAM);

#ifdef HOPE_EMULATED_DEVICE
template <>
__device__ __forceinline__ void mma_16816<__half>(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1,
                                                  ::hope::emu::Site site_) {
  const uint32_t b[2] = {b0, b1};
  ::hope::emu::mma_m16n8k16(d, a, b, d, ::hope::emu::kMmaF16, site_);
}
template <>
__device__ __forceinline__ void mma_16816<__nv_bfloat16>(float (&d)[4], const uint32_t (&a)[4], uint32_t b0,
                                                         uint32_t b1, ::hope::emu::Site site_) {
  const uint32_t b[2] = {b0, b1};
  ::hope::emu::mma_m16n8k16(d, a, b, d, ::hope::emu::kMmaBF16, site_);
}
#else
template <>
__device__ __forceinline__ void mma_16816<__half>(float (&d)[4], const uint32_t (&a)[4], uint32_t b0,
                                                  uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
template <>
__device__ __forceinline__ void mma_16816<__nv_bfloat16>(float (&d)[4], const uint32_t (&a)[4], uint32_t b0,
                                                         uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
#endif

}  // namespace ptx
}  // namespace hope
