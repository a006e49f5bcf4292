// ptx_sm90_kat.cu — known-answer tests of the sm_90a instructions the Hopper attention kernel uses, through the
// kernel's own wrappers (kernels/attention/ptx_sm90.cuh): wgmma.mma_async m64nNk16 in both forms the kernel
// issues, each with the 128-byte swizzle (the only swizzle mode it uses) —
//   SS: A (64 x 32, K-major) and B (n64 x 32, K-major) in shared memory, two k16 steps chained on one set of
//       accumulators by moving the descriptors' start 32 bytes along the swizzled rows (scale-d 0, then 1);
//   RS: A from registers, B (32 x n128, N-major: two 64-column blocks LBO apart, 8-row k groups SBO apart) in
//       shared memory, D starting from given values (scale-d 1), two k16 steps 16 rows (2048 bytes) apart;
// and a TMA tile copy (cp.async.bulk.tensor.3d with the 128-byte swizzle, completing on an mbarrier) whose box
// reaches past both ends of the tensor (negative and too-large row coordinates read as zero), twice on one
// mbarrier (phases 0 and 1, arrive.expect_tx with the box's bytes, try_wait.parity).
//
// The shared-memory images are written here from the PTX ISA's description, independently of the emulator:
// §9.7.15.5.1.2 (a 128B-swizzled operand is 8-row atoms of 128-byte rows, 1024-byte aligned, in which the
// 16-byte unit u of row r sits at unit u ^ (r % 8); K-major rows hold one m (or n) and 64 k; N-major rows hold
// one k and 64 n), the register fragments of §9.7.15.5.1 (D: thread 32w + 4g + t holds rows 16w + g and
// 16w + g + 8, columns 8j + 2t, 8j + 2t + 1 in registers 4j .. 4j + 3; A: as mma.m16n8k16's A per warp), and
// §5.5 for TMA (the box lands row after row, each 128-byte row swizzled as above). Inputs are small integers,
// so every product and sum is exact and the expected D is the plain matrix product. Compiled for sm_90a by
// nvcc (run on compute capability 9.x only) and as C++ for the emulated GPU; scripts/gpu-check.sh runs it
// first on a lent Hopper GPU, which checks the emulator's instruction semantics against the hardware.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "attention/ptx_sm90.cuh"
#include "common/launch.cuh"
#include "gpu_util.h"
#include "sm90_util.cuh"
#include "test_util.h"

