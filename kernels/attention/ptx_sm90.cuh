// ptx_sm90.cuh — the Hopper (sm_90a) instructions of the warp-specialised fused attention kernel, each behind
// one small wrapper, so that no kernel contains inline PTX (kernels/common/launch.cuh explains the seam):
//   * mbarrier (PTX ISA §9.7.13.15): init, arrive, arrive.expect_tx, and a wait that blocks (try_wait.parity
//     loop) — a kernel never spins on a barrier itself;
//   * TMA tile copies (cp.async.bulk.tensor, §9.7.9.25) completing on an mbarrier, the descriptor prefetch, and
//     the host side: CUtensorMap built with cuTensorMapEncodeTiled, reached through
//     cudaGetDriverEntryPointByVersion so that nothing links libcuda;
//   * the proxy fence (fence.proxy.async, §9.7.12.4) that orders generic-proxy shared-memory writes before
//     wgmma / TMA (async proxy) reads them;
//   * named barriers (bar.sync / bar.arrive, §9.7.13.1) with explicit ids and thread counts;
//   * setmaxnreg (§9.7.19.5) to move registers from the producer warpgroup to the consumers;
//   * wgmma (§9.7.15): fence, commit_group, wait_group, m64nNk16 with both operands in shared memory (SS) or
//     A in registers (RS), float32 accumulators, float16 / bfloat16 inputs, and the shared-memory matrix
//     descriptors (§9.7.15.5.1.2) of the 128-byte swizzle mode the kernel uses.
// Written for this library from the PTX ISA; no CUTLASS/CuTe dependency. Under HOPE_EMULATED_DEVICE each wrapper
// calls the emulated instruction instead (emulator/src/ptx_sm90.cc), with the kernel's line (HOPE_EMU_SITE_PARAM).
//
// Accumulators are always passed as arrays by reference: wgmma_* writes them asynchronously, and they are
// defined again only after the wgmma_wait<> that retires their group. wgmma_wait<> and wgmma_fence_operands
// take the arrays too, so that the compiler cannot move an access to an accumulator register across the
// wait (or a write of it past wgmma_arrive), and so that an emulator can poison them in between.
//
// Layouts (PTX ISA §9.7.15.5.1): with w = warp index in the warpgroup, g = lane / 4, t = lane % 4,
//   accumulator D (m64nN, f32): d[4j + 0..1] = (row 16w + g,     cols 8j + 2t, 8j + 2t + 1)
//                               d[4j + 2..3] = (row 16w + g + 8, cols 8j + 2t, 8j + 2t + 1)
//   A in registers (m64k16, 16-bit): a0 = (16w + g, 2t..2t+1), a1 = (16w + g + 8, 2t..2t+1),
//                               a2 = (16w + g, 2t+8..2t+9),  a3 = (16w + g + 8, 2t+8..2t+9)
//   shared memory, 128-byte swizzle: rows of 128 bytes, 8-row groups of 1024 bytes (1024-byte aligned); the
//   16-byte unit u of row r lives at unit u ^ (r % 8) (sw128_offset below). K-major operands (A = Q, B = K)
//   advance 32 bytes per k16 step inside a row; an MN-major B (V) advances 16 rows (2048 bytes) per k16 step.
#pragma once

#include <cstdint>
#include <type_traits>

#include <cuda.h>  // CUtensorMap and its enums only: types, no libcuda symbol is referenced
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "common/cp_async.cuh"  // smem_addr, HOPE_EMU_SITE_PARAM

