// ptx_kat.cu — known-answer tests of single PTX instructions, through the same wrapper headers the kernels
// use: mma.m16n8k16 (f16 and bf16), ldmatrix (.x1/.x2/.x4, plain and .trans) and cp.async with its
// commit_group / wait_group. The expected values are worked out by hand from the PTX ISA's fragment tables
// (the comments give the derivation), not computed by a second model of the instruction, so the test checks
// the emulated GPU's instruction semantics and, compiled by nvcc, the hardware against the same numbers:
// scripts/gpu-check.sh runs this binary first on a lent GPU, which checks the emulator itself.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <cstring>
#include <vector>

#include <gtest/gtest.h>

#include "attention/ptx_sm80.cuh"
#include "common/cp_async.cuh"
#include "common/launch.cuh"
#include "gpu_util.h"
#include "test_util.h"

namespace {

using hope_test::DeviceBuffer;

// ---- mma.m16n8k16 -----------------------------------------------------------------------------------------

// One warp: lane l takes a[4], b[2], c[4] from row l of the inputs and writes its d[4].
template <typename T>
__global__ void mma_kat_kernel(const uint32_t *a, const uint32_t *b, const float *c, float *d) {
  const int l = threadIdx.x;
  const uint32_t ra[4] = {a[4 * l], a[4 * l + 1], a[4 * l + 2], a[4 * l + 3]};
  float acc[4] = {c[4 * l], c[4 * l + 1], c[4 * l + 2], c[4 * l + 3]};
  hope::ptx::mma_16816<T>(acc, ra, b[2 * l], b[2 * l + 1]);
  for (int i = 0; i < 4; ++i) d[4 * l + i] = acc[i];
}

// Two small integers as one .f16x2 / .bf16x2 register (low half first); exact in both types (< 256).
uint32_t pack(bool bf16, float lo, float hi) {
  uint16_t a, b;
  if (bf16) {
    const __nv_bfloat16 x = __float2bfloat16_rn(lo), y = __float2bfloat16_rn(hi);
    std::memcpy(&a, &x, 2);
    std::memcpy(&b, &y, 2);
  } else {
    const __half x = __float2half_rn(lo), y = __float2half_rn(hi);
    std::memcpy(&a, &x, 2);
    std::memcpy(&b, &y, 2);
  }
  return static_cast<uint32_t>(a) | (static_cast<uint32_t>(b) << 16);
}

struct MmaCase {
  std::vector<uint32_t> a = std::vector<uint32_t>(128), b = std::vector<uint32_t>(64);
  std::vector<float> c = std::vector<float>(128, 0.f), want = std::vector<float>(128);
};

void run_mma(bool bf16, const MmaCase &mc, const char *what) {
  DeviceBuffer a, b, c, d;
  ASSERT_CUDA(a.alloc_upload(mc.a.data(), 128 * 4));
  ASSERT_CUDA(b.alloc_upload(mc.b.data(), 64 * 4));
  ASSERT_CUDA(c.alloc_upload(mc.c.data(), 128 * 4));
  ASSERT_CUDA(d.alloc(128 * 4));
  if (bf16)
    hope::launch_kernel(&mma_kat_kernel<__nv_bfloat16>, 1, 32, 0, nullptr, a.as<uint32_t>(), b.as<uint32_t>(),
                        c.as<float>(), d.as<float>());
  else
    hope::launch_kernel(&mma_kat_kernel<__half>, 1, 32, 0, nullptr, a.as<uint32_t>(), b.as<uint32_t>(),
                        c.as<float>(), d.as<float>());
  ASSERT_CUDA(cudaGetLastError());
  ASSERT_CUDA(cudaDeviceSynchronize());
  std::vector<float> got(128);
  ASSERT_CUDA(d.download(got.data(), 128 * 4));
  for (int l = 0; l < 32; ++l)
    for (int i = 0; i < 4; ++i)
      ASSERT_EQ(got[4 * l + i], mc.want[4 * l + i]) << what << (bf16 ? " bf16" : " f16") << ": lane " << l << " d" << i;
}

class PtxKat : public hope_test::GpuTest {};

// Fragment tables (PTX ISA "Matrix Fragments for mma.m16n8k16 with floating point type"), g = lane >> 2,
// t = lane % 4:  A: a0,a1 = (g, 2t..2t+1)  a2,a3 = (g+8, 2t..)  a4,a5 = (g, 2t+8..)  a6,a7 = (g+8, 2t+8..)
//                B: b0,b1 = (k 2t..2t+1, n g)  b2,b3 = (k 2t+8..2t+9, n g)
//                C/D: c0,c1 = (g, 2t..2t+1)  c2,c3 = (g+8, 2t..2t+1)
// Case 1: A[r][k] = r, B = identity on its first 8 rows (B[k][n] = k == n), C = 0. Then D[r][n] = A[r][n] = r:
// every lane's d0 = d1 = g and d2 = d3 = g + 8. Its registers: a0 = (g, g), a1 = (g+8, g+8), a2 = (g, g),
// a3 = (g+8, g+8); b0 = (2t == g, 2t+1 == g), b1 = (0, 0).
TEST_F(PtxKat, MmaRowIndexTimesIdentity) {
  for (bool bf16 : {false, true}) {
    MmaCase mc;
    for (int l = 0; l < 32; ++l) {
      const float g = static_cast<float>(l >> 2);
      const int t = l & 3;
      mc.a[4 * l + 0] = pack(bf16, g, g);
      mc.a[4 * l + 1] = pack(bf16, g + 8, g + 8);
      mc.a[4 * l + 2] = pack(bf16, g, g);
      mc.a[4 * l + 3] = pack(bf16, g + 8, g + 8);
      mc.b[2 * l + 0] = pack(bf16, 2 * t == (l >> 2) ? 1.f : 0.f, 2 * t + 1 == (l >> 2) ? 1.f : 0.f);
      mc.b[2 * l + 1] = pack(bf16, 0.f, 0.f);
      mc.want[4 * l + 0] = mc.want[4 * l + 1] = g;
      mc.want[4 * l + 2] = mc.want[4 * l + 3] = g + 8;
    }
    run_mma(bf16, mc, "A = row index, B = I");
  }
}

// Case 2: A[r][k] = k, B = identity on its first 8 rows, C = 0. Then D[r][n] = n: d0 = d2 = 2t and
// d1 = d3 = 2t + 1. Registers: a0 = a1 = (2t, 2t+1), a2 = a3 = (2t+8, 2t+9); B as in case 1.
TEST_F(PtxKat, MmaColumnIndexTimesIdentity) {
  for (bool bf16 : {false, true}) {
    MmaCase mc;
    for (int l = 0; l < 32; ++l) {
      const int t = l & 3;
      const float c0 = static_cast<float>(2 * t);
      mc.a[4 * l + 0] = mc.a[4 * l + 1] = pack(bf16, c0, c0 + 1);
      mc.a[4 * l + 2] = mc.a[4 * l + 3] = pack(bf16, c0 + 8, c0 + 9);
      mc.b[2 * l + 0] = pack(bf16, 2 * t == (l >> 2) ? 1.f : 0.f, 2 * t + 1 == (l >> 2) ? 1.f : 0.f);
      mc.b[2 * l + 1] = pack(bf16, 0.f, 0.f);
      mc.want[4 * l + 0] = mc.want[4 * l + 2] = c0;
      mc.want[4 * l + 1] = mc.want[4 * l + 3] = c0 + 1;
    }
    run_mma(bf16, mc, "A = column index, B = I");
  }
}

// Case 3: A = 1 everywhere, B[k][n] = k + 16 n, C[r][n] = 1000 lane + i (the lane's own accumulator i).
// D[r][n] = sum_k (k + 16 n) + C = 120 + 256 n + C, with n = 2t + (i & 1) for di: d0 = 120 + 512 t + 1000 l,
// d1 = 376 + 512 t + 1000 l + 1, d2 = 120 + 512 t + 1000 l + 2, d3 = 376 + 512 t + 1000 l + 3.
// Registers: b0 = (2t + 16g, 2t + 1 + 16g), b1 = (2t + 8 + 16g, 2t + 9 + 16g) (all < 256: exact in bf16).
TEST_F(PtxKat, MmaSumsOverKAndAddsC) {
  for (bool bf16 : {false, true}) {
    MmaCase mc;
    for (int l = 0; l < 32; ++l) {
      const int g = l >> 2, t = l & 3;
      for (int i = 0; i < 4; ++i) mc.a[4 * l + i] = pack(bf16, 1.f, 1.f);
      mc.b[2 * l + 0] = pack(bf16, static_cast<float>(2 * t + 16 * g), static_cast<float>(2 * t + 1 + 16 * g));
      mc.b[2 * l + 1] = pack(bf16, static_cast<float>(2 * t + 8 + 16 * g), static_cast<float>(2 * t + 9 + 16 * g));
      for (int i = 0; i < 4; ++i) mc.c[4 * l + i] = static_cast<float>(1000 * l + i);
      const float base = static_cast<float>(120 + 512 * t + 1000 * l);
      mc.want[4 * l + 0] = base;
      mc.want[4 * l + 1] = base + 256 + 1;
      mc.want[4 * l + 2] = base + 2;
      mc.want[4 * l + 3] = base + 256 + 3;
    }
    run_mma(bf16, mc, "A = 1, B = k + 16n, C = per lane");
  }
}

// ---- ldmatrix ----------------------------------------------------------------------------------------------

// Shared memory holds four 8x8 b16 matrices, element (j, row, col) = 64 j + 8 row + col. Lane l supplies the
// address of memory row 7 - (l % 8) of matrix l / 8 (rows in reverse, so the test sees whose address is used).
// variant: 1/2/4 matrices, +8 for .trans.
__global__ void ldmatrix_kat_kernel(uint32_t *out, int variant) {
  HOPE_STATIC_SMEM(raw, uint4[32]);  // uint4: rows 16-byte aligned
  uint16_t *m = reinterpret_cast<uint16_t *>(raw);
  const int l = threadIdx.x;
  for (int e = l; e < 4 * 64; e += 32) m[e] = static_cast<uint16_t>(e);
  __syncwarp();
  const uint32_t addr = hope::smem_addr(&m[(l / 8) * 64 + (7 - l % 8) * 8]);
  uint32_t r[4] = {0, 0, 0, 0};
  switch (variant) {
    case 1: hope::ptx::ldmatrix_x1(r[0], addr); break;
    case 2: hope::ptx::ldmatrix_x2(*reinterpret_cast<uint32_t(*)[2]>(r), addr); break;
    case 4: hope::ptx::ldmatrix_x4(r, addr); break;
    case 9: hope::ptx::ldmatrix_x1_trans(r[0], addr); break;
    case 10: hope::ptx::ldmatrix_x2_trans(*reinterpret_cast<uint32_t(*)[2]>(r), addr); break;
    case 12: hope::ptx::ldmatrix_x4_trans(r, addr); break;
    default: break;
  }
  for (int j = 0; j < 4; ++j) out[4 * l + j] = r[j];
}

// PTX ISA "Warp-level matrix load instruction: ldmatrix": lane l receives in register j the elements of the
// loaded matrix j at row l/4, columns 2(l%4) and 2(l%4)+1 (low half first); .trans gives rows 2(l%4) and
// 2(l%4)+1 of column l/4. Loaded row R of matrix j is memory row 7 - R here, so:
//   plain:  lo = 64 j + 8 (7 - l/4) + 2(l%4), hi = lo + 1;
//   .trans: lo = 64 j + 8 (7 - 2(l%4)) + l/4, hi = lo - 8 (the next loaded row is the previous memory row).
TEST_F(PtxKat, LdmatrixEveryVariant) {
  for (int variant : {1, 2, 4, 9, 10, 12}) {
    const int num = variant & 7;
    const bool trans = variant >= 8;
    DeviceBuffer out;
    ASSERT_CUDA(out.alloc(128 * 4));
    hope::launch_kernel(&ldmatrix_kat_kernel, 1, 32, 0, nullptr, out.as<uint32_t>(), variant);
    ASSERT_CUDA(cudaGetLastError());
    ASSERT_CUDA(cudaDeviceSynchronize());
    std::vector<uint32_t> got(128);
    ASSERT_CUDA(out.download(got.data(), 128 * 4));
    for (int l = 0; l < 32; ++l)
      for (int j = 0; j < num; ++j) {
        uint32_t lo, hi;
        if (!trans) {
          lo = 64 * j + 8 * (7 - l / 4) + 2 * (l % 4);
          hi = lo + 1;
        } else {
          lo = 64 * j + 8 * (7 - 2 * (l % 4)) + l / 4;
          hi = lo - 8;
        }
        ASSERT_EQ(got[4 * l + j], lo | (hi << 16))
            << "ldmatrix.x" << num << (trans ? ".trans" : "") << ": lane " << l << " register " << j;
      }
  }
}

// ---- cp.async -----------------------------------------------------------------------------------------------

// Each lane copies its own 16-byte chunk four times into four shared buffers pre-filled with 0xab:
// group 1: all 16 bytes; group 2: 16 bytes on even lanes, 8 on odd lanes (the upper 8 bytes zero-filled);
// group 3: empty (no copy); group 4: src-size 0 (16 zero bytes, nothing read). wait_group 2 guarantees
// groups 1 and 2 (at most the 2 most recent, 3 and 4, pending); wait_group 0 all of them. Each lane reads
// back only its own bytes, which the wait makes visible to it.
__global__ void cp_async_kat_kernel(const uint4 *src, uint4 *out) {
  HOPE_STATIC_SMEM(buf, uint4[4][32]);
  const int l = threadIdx.x;
  for (int k = 0; k < 4; ++k) buf[k][l] = make_uint4(0xababababu, 0xababababu, 0xababababu, 0xababababu);
  hope::cp_async_16(&buf[0][l], &src[l], 16);
  hope::cp_async_commit();
  hope::cp_async_16(&buf[1][l], &src[l], (l & 1) ? 8 : 16);
  hope::cp_async_commit();
  hope::cp_async_commit();  // an empty group: trivially complete
  hope::cp_async_16(&buf[3][l], &src[l], 0);
  hope::cp_async_commit();
  hope::cp_async_wait<2>();
  out[4 * l + 0] = buf[0][l];
  out[4 * l + 1] = buf[1][l];
  hope::cp_async_wait<0>();
  out[4 * l + 2] = buf[3][l];
  out[4 * l + 3] = buf[2][l];  // never a copy destination: still 0xab
}

TEST_F(PtxKat, CpAsyncZeroFillAndGroups) {
  std::vector<uint32_t> src(32 * 4);
  for (size_t i = 0; i < src.size(); ++i) src[i] = 0x01020304u * static_cast<uint32_t>(i + 1);
  DeviceBuffer s, out;
  ASSERT_CUDA(s.alloc_upload(src.data(), src.size() * 4));
  ASSERT_CUDA(out.alloc(32 * 4 * 16));
  hope::launch_kernel(&cp_async_kat_kernel, 1, 32, 0, nullptr, s.as<uint4>(), out.as<uint4>());
  ASSERT_CUDA(cudaGetLastError());
  ASSERT_CUDA(cudaDeviceSynchronize());
  std::vector<uint32_t> got(32 * 16);
  ASSERT_CUDA(out.download(got.data(), got.size() * 4));
  for (int l = 0; l < 32; ++l)
    for (int w = 0; w < 4; ++w) {
      const uint32_t v = src[4 * l + w];
      EXPECT_EQ(got[16 * l + w], v) << "group 1, lane " << l << " word " << w;
      EXPECT_EQ(got[16 * l + 4 + w], (l & 1) && w >= 2 ? 0u : v) << "group 2 (zero-fill), lane " << l << " word " << w;
      EXPECT_EQ(got[16 * l + 8 + w], 0u) << "group 4 (src-size 0), lane " << l << " word " << w;
      EXPECT_EQ(got[16 * l + 12 + w], 0xababababu) << "untouched buffer, lane " << l << " word " << w;
    }
}

}  // namespace