namespace {

using hope_test::DeviceBuffer;
namespace sm90 = hope::sm90;

// ---- shared helpers -------------------------------------------------------------------------------------------

// Byte offset of 16-bit element (row, col < 64) in a 128B-swizzled tile of 128-byte rows (1024-byte aligned base).
size_t sw128(int row, int col) {
  return static_cast<size_t>(row) * 128 + static_cast<size_t>(((col / 8) ^ (row % 8)) * 16 + (col % 8) * 2);
}

uint16_t bits16(bool bf16, float v) {
  uint16_t b;
  if (bf16) {
    const __nv_bfloat16 x = __float2bfloat16_rn(v);
    std::memcpy(&b, &x, 2);
  } else {
    const __half x = __float2half_rn(v);
    std::memcpy(&b, &x, 2);
  }
  return b;
}

// D element (m, n) of m64nN in thread `member`'s register `reg`.
void d_slot(int m, int n, int *member, int *reg) {
  *member = 32 * (m / 16) + 4 * (m % 8) + (n % 8) / 2;
  *reg = 4 * (n / 8) + 2 * ((m % 16) / 8) + n % 2;
}

int device_cc_major() {
  int dev = 0, major = 0;
  if (cudaGetDevice(&dev) != cudaSuccess || cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess)
    return 0;
  return major;
}

class PtxKatSm90 : public hope_test::GpuTest {
 protected:
  void SetUp() override {
    hope_test::GpuTest::SetUp();
    if (IsSkipped()) return;
    if (device_cc_major() != 9) GTEST_SKIP() << "wgmma and TMA need a compute capability 9.x device";
  }
};

// ---- wgmma SS: A (64 x 32) and B (64 x 32), both K-major, in each swizzle mode ---------------------------------

// The K-major canonical layouts of the PTX ISA (§9.7.15.5.1.2, "Shared Memory Matrix Layout": the swizzle atoms
// of 8 rows x S bytes, and the no-swizzle core matrices of 8 rows x 16 bytes), written here from the text, not
// from the emulator: where 16-bit element (row, k) of a 64 x 32 operand lies, the descriptor's LBO and SBO, and
// how far the second k16 step's descriptor moves. Each operand gets an 8192-byte, 1024-byte aligned region.
struct KMajorLayout {
  sm90::SmemSwizzle mode;
  const char *name;
  uint32_t lbo, sbo, k_step;  // bytes
};
const KMajorLayout kKMajorLayouts[] = {
    // no swizzle: core matrix (row / 8, k / 8) at (row / 8) * SBO + (k / 8) * LBO, its rows 16 bytes apart
    {sm90::SmemSwizzle::kNone, "none", 128, 512, 256},
    // 32B: rows of 32 bytes (one k16 step each); the second step's 64 rows are a separate 2048-byte block
    {sm90::SmemSwizzle::k32B, "32B", 1, 256, 2048},
    // 64B and 128B: rows of 64 / 128 bytes hold both steps; the second step starts 32 bytes into the row
    {sm90::SmemSwizzle::k64B, "64B", 1, 512, 32},
    {sm90::SmemSwizzle::k128B, "128B", 1, 1024, 32},
};

// Byte offset of element (row, k) from its operand's 1024-byte aligned base, the mode's XOR applied: the 16-byte
// unit index (address bits 4 and up) XOR the 128-byte line index (bits 7 and up), over 1, 2 or 3 bits for the 32B,
// 64B and 128B modes.
size_t k_major_offset(const KMajorLayout &l, int row, int k) {
  uint32_t o = 0;
  int bits = 0;
  switch (l.mode) {
    case sm90::SmemSwizzle::kNone: return (row / 8) * l.sbo + (k / 8) * l.lbo + (row % 8) * 16 + (k % 8) * 2;
    case sm90::SmemSwizzle::k32B: o = (k / 16) * l.k_step + row * 32 + (k % 16) * 2; bits = 1; break;
    case sm90::SmemSwizzle::k64B: o = row * 64 + k * 2; bits = 2; break;
    case sm90::SmemSwizzle::k128B: o = row * 128 + k * 2; bits = 3; break;
  }
  return o ^ (((o >> 7) & ((1u << bits) - 1u)) << 4);
}

// One warpgroup. `image` holds the A region (8192 bytes) then the B region. It is written to shared memory through
// the generic proxy, made visible to wgmma with fence.proxy.async, then D = A[:, 0:16] B[:, 0:16]^T (scale-d 0)
// + A[:, 16:32] B[:, 16:32]^T (descriptors moved k_step bytes).
template <typename T>
__global__ void wgmma_ss_kat_kernel(const uint4 *image, float *out, sm90::SmemSwizzle mode, uint32_t lbo, uint32_t sbo,
                                    uint32_t k_step) {
  HOPE_DYNAMIC_SMEM(raw, unsigned char);
  unsigned char *s = hope_test::smem_aligned_1024(raw);
  const int tid = threadIdx.x;
  for (int i = tid; i < 2 * 8192 / 16; i += 128) reinterpret_cast<uint4 *>(s)[i] = image[i];
  sm90::fence_proxy_async_smem();
  __syncthreads();
  float d[32];
  for (int i = 0; i < 32; ++i) d[i] = -1.f;  // ignored: scale-d 0 on the first step
  const uint64_t da = sm90::smem_desc(s, lbo, sbo, mode), db = sm90::smem_desc(s + 8192, lbo, sbo, mode);
  sm90::wgmma_fence_operands(d);
  sm90::wgmma_arrive();
  sm90::wgmma_ss<64, T>(d, da, db, 0);
  sm90::wgmma_ss<64, T>(d, sm90::smem_desc_advance(da, k_step), sm90::smem_desc_advance(db, k_step), 1);
  sm90::wgmma_commit();
  sm90::wgmma_wait<0>(d);
  for (int i = 0; i < 32; ++i) out[tid * 32 + i] = d[i];
}

TEST_F(PtxKatSm90, WgmmaSSKMajorEachSwizzleModeTwoKSteps) {
  for (const KMajorLayout &l : kKMajorLayouts)
    for (bool bf16 : {false, true}) {
      SCOPED_TRACE(std::string("swizzle ") + l.name + (bf16 ? " bf16" : " f16"));
      std::mt19937 rng((bf16 ? 11u : 7u) + 100u * static_cast<uint32_t>(l.mode));
      std::uniform_int_distribution<int> val(-4, 4);
      std::vector<float> A(64 * 32), B(64 * 32);  // A[m][k], B[n][k] (B^T as the instruction reads it K-major)
      for (float &x : A) x = static_cast<float>(val(rng));
      for (float &x : B) x = static_cast<float>(val(rng));
      // Bytes no element maps to hold NaN: a wrong address reads it and poisons D.
      std::vector<uint8_t> image(2 * 8192, 0xFF);
      for (int r = 0; r < 64; ++r)
        for (int k = 0; k < 32; ++k) {
          const uint16_t a = bits16(bf16, A[r * 32 + k]), b = bits16(bf16, B[r * 32 + k]);
          std::memcpy(&image[k_major_offset(l, r, k)], &a, 2);
          std::memcpy(&image[8192 + k_major_offset(l, r, k)], &b, 2);
        }
      DeviceBuffer img, out;
      ASSERT_CUDA(img.alloc_upload(image.data(), image.size()));
      ASSERT_CUDA(out.alloc(128 * 32 * 4));
      const int smem = 2 * 8192 + 1024;
      if (bf16)
        hope::launch_kernel(&wgmma_ss_kat_kernel<__nv_bfloat16>, 1, 128, smem, nullptr, img.as<uint4>(), out.as<float>(),
                            l.mode, l.lbo, l.sbo, l.k_step);
      else
        hope::launch_kernel(&wgmma_ss_kat_kernel<__half>, 1, 128, smem, nullptr, img.as<uint4>(), out.as<float>(), l.mode,
                            l.lbo, l.sbo, l.k_step);
      ASSERT_CUDA(cudaGetLastError());
      ASSERT_CUDA(cudaDeviceSynchronize());
      std::vector<float> got(128 * 32);
      ASSERT_CUDA(out.download(got.data(), got.size() * 4));
      for (int m = 0; m < 64; ++m)
        for (int n = 0; n < 64; ++n) {
          float want = 0.f;
          for (int k = 0; k < 32; ++k) want += A[m * 32 + k] * B[n * 32 + k];
          int member, reg;
          d_slot(m, n, &member, &reg);
          ASSERT_EQ(got[member * 32 + reg], want) << "D(" << m << ", " << n << ")";
        }
    }
}

// ---- wgmma RS: A in registers, B (32 x 128) N-major, 128B swizzle, D += A B ------------------------------------

// `a_regs` [128 threads][2 k16 steps][4], `image` the B tile: two column blocks (n < 64, n >= 64) of 32 k-rows x
// 128 bytes each, 4096 bytes apart (LBO); k rows 8 apart are 1024 bytes apart (SBO); the second k16 step starts
// 16 rows (2048 bytes) further. `c` the initial D per thread.
template <typename T>
__global__ void wgmma_rs_kat_kernel(const uint32_t *a_regs, const uint4 *image, const float *c, float *out) {
  HOPE_DYNAMIC_SMEM(raw, unsigned char);
  unsigned char *s = hope_test::smem_aligned_1024(raw);
  const int tid = threadIdx.x;
  for (int i = tid; i < 2 * 32 * 128 / 16; i += 128) reinterpret_cast<uint4 *>(s)[i] = image[i];
  sm90::fence_proxy_async_smem();
  __syncthreads();
  uint32_t a[2][4];
  for (int j = 0; j < 2; ++j)
    for (int r = 0; r < 4; ++r) a[j][r] = a_regs[tid * 8 + j * 4 + r];
  float d[64];
  for (int i = 0; i < 64; ++i) d[i] = c[tid * 64 + i];
  const uint64_t db = sm90::smem_desc_sw128(s, 32 * 128, 1024);
  sm90::wgmma_fence_operands(d);
  sm90::wgmma_fence_operands(a);
  sm90::wgmma_arrive();
  sm90::wgmma_rs<128, T>(d, a[0], db, 1);
  sm90::wgmma_rs<128, T>(d, a[1], sm90::smem_desc_advance(db, 16 * 128), 1);
  sm90::wgmma_commit();
  sm90::wgmma_wait<0>(d);
  for (int i = 0; i < 64; ++i) out[tid * 64 + i] = d[i];
}

TEST_F(PtxKatSm90, WgmmaRSNMajor128BSwizzleAccumulates) {
  for (bool bf16 : {false, true}) {
    std::mt19937 rng(bf16 ? 5u : 3u);
    std::uniform_int_distribution<int> val(-4, 4);
    std::vector<float> A(64 * 32), B(32 * 128), C(64 * 128);  // A[m][k], B[k][n], C[m][n]
    for (float &x : A) x = static_cast<float>(val(rng));
    for (float &x : B) x = static_cast<float>(val(rng));
    for (int i = 0; i < 64 * 128; ++i) C[i] = static_cast<float>(i % 97);
    // A fragments: thread 32w + 4g + t, step j: a0 = (16w + g, 16j + 2t..), a1 = (16w + g + 8, 16j + 2t..),
    // a2 = (16w + g, 16j + 2t + 8..), a3 = (16w + g + 8, 16j + 2t + 8..), low half first.
    std::vector<uint32_t> regs(128 * 8);
    for (int th = 0; th < 128; ++th) {
      const int w = th / 32, g = (th % 32) / 4, t = th % 4;
      for (int j = 0; j < 2; ++j)
        for (int r = 0; r < 4; ++r) {
          const int row = 16 * w + g + ((r & 1) ? 8 : 0), col = 16 * j + 2 * t + ((r & 2) ? 8 : 0);
          regs[th * 8 + j * 4 + r] = static_cast<uint32_t>(bits16(bf16, A[row * 32 + col])) |
                                     (static_cast<uint32_t>(bits16(bf16, A[row * 32 + col + 1])) << 16);
        }
    }
    std::vector<uint8_t> image(2 * 32 * 128, 0);
    for (int k = 0; k < 32; ++k)
      for (int n = 0; n < 128; ++n) {
        const uint16_t b = bits16(bf16, B[k * 128 + n]);
        std::memcpy(&image[(n / 64) * 32 * 128 + sw128(k, n % 64)], &b, 2);
      }
    std::vector<float> c(128 * 64);
    for (int m = 0; m < 64; ++m)
      for (int n = 0; n < 128; ++n) {
        int member, reg;
        d_slot(m, n, &member, &reg);
        c[member * 64 + reg] = C[m * 128 + n];
      }
    DeviceBuffer ra, img, cc, out;
    ASSERT_CUDA(ra.alloc_upload(regs.data(), regs.size() * 4));
    ASSERT_CUDA(img.alloc_upload(image.data(), image.size()));
    ASSERT_CUDA(cc.alloc_upload(c.data(), c.size() * 4));
    ASSERT_CUDA(out.alloc(128 * 64 * 4));
    const int smem = 2 * 32 * 128 + 1024;
    if (bf16)
      hope::launch_kernel(&wgmma_rs_kat_kernel<__nv_bfloat16>, 1, 128, smem, nullptr, ra.as<uint32_t>(), img.as<uint4>(),
                          cc.as<float>(), out.as<float>());
    else
      hope::launch_kernel(&wgmma_rs_kat_kernel<__half>, 1, 128, smem, nullptr, ra.as<uint32_t>(), img.as<uint4>(),
                          cc.as<float>(), out.as<float>());
    ASSERT_CUDA(cudaGetLastError());
    ASSERT_CUDA(cudaDeviceSynchronize());
    std::vector<float> got(128 * 64);
    ASSERT_CUDA(out.download(got.data(), got.size() * 4));
    for (int m = 0; m < 64; ++m)
      for (int n = 0; n < 128; ++n) {
        float want = C[m * 128 + n];
        for (int k = 0; k < 32; ++k) want += A[m * 32 + k] * B[k * 128 + n];
        int member, reg;
        d_slot(m, n, &member, &reg);
        ASSERT_EQ(got[member * 64 + reg], want) << (bf16 ? "bf16" : "f16") << " D(" << m << ", " << n << ")";
      }
  }
}

// ---- TMA: a 3-D tile copy with the 128B swizzle and out-of-bound rows ---------------------------------------------

// The tensor: 10 rows (tokens), each 2 blocks of 64 16-bit elements, rows 288 bytes apart (32 bytes of padding);
// element (row, block, e) = 1000 row + 100 block + e + 1 (as uint16). Box (64, 1, 16): 16 rows of block 1.
// Phase 0 copies rows -3 .. 12 (coordinate -3), phase 1 rows 7 .. 22; rows outside [0, 10) read as zero.
__global__ void tma_kat_kernel(const __grid_constant__ sm90::TmaDescriptor map, uint16_t *out) {
  HOPE_DYNAMIC_SMEM(raw, unsigned char);
  unsigned char *s = hope_test::smem_aligned_1024(raw);
  uint64_t *bar = reinterpret_cast<uint64_t *>(s + 16 * 128);
  const int tid = threadIdx.x;
  hope_test::init_mbarrier_for_block(bar, 1);
  for (int phase = 0; phase < 2; ++phase) {
    if (tid == 0) {
      sm90::tma_prefetch_descriptor(&map);
      sm90::mbarrier_arrive_expect_tx(bar, 16 * 128);
      sm90::tma_load_3d(s, &map, bar, 0, 1, phase == 0 ? -3 : 7);
    }
    sm90::mbarrier_wait(bar, static_cast<uint32_t>(phase));
    for (int i = tid; i < 16 * 64; i += blockDim.x) out[phase * 16 * 64 + i] = reinterpret_cast<const uint16_t *>(s)[i];
    __syncthreads();  // every thread has read the tile before the next copy overwrites it
  }
}

TEST_F(PtxKatSm90, TmaTileCopySwizzlesAndZeroFillsOutOfBoundRows) {
  constexpr int kRows = 10, kBlocks = 2, kStride = 2 * 64 * 2 + 32;  // bytes
  std::vector<uint8_t> tensor(kRows * kStride, 0xee);
  for (int r = 0; r < kRows; ++r)
    for (int b = 0; b < kBlocks; ++b)
      for (int e = 0; e < 64; ++e) {
        const uint16_t v = static_cast<uint16_t>(1000 * r + 100 * b + e + 1);
        std::memcpy(&tensor[r * kStride + (b * 64 + e) * 2], &v, 2);
      }
  DeviceBuffer t, out;
  ASSERT_CUDA(t.alloc_upload(tensor.data(), tensor.size()));
  ASSERT_CUDA(out.alloc(2 * 16 * 64 * 2));
  sm90::TmaDescriptor map;
  ASSERT_EQ(sm90::make_tensor_map_rows_sw128(&map, t.get(), false, kRows, kBlocks, kStride, 16), CUDA_SUCCESS);
  hope::launch_kernel(&tma_kat_kernel, 1, 64, 16 * 128 + 64 + 1024, nullptr, map, out.as<uint16_t>());
  ASSERT_CUDA(cudaGetLastError());
  ASSERT_CUDA(cudaDeviceSynchronize());
  std::vector<uint16_t> got(2 * 16 * 64);
  ASSERT_CUDA(out.download(got.data(), got.size() * 2));
  for (int phase = 0; phase < 2; ++phase)
    for (int i = 0; i < 16; ++i)
      for (int e = 0; e < 64; ++e) {
        const int row = (phase == 0 ? -3 : 7) + i;
        const uint16_t want = row >= 0 && row < kRows ? static_cast<uint16_t>(1000 * row + 100 + e + 1) : 0;
        ASSERT_EQ(got[phase * 16 * 64 + sw128(i, e) / 2], want) << "phase " << phase << ", box row " << i << ", element " << e;
      }
}

}  // namespace