namespace hope {
namespace sm90 {

// ---- TMA descriptor (CUtensorMap): 128 opaque bytes, 64-byte aligned, passed to kernels by value inside a
// __grid_constant__ parameter so its address is a valid tensor-map address. ----------------------------------
struct alignas(64) TmaDescriptor {
  unsigned char bytes[128];
};
static_assert(sizeof(TmaDescriptor) == sizeof(CUtensorMap), "TmaDescriptor mirrors CUtensorMap");

// ---- host: tensor maps -----------------------------------------------------------------------------------------
// cuTensorMapEncodeTiled from the driver the runtime already loaded (no libcuda link); nullptr when the driver
// does not offer it. Resolved once per process.
using TensorMapEncodeTiledFn = CUresult (*)(CUtensorMap *, CUtensorMapDataType, cuuint32_t, void *,
                                            const cuuint64_t *, const cuuint64_t *, const cuuint32_t *,
                                            const cuuint32_t *, CUtensorMapInterleave, CUtensorMapSwizzle,
                                            CUtensorMapL2promotion, CUtensorMapFloatOOBfill);
inline TensorMapEncodeTiledFn tensor_map_encoder() {
  static const TensorMapEncodeTiledFn fn = [] {
    void *p = nullptr;
    cudaDriverEntryPointQueryResult found = cudaDriverEntryPointSymbolNotFound;
    const cudaError_t e =
        cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &p, 12000, cudaEnableDefault, &found);
    if (e != cudaSuccess) (void)cudaGetLastError();  // leave no stale error behind
    return e == cudaSuccess && found == cudaDriverEntryPointSuccess ? reinterpret_cast<TensorMapEncodeTiledFn>(p)
                                                                    : nullptr;
  }();
  return fn;
}

// A tensor map over a row-major 16-bit tensor seen as [rows][col_blocks][64]: `rows` rows (tokens) that are
// `row_stride_bytes` apart (a multiple of 16), each holding col_blocks blocks of 64 elements (128 bytes; e.g.
// heads * head_dim / 64). Dimensions, innermost first: (64 elements, col_blocks, rows), strides (128 bytes,
// row_stride_bytes). A copy of the box (64, 1, box_rows) at coordinates (0, block, row0) lands in shared memory
// as box_rows rows of 128 bytes with the 128-byte swizzle (sw128_offset); rows outside [0, rows) read as zero.
// Returns CUDA_SUCCESS or the encoder's error (CUDA_ERROR_NOT_SUPPORTED when the driver has no encoder).
inline CUresult make_tensor_map_rows_sw128(TmaDescriptor *desc, const void *base, bool bfloat16, uint64_t rows,
                                           uint64_t col_blocks, uint64_t row_stride_bytes, uint32_t box_rows) {
  const TensorMapEncodeTiledFn encode = tensor_map_encoder();
  if (encode == nullptr) return CUDA_ERROR_NOT_SUPPORTED;
  const cuuint64_t dims[3] = {64, col_blocks, rows};
  const cuuint64_t strides[2] = {128, row_stride_bytes};  // bytes, of dimensions 1 and 2
  const cuuint32_t box[3] = {64, 1, box_rows};
  const cuuint32_t element_strides[3] = {1, 1, 1};
  return encode(reinterpret_cast<CUtensorMap *>(desc),
                bfloat16 ? CU_TENSOR_MAP_DATA_TYPE_BFLOAT16 : CU_TENSOR_MAP_DATA_TYPE_FLOAT16, 3,
                const_cast<void *>(base), dims, strides, box, element_strides, CU_TENSOR_MAP_INTERLEAVE_NONE,
                CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
}

// ---- 128-byte swizzle: byte offset of element `col` (16-bit elements, col < 64) of row `row` inside a tile of
// 128-byte rows whose base is 1024-byte aligned. TMA (CU_TENSOR_MAP_SWIZZLE_128B) writes this layout and the
// wgmma descriptors below read it. ---------------------------------------------------------------------------
__host__ __device__ constexpr uint32_t sw128_offset(int row, int col) {
  return static_cast<uint32_t>(row) * 128u + ((static_cast<uint32_t>(col >> 3) ^ (row & 7)) << 4) +
         (static_cast<uint32_t>(col & 7) << 1);
}

// ---- mbarrier ------------------------------------------------------------------------------------------------
__device__ __forceinline__ void mbarrier_init(uint64_t *bar, uint32_t arrive_count HOPE_EMU_SITE_PARAM) {
#ifdef HOPE_EMULATED_DEVICE
  ::hope::emu::mbarrier_init(smem_addr(bar, site_), arrive_count, site_);
#else
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(smem_addr(bar)), "r"(arrive_count) : "memory");
#endif
}
// Makes the initialisations above visible to the other threads and to the async proxy (TMA complete_tx);
// follow it with a CTA barrier before any thread uses the mbarriers. (The emulated mbarriers are visible at
// once: nothing to do.)
__device__ __forceinline__ void mbarrier_init_fence() {
#ifndef HOPE_EMULATED_DEVICE
  asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
#endif
}
__device__ __forceinline__ void mbarrier_arrive(uint64_t *bar HOPE_EMU_SITE_PARAM) {
#ifdef HOPE_EMULATED_DEVICE
  ::hope::emu::mbarrier_arrive(smem_addr(bar, site_), 0, site_);
#else
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(smem_addr(bar)) : "memory");
#endif
}
// Arrives and raises the phase's expected transaction count by `bytes` (the TMA copies that follow complete it).
__device__ __forceinline__ void mbarrier_arrive_expect_tx(uint64_t *bar, uint32_t bytes HOPE_EMU_SITE_PARAM) {
#ifdef HOPE_EMULATED_DEVICE
  ::hope::emu::mbarrier_arrive(smem_addr(bar, site_), bytes, site_);
#else
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(smem_addr(bar)), "r"(bytes)
               : "memory");
#endif
}
// True when the phase with parity `parity` has completed (a fresh barrier is in phase 0, so parity 1 — "the
// phase before" — counts as complete: that is how a producer's first wait on an empty slot passes). May return
// false before that (the instruction gives up after a time limit): callers loop.
__device__ __forceinline__ bool mbarrier_try_wait(uint64_t *bar, uint32_t parity HOPE_EMU_SITE_PARAM) {
#ifdef HOPE_EMULATED_DEVICE
  return ::hope::emu::mbarrier_try_wait_parity(smem_addr(bar, site_), parity, site_);
#else
  uint32_t done;
  asm volatile(
      "{\n"
      ".reg .pred p;\n"
      "mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n"
      "selp.u32 %0, 1, 0, p;\n"
      "}\n"
      : "=r"(done)
      : "r"(smem_addr(bar)), "r"(parity)
      : "memory");
  return done != 0;
#endif
}
// Blocks until the phase with parity `parity` of `bar` has completed (acquire: the data that phase guarded,
// TMA writes included, is visible afterwards).
__device__ __forceinline__ void mbarrier_wait(uint64_t *bar, uint32_t parity HOPE_EMU_SITE_PARAM) {
#ifdef HOPE_EMULATED_DEVICE
  while (!mbarrier_try_wait(bar, parity, site_)) {
  }
#else
  while (!mbarrier_try_wait(bar, parity)) {
  }
#endif
}

// ---- TMA -----------------------------------------------------------------------------------------------------
__device__ __forceinline__ void tma_prefetch_descriptor(const TmaDescriptor *desc HOPE_EMU_SITE_PARAM) {
#ifdef HOPE_EMULATED_DEVICE
  ::hope::emu::tma_prefetch_map(desc, site_);
#else
  asm volatile("prefetch.tensormap [%0];\n" ::"l"(reinterpret_cast<uint64_t>(desc)) : "memory");
#endif
}
// Copies the box at tensor coordinates (c0, c1, c2) (innermost first; out-of-range elements, negative
// coordinates included, are zero-filled) into shared memory at `dst`, and completes the box's byte count on
// `bar` (whose phase must expect it: mbarrier_arrive_expect_tx).
__device__ __forceinline__ void tma_load_3d(void *dst, const TmaDescriptor *desc, uint64_t *bar, int c0, int c1,
                                            int c2 HOPE_EMU_SITE_PARAM) {
#ifdef HOPE_EMULATED_DEVICE
  const int32_t coords[3] = {c0, c1, c2};
  ::hope::emu::tma_load_tile(smem_addr(dst, site_), desc, smem_addr(bar, site_), coords, 3, site_);
#else
  asm volatile(
      "cp.async.bulk.tensor.3d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [%0], [%1, {%3, %4, %5}], "
      "[%2];\n" ::"r"(smem_addr(dst)),
      "l"(reinterpret_cast<uint64_t>(desc)), "r"(smem_addr(bar)), "r"(c0), "r"(c1), "r"(c2)
      : "memory");
#endif
}

// ---- proxy fence: generic-proxy shared-memory writes by this thread become visible to the async proxy
// (wgmma operand reads, TMA) once a barrier orders them; every writing thread executes it before that barrier.
__device__ __forceinline__ void fence_proxy_async_smem(HOPE_EMU_SITE_PARAM_FIRST) {
#ifdef HOPE_EMULATED_DEVICE
  ::hope::emu::fence_proxy_async_shared(site_);
#else
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
#endif
}

// ---- named barriers (id 0 is __syncthreads'; `threads` is a multiple of 32 and counts every participant) ----
__device__ __forceinline__ void named_barrier_sync(uint32_t id, uint32_t threads HOPE_EMU_SITE_PARAM) {
#ifdef HOPE_EMULATED_DEVICE
  ::hope::emu::named_barrier(id, threads, true, site_);
#else
  asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
#endif
}
__device__ __forceinline__ void named_barrier_arrive(uint32_t id, uint32_t threads HOPE_EMU_SITE_PARAM) {
#ifdef HOPE_EMULATED_DEVICE
  ::hope::emu::named_barrier(id, threads, false, site_);
#else
  asm volatile("bar.arrive %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
#endif
}

// ---- setmaxnreg: every warp of the warpgroup executes the same one (the kernel needs a register cap at
// entry: __launch_bounds__(threads, 1)). ---------------------------------------------------------------------
template <int REGS>
__device__ __forceinline__ void setmaxnreg_inc(HOPE_EMU_SITE_PARAM_FIRST) {
  static_assert(REGS % 8 == 0 && REGS >= 24 && REGS <= 256, "setmaxnreg range");
#ifdef HOPE_EMULATED_DEVICE
  ::hope::emu::setmaxnreg(REGS, true, site_);
#else
  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(REGS));
#endif
}
template <int REGS>
__device__ __forceinline__ void setmaxnreg_dec(HOPE_EMU_SITE_PARAM_FIRST) {
  static_assert(REGS % 8 == 0 && REGS >= 24 && REGS <= 256, "setmaxnreg range");
#ifdef HOPE_EMULATED_DEVICE
  ::hope::emu::setmaxnreg(REGS, false, site_);
#else
  asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(REGS));
#endif
}

// ---- wgmma shared-memory matrix descriptor (§9.7.15.5.1.2.2): start address >> 4 in bits 0-13, leading
// byte offset >> 4 in 16-29, stride byte offset >> 4 in 32-45, base offset 0 (every tile is 1024-byte
// aligned), swizzle mode in 62-63 (1 = 128-byte). For 128-byte swizzled layouts: K-major — LBO unused (1),
// SBO = byte distance between 8-row groups; MN-major — LBO = byte distance between 64-element column
// blocks, SBO = byte distance between 8-row (k) groups. ------------------------------------------------------
enum class SmemSwizzle : uint32_t { kNone = 0, k128B = 1, k64B = 2, k32B = 3 };  // the descriptor's bits 62-63
__device__ __forceinline__ uint64_t smem_desc(const void *smem, uint32_t lbo_bytes, uint32_t sbo_bytes,
                                              SmemSwizzle mode HOPE_EMU_SITE_PARAM) {
#ifdef HOPE_EMULATED_DEVICE
  const uint32_t addr = smem_addr(smem, site_);
#else
  const uint32_t addr = smem_addr(smem);
#endif
  return static_cast<uint64_t>((addr & 0x3FFFFu) >> 4) | (static_cast<uint64_t>((lbo_bytes >> 4) & 0x3FFFu) << 16) |
         (static_cast<uint64_t>((sbo_bytes >> 4) & 0x3FFFu) << 32) | (static_cast<uint64_t>(mode) << 62);
}
__device__ __forceinline__ uint64_t smem_desc_sw128(const void *smem, uint32_t lbo_bytes,
                                                    uint32_t sbo_bytes HOPE_EMU_SITE_PARAM) {
#ifdef HOPE_EMULATED_DEVICE
  return smem_desc(smem, lbo_bytes, sbo_bytes, SmemSwizzle::k128B, site_);
#else
  return smem_desc(smem, lbo_bytes, sbo_bytes, SmemSwizzle::k128B);
#endif
}
// The same descriptor moved `bytes` (a multiple of 16) further into shared memory: only the start field changes
// (no carry: shared addresses stay below 2^18).
__device__ __forceinline__ uint64_t smem_desc_advance(uint64_t desc, uint32_t bytes) { return desc + (bytes >> 4); }

// ---- wgmma synchronisation -------------------------------------------------------------------------------------
// Keeps the compiler from moving accesses to these registers (accumulators, A fragments) across the asm
// statements around them.
// (Emulated: the registers are memory the emulator reads and writes through pointers: nothing to pin.)
template <int N>
__device__ __forceinline__ void wgmma_fence_operands(float (&d)[N]) {
#ifndef HOPE_EMULATED_DEVICE
#pragma unroll
  for (int i = 0; i < N; ++i) asm volatile("" : "+f"(d[i])::"memory");
#else
  (void)d;
#endif
}
template <int N>
__device__ __forceinline__ void wgmma_fence_operands(uint32_t (&a)[N]) {
#ifndef HOPE_EMULATED_DEVICE
#pragma unroll
  for (int i = 0; i < N; ++i) asm volatile("" : "+r"(a[i])::"memory");
#else
  (void)a;
#endif
}
template <int M, int N>
__device__ __forceinline__ void wgmma_fence_operands(uint32_t (&a)[M][N]) {
#pragma unroll
  for (int i = 0; i < M; ++i) wgmma_fence_operands(a[i]);
}
// wgmma.fence: orders this warpgroup's earlier register and shared-memory accesses before the wgmma that follow
// (needed before the first wgmma and whenever accumulators or A fragments were written in between).
__device__ __forceinline__ void wgmma_arrive(HOPE_EMU_SITE_PARAM_FIRST) {
#ifdef HOPE_EMULATED_DEVICE
  ::hope::emu::wgmma_fence(site_);
#else
  asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
#endif
}
__device__ __forceinline__ void wgmma_commit(HOPE_EMU_SITE_PARAM_FIRST) {
#ifdef HOPE_EMULATED_DEVICE
  ::hope::emu::wgmma_commit_group(site_);
#else
  asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
#endif
}
// Waits until at most PENDING of this warpgroup's committed wgmma groups are in flight; the accumulators passed
// (those of the retired groups) may be read afterwards.
template <int PENDING>
__device__ __forceinline__ void wgmma_wait(HOPE_EMU_SITE_PARAM_FIRST) {
#ifdef HOPE_EMULATED_DEVICE
  ::hope::emu::wgmma_wait_group(PENDING, site_);
#else
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(PENDING) : "memory");
#endif
}
template <int PENDING, typename Acc>
__device__ __forceinline__ void wgmma_wait(Acc &acc HOPE_EMU_SITE_PARAM) {
#ifdef HOPE_EMULATED_DEVICE
  wgmma_wait<PENDING>(site_);
#else
  wgmma_wait<PENDING>();
#endif
  wgmma_fence_operands(acc);
}

// ---- wgmma.mma_async m64nNk16, float32 accumulators ------------------------------------------------------------
// SS: A (64 x 16) and B (16 x N) from shared memory, both K-major (imm-trans-a = imm-trans-b = 0).
// RS: A from registers, B from shared memory N-major (imm-trans-b = 1).
// scale_d == 0: D = A B (the old accumulator is ignored); otherwise D += A B.
// Accumulator operand lists: eight registers of P[0..7] at a time, P an array (or a pointer into one).
#ifndef HOPE_EMULATED_DEVICE
#define HOPE_WGMMA_F8(P) \
  "+f"((P)[0]), "+f"((P)[1]), "+f"((P)[2]), "+f"((P)[3]), "+f"((P)[4]), "+f"((P)[5]), "+f"((P)[6]), "+f"((P)[7])
#define HOPE_WGMMA_F32(P) HOPE_WGMMA_F8(P), HOPE_WGMMA_F8((P) + 8), HOPE_WGMMA_F8((P) + 16), HOPE_WGMMA_F8((P) + 24)
#define HOPE_WGMMA_D32_OPERANDS HOPE_WGMMA_F32(d)
#define HOPE_WGMMA_D64_OPERANDS HOPE_WGMMA_F32(d), HOPE_WGMMA_F32(d + 32)
#define HOPE_WGMMA_D128_OPERANDS HOPE_WGMMA_F32(d), HOPE_WGMMA_F32(d + 32), HOPE_WGMMA_F32(d + 64), HOPE_WGMMA_F32(d + 96)
// The same registers as %0 ... %(ND - 1) in the instruction text.
#define HOPE_WGMMA_D32_REGS "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}"
#define HOPE_WGMMA_D64_REGS "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}"
#define HOPE_WGMMA_D128_REGS "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63, %64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, %80, %81, %82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95, %96, %97, %98, %99, %100, %101, %102, %103, %104, %105, %106, %107, %108, %109, %110, %111, %112, %113, %114, %115, %116, %117, %118, %119, %120, %121, %122, %123, %124, %125, %126, %127}"

#define HOPE_WGMMA_SS_ASM(SHAPE, TY, REGS, A, B, S)                                                         \
  "{\n.reg .pred p;\nsetp.ne.b32 p, %" #S ", 0;\nwgmma.mma_async.sync.aligned." SHAPE ".f32." TY "." TY " " REGS \
  ", %" #A ", %" #B ", p, 1, 1, 0, 0;\n}\n"
#define HOPE_WGMMA_RS_ASM(SHAPE, TY, REGS, A0, A1, A2, A3, B, S)                                      \
  "{\n.reg .pred p;\nsetp.ne.b32 p, %" #S ", 0;\nwgmma.mma_async.sync.aligned." SHAPE ".f32." TY "." TY " " REGS \
  ", {%" #A0 ", %" #A1 ", %" #A2 ", %" #A3 "}, %" #B ", p, 1, 1, 1;\n}\n"

template <int N, typename T>
struct Wgmma;

// One specialisation per (N, element type): ND = N / 2 accumulator registers; the remaining numbers are the
// asm operand indices of the inputs (they follow the ND outputs).
#define HOPE_WGMMA_DEFINE(N, ND, T, TY, SHAPE, SA, SB, SS, RA0, RA1, RA2, RA3, RB, RS)                         \
  template <>                                                                                                \
  struct Wgmma<N, T> {                                                                                       \
    static __device__ __forceinline__ void ss(float (&d)[ND], uint64_t desc_a, uint64_t desc_b, int scale_d) { \
      asm volatile(HOPE_WGMMA_SS_ASM(SHAPE, TY, HOPE_WGMMA_D##ND##_REGS, SA, SB, SS)                        \
                   : HOPE_WGMMA_D##ND##_OPERANDS                                                             \
                   : "l"(desc_a), "l"(desc_b), "r"(scale_d));                                                \
    }                                                                                                        \
    static __device__ __forceinline__ void rs(float (&d)[ND], const uint32_t (&a)[4], uint64_t desc_b,       \
                                              int scale_d) {                                                 \
      asm volatile(HOPE_WGMMA_RS_ASM(SHAPE, TY, HOPE_WGMMA_D##ND##_REGS, RA0, RA1, RA2, RA3, RB, RS)        \
                   : HOPE_WGMMA_D##ND##_OPERANDS                                                             \
                   : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "r"(scale_d));                \
    }                                                                                                        \
  };

HOPE_WGMMA_DEFINE(64, 32, __half, "f16", "m64n64k16", 32, 33, 34, 32, 33, 34, 35, 36, 37)
HOPE_WGMMA_DEFINE(64, 32, __nv_bfloat16, "bf16", "m64n64k16", 32, 33, 34, 32, 33, 34, 35, 36, 37)
HOPE_WGMMA_DEFINE(128, 64, __half, "f16", "m64n128k16", 64, 65, 66, 64, 65, 66, 67, 68, 69)
HOPE_WGMMA_DEFINE(128, 64, __nv_bfloat16, "bf16", "m64n128k16", 64, 65, 66, 64, 65, 66, 67, 68, 69)
HOPE_WGMMA_DEFINE(256, 128, __half, "f16", "m64n256k16", 128, 129, 130, 128, 129, 130, 131, 132, 133)
HOPE_WGMMA_DEFINE(256, 128, __nv_bfloat16, "bf16", "m64n256k16", 128, 129, 130, 128, 129, 130, 131, 132, 133)

#undef HOPE_WGMMA_DEFINE
#undef HOPE_WGMMA_SS_ASM
#undef HOPE_WGMMA_RS_ASM
#undef HOPE_WGMMA_D32_REGS
#undef HOPE_WGMMA_D32_OPERANDS
#undef HOPE_WGMMA_D64_REGS
#undef HOPE_WGMMA_D64_OPERANDS
#undef HOPE_WGMMA_D128_REGS
#undef HOPE_WGMMA_D128_OPERANDS
#undef HOPE_WGMMA_F32
#undef HOPE_WGMMA_F8
#endif  // !HOPE_EMULATED_DEVICE

#ifdef HOPE_EMULATED_DEVICE
template <typename T>
constexpr ::hope::emu::MmaType kEmuMmaType = std::is_same<T, __half>::value ? ::hope::emu::kMmaF16
                                                                            : ::hope::emu::kMmaBF16;
#endif

// D (64 x N) (+)= A (64 x 16, K-major, shared) * B (16 x N, K-major, shared).
template <int N, typename T>
__device__ __forceinline__ void wgmma_ss(float (&d)[N / 2], uint64_t desc_a, uint64_t desc_b,
                                         int scale_d HOPE_EMU_SITE_PARAM) {
#ifdef HOPE_EMULATED_DEVICE
  ::hope::emu::wgmma_mma_async(d, N, kEmuMmaType<T>, nullptr, desc_a, desc_b, scale_d, 0, 0, site_);
#else
  Wgmma<N, T>::ss(d, desc_a, desc_b, scale_d);
#endif
}
// D (64 x N) (+)= A (64 x 16, registers) * B (16 x N, N-major, shared).
template <int N, typename T>
__device__ __forceinline__ void wgmma_rs(float (&d)[N / 2], const uint32_t (&a)[4], uint64_t desc_b,
                                         int scale_d HOPE_EMU_SITE_PARAM) {
#ifdef HOPE_EMULATED_DEVICE
  ::hope::emu::wgmma_mma_async(d, N, kEmuMmaType<T>, a, 0, desc_b, scale_d, 0, 1, site_);
#else
  Wgmma<N, T>::rs(d, a, desc_b, scale_d);
#endif
}

}  // namespace sm90
}  // namespace hope
