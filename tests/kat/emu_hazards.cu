// emu_hazards.cu — the emulated GPU's own checks, each shown to fire on a small kernel that has the bug:
// reads of in-flight cp.async bytes, a too-shallow wait, a copy landed by another thread read without a
// barrier, a missing barrier between warps, divergent .aligned collectives, a deadlock, a barrier in
// divergent code, an exit with copies in flight, shared memory out of bounds, a shuffle from outside its
// member mask, launch-configuration limits and a forbidden call inside a stream capture. Emulated builds
// only (a real GPU would hang, fault or silently race on most of these kernels).
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include <gtest/gtest.h>

#include "attention/ptx_sm80.cuh"
#include "common/cp_async.cuh"
#include "common/launch.cuh"
#include "gpu_util.h"
#include "hope_emu/control.h"

namespace {

using hope_test::DeviceBuffer;

// Runs `launch`, then expects the emulator to have reported at least one error and the launch to have
// failed (cudaErrorLaunchFailure, as a faulting kernel does on hardware).
template <typename F>
void expect_emulator_error(F launch, const char *what) {
  const long before = hopeemu_error_count();
  launch();
  EXPECT_EQ(cudaGetLastError(), cudaErrorLaunchFailure) << what;
  EXPECT_EQ(cudaDeviceSynchronize(), cudaErrorLaunchFailure) << what << ": reported again at the next synchronisation";
  (void)cudaGetLastError();  // which also records it as the last error
  EXPECT_GT(hopeemu_error_count(), before) << what << ": the emulator reported nothing";
}

bool asan_build() {
#if defined(__SANITIZE_ADDRESS__)
  return true;
#else
  return false;
#endif
}

// ---- cp.async hazards ---------------------------------------------------------------------------------------

// variant 0: ldmatrix of bytes still in flight (no wait at all); 1: wait_group 1 leaves the second group in
// flight and ldmatrix reads it; 2: correct (wait_group 0) — no error.
__global__ void inflight_kernel(const uint4 *src, uint32_t *out, int variant) {
  HOPE_STATIC_SMEM(buf, uint4[2][32]);
  const int l = threadIdx.x;
  hope::cp_async_16(&buf[0][l], &src[l], 16);
  hope::cp_async_commit();
  hope::cp_async_16(&buf[1][l], &src[32 + l], 16);
  hope::cp_async_commit();
  if (variant == 1) hope::cp_async_wait<1>();
  if (variant == 2) hope::cp_async_wait<0>();
  __syncwarp();
  uint32_t r[4];
  hope::ptx::ldmatrix_x4(r, hope::smem_addr(&buf[1][l % 8 + (l / 8) * 8]));
  out[l] = r[0];
  hope::cp_async_wait<0>();
}

TEST(EmuHazards, ReadingInFlightCopiesIsAnError) {
  DeviceBuffer src, out;
  std::vector<uint32_t> host(64 * 4, 0x3c003c00u);
  ASSERT_CUDA(src.alloc_upload(host.data(), host.size() * 4));
  ASSERT_CUDA(out.alloc(32 * 4));
  expect_emulator_error([&] { hope::launch_kernel(&inflight_kernel, 1, 32, 0, nullptr, src.as<uint4>(), out.as<uint32_t>(), 0); },
                        "no wait");
  expect_emulator_error([&] { hope::launch_kernel(&inflight_kernel, 1, 32, 0, nullptr, src.as<uint4>(), out.as<uint32_t>(), 1); },
                        "wait_group 1 too shallow");
  const long before = hopeemu_error_count();
  hope::launch_kernel(&inflight_kernel, 1, 32, 0, nullptr, src.as<uint4>(), out.as<uint32_t>(), 2);
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
  EXPECT_EQ(hopeemu_error_count(), before) << "the correct variant must not be reported";
}

// A plain load of an in-flight destination reads the poison (0xff bytes: NaN). ASan builds stop the
// process at the load instead (the bytes are ASan-poisoned), so this runs without ASan only.
__global__ void plain_read_kernel(const uint4 *src, uint32_t *out) {
  HOPE_STATIC_SMEM(buf, uint4[32]);
  const int l = threadIdx.x;
  hope::cp_async_16(&buf[l], &src[l], 16);
  hope::cp_async_commit();
  out[l] = reinterpret_cast<const uint32_t *>(&buf[l])[0];  // the bug: before the wait
  hope::cp_async_wait<0>();
}

TEST(EmuHazards, PlainReadBeforeTheWaitSeesPoison) {
  if (asan_build()) GTEST_SKIP() << "ASan reports this read itself (the in-flight bytes are ASan-poisoned)";
  DeviceBuffer src, out;
  std::vector<uint32_t> host(32 * 4, 7u);
  ASSERT_CUDA(src.alloc_upload(host.data(), host.size() * 4));
  ASSERT_CUDA(out.alloc(32 * 4));
  hope::launch_kernel(&plain_read_kernel, 1, 32, 0, nullptr, src.as<uint4>(), out.as<uint32_t>());
  ASSERT_CUDA(cudaGetLastError());
  std::vector<uint32_t> got(32);
  ASSERT_CUDA(out.download(got.data(), 32 * 4));
  for (int l = 0; l < 32; ++l) EXPECT_EQ(got[l], 0xffffffffu) << "lane " << l;
}

// Warp 0 copies the tile, waits, and (the bug) no __syncthreads follows before warp 1 reads it.
__global__ void landed_no_barrier_kernel(const uint4 *src, uint32_t *out) {
  HOPE_STATIC_SMEM(buf, uint4[32]);
  const int warp = threadIdx.x / 32, l = threadIdx.x % 32;
  if (warp == 0) {
    hope::cp_async_16(&buf[l], &src[l], 16);
    hope::cp_async_commit();
    hope::cp_async_wait<0>();
  }
  uint32_t r[4];
  hope::ptx::ldmatrix_x4(r, hope::smem_addr(&buf[l]));
  if (warp == 1) out[l] = r[0];
}

TEST(EmuHazards, CopyLandedByAnotherThreadNeedsABarrier) {
  DeviceBuffer src, out;
  std::vector<uint32_t> host(32 * 4, 0x3c003c00u);
  ASSERT_CUDA(src.alloc_upload(host.data(), host.size() * 4));
  ASSERT_CUDA(out.alloc(32 * 4));
  const long before = hopeemu_error_count();
  hope::launch_kernel(&landed_no_barrier_kernel, 1, 64, 0, nullptr, src.as<uint4>(), out.as<uint32_t>());
  (void)cudaGetLastError();
  std::vector<uint32_t> got(32);
  ASSERT_CUDA(out.download(got.data(), 32 * 4));
  // Either the emulator saw the unsynchronised read, or (warp 1 ran first) it read the NaN fill.
  const bool poisoned = got[0] == 0xffffffffu || got[0] == 0u;
  EXPECT_TRUE(hopeemu_error_count() > before || poisoned)
      << "schedule " << hopeemu_schedule() << ": the missing barrier went unnoticed";
}

// Each warp writes its half of a buffer and reads the other half, with (variant 1) or without (variant 0)
// the __syncthreads between. Without it, under every schedule some warp reads the NaN fill.
__global__ void exchange_kernel(float *out, int with_barrier) {
  HOPE_STATIC_SMEM(buf, float[64]);
  const int t = threadIdx.x;
  buf[t] = static_cast<float>(t);
  if (with_barrier) __syncthreads();
  out[t] = buf[(t + 32) % 64];
}

TEST(EmuHazards, MissingBarrierBetweenWarpsReadsNaN) {
  DeviceBuffer out;
  ASSERT_CUDA(out.alloc(64 * 4));
  for (int with_barrier : {0, 1}) {
    hope::launch_kernel(&exchange_kernel, 1, 64, 0, nullptr, out.as<float>(), with_barrier);
    ASSERT_CUDA(cudaGetLastError());
    std::vector<float> got(64);
    ASSERT_CUDA(out.download(got.data(), 64 * 4));
    int nan = 0, right = 0;
    for (int t = 0; t < 64; ++t) {
      nan += std::isnan(got[t]);
      right += got[t] == static_cast<float>((t + 32) % 64);
    }
    if (with_barrier) EXPECT_EQ(right, 64);
    else EXPECT_GT(nan, 0) << "schedule " << hopeemu_schedule() << ": every thread happened to read written data";
  }
}

__global__ void exit_inflight_kernel(const uint4 *src) {
  HOPE_STATIC_SMEM(buf, uint4[32]);
  hope::cp_async_16(&buf[threadIdx.x], &src[threadIdx.x], 16);
  hope::cp_async_commit();
}

TEST(EmuHazards, ExitingWithCopiesInFlightIsAnError) {
  DeviceBuffer src;
  ASSERT_CUDA(src.alloc(32 * 16));
  ASSERT_CUDA(cudaMemset(src.get(), 0, 32 * 16));
  expect_emulator_error([&] { hope::launch_kernel(&exit_inflight_kernel, 1, 32, 0, nullptr, src.as<uint4>()); },
                        "exit with copies in flight");
}

// ---- collectives ----------------------------------------------------------------------------------------------

__global__ void divergent_ldmatrix_kernel(uint32_t *out) {
  HOPE_STATIC_SMEM(buf, uint4[32]);
  buf[threadIdx.x] = make_uint4(1, 2, 3, 4);
  __syncwarp();
  uint32_t r[4];
  if (threadIdx.x < 16) hope::ptx::ldmatrix_x4(r, hope::smem_addr(&buf[threadIdx.x]));
  else hope::ptx::ldmatrix_x4_trans(r, hope::smem_addr(&buf[threadIdx.x]));
  out[threadIdx.x] = r[0];
}

TEST(EmuHazards, DivergentAlignedCollectiveIsAnError) {
  DeviceBuffer out;
  ASSERT_CUDA(out.alloc(32 * 4));
  expect_emulator_error([&] { hope::launch_kernel(&divergent_ldmatrix_kernel, 1, 32, 0, nullptr, out.as<uint32_t>()); },
                        "ldmatrix in divergent code");
}

// Lane 0 waits at a __syncthreads, lane 1 at a full-warp shuffle that needs lane 0: neither can proceed.
__global__ void deadlock_kernel(int *out) {
  int v = static_cast<int>(threadIdx.x);
  if (threadIdx.x == 0) __syncthreads();
  else v = __shfl_sync(0xffffffffu, v, 0);
  out[threadIdx.x] = v;
}

TEST(EmuHazards, DeadlockIsReported) {
  DeviceBuffer out;
  ASSERT_CUDA(out.alloc(32 * 4));
  expect_emulator_error([&] { hope::launch_kernel(&deadlock_kernel, 1, 32, 0, nullptr, out.as<int>()); }, "deadlock");
}

__global__ void barrier_after_exit_kernel(int *out) {
  if (threadIdx.x % 2 == 1) return;  // the bug: half the block leaves before the barrier
  __syncthreads();
  out[threadIdx.x] = 1;
}

TEST(EmuHazards, BarrierInDivergentCodeIsAnError) {
  DeviceBuffer out;
  ASSERT_CUDA(out.alloc(64 * 4));
  expect_emulator_error([&] { hope::launch_kernel(&barrier_after_exit_kernel, 1, 64, 0, nullptr, out.as<int>()); },
                        "__syncthreads after some threads exited");
}

__global__ void shuffle_outside_mask_kernel(int *out) {
  const int v = static_cast<int>(threadIdx.x);
  if (threadIdx.x < 16) out[threadIdx.x] = __shfl_sync(0x0000ffffu, v, 20);  // lane 20 is not a member
}

TEST(EmuHazards, ShuffleFromOutsideTheMaskIsAnError) {
  DeviceBuffer out;
  ASSERT_CUDA(out.alloc(32 * 4));
  expect_emulator_error([&] { hope::launch_kernel(&shuffle_outside_mask_kernel, 1, 32, 0, nullptr, out.as<int>()); },
                        "shuffle source outside the mask");
}

// ---- shared memory bounds -----------------------------------------------------------------------------------------

__global__ void smem_oob_kernel(uint32_t *out) {
  HOPE_DYNAMIC_SMEM(dyn, uint4);
  dyn[threadIdx.x % 8] = make_uint4(0, 0, 0, 0);
  __syncwarp();
  uint32_t r[4];
  // 8 rows of 16 bytes were launched (128 bytes); matrices 1..3 read past them.
  hope::ptx::ldmatrix_x4(r, hope::smem_addr(dyn) + 16u * threadIdx.x);
  out[threadIdx.x] = r[0];
}

TEST(EmuHazards, SharedMemoryOutOfBoundsIsAnError) {
  DeviceBuffer out;
  ASSERT_CUDA(out.alloc(32 * 4));
  expect_emulator_error([&] { hope::launch_kernel(&smem_oob_kernel, 1, 32, 128, nullptr, out.as<uint32_t>()); },
                        "ldmatrix beyond the launched shared memory");
}

// ---- launch configuration and capture rules ------------------------------------------------------------------------

__global__ void empty_kernel() {}

TEST(EmuRuntime, LaunchLimitsAreEnforced) {
  hope::launch_kernel(&empty_kernel, 1, 2048, 0, nullptr);
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidConfiguration) << "2048 threads per block";
  hope::launch_kernel(&empty_kernel, dim3(1, 70000, 1), 32, 0, nullptr);
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidConfiguration) << "gridDim.y above 65535";
  hope::launch_kernel(&empty_kernel, 1, 32, 64 * 1024, nullptr);
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidValue) << "64 KB of dynamic shared memory without the opt-in";
  ASSERT_CUDA(cudaFuncSetAttribute(reinterpret_cast<const void *>(&empty_kernel),
                                   cudaFuncAttributeMaxDynamicSharedMemorySize, 64 * 1024));
  hope::launch_kernel(&empty_kernel, 1, 32, 64 * 1024, nullptr);
  EXPECT_EQ(cudaGetLastError(), cudaSuccess) << "64 KB after the opt-in";
  EXPECT_EQ(cudaFuncSetAttribute(reinterpret_cast<const void *>(&empty_kernel),
                                 cudaFuncAttributeMaxDynamicSharedMemorySize, 300 * 1024),
            cudaErrorInvalidValue)
      << "beyond the device's opt-in limit";
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidValue) << "a failed call is the last error";
  EXPECT_EQ(cudaGetLastError(), cudaSuccess) << "and reading it clears it";
}

TEST(EmuRuntime, CaptureForbidsSynchronousCopiesAndRecordsLaunches) {
  cudaStream_t s;
  ASSERT_CUDA(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  DeviceBuffer buf;
  ASSERT_CUDA(buf.alloc(64));
  int host[16] = {0};
  // A capture that only enqueues work on its stream gives a graph that replays it.
  ASSERT_CUDA(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal));
  ASSERT_CUDA(cudaMemsetAsync(buf.get(), 0x11, 64, s));
  hope::launch_kernel(&empty_kernel, 1, 32, 0, s);
  ASSERT_CUDA(cudaGetLastError());
  cudaGraph_t g = nullptr;
  ASSERT_CUDA(cudaStreamEndCapture(s, &g));
  size_t nodes = 0;
  ASSERT_CUDA(cudaGraphGetNodes(g, nullptr, &nodes));
  EXPECT_EQ(nodes, 2u);
  ASSERT_CUDA(buf.download(host, 64));
  EXPECT_EQ(host[0], -1) << "captured work must not run at capture time (the buffer is still poisoned)";
  cudaGraphExec_t e = nullptr;
  ASSERT_CUDA(cudaGraphInstantiate(&e, g, 0));
  ASSERT_CUDA(cudaGraphLaunch(e, s));
  ASSERT_CUDA(cudaStreamSynchronize(s));
  ASSERT_CUDA(buf.download(host, 64));
  EXPECT_EQ(host[0], 0x11111111);
  ASSERT_CUDA(cudaGraphExecDestroy(e));
  ASSERT_CUDA(cudaGraphDestroy(g));
  // A synchronous copy inside a global-mode capture is refused and invalidates it.
  ASSERT_CUDA(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal));
  EXPECT_EQ(cudaMemcpy(host, buf.get(), 64, cudaMemcpyDeviceToHost), cudaErrorStreamCaptureUnsupported);
  EXPECT_EQ(cudaStreamEndCapture(s, &g), cudaErrorStreamCaptureInvalidated);
  (void)cudaGetLastError();
  ASSERT_CUDA(cudaStreamDestroy(s));
}

TEST(EmuRuntime, CopiesCheckTheirDevicePointers) {
  DeviceBuffer buf;
  ASSERT_CUDA(buf.alloc(64));
  char host[128] = {0};
  EXPECT_EQ(cudaMemcpy(buf.get(), host, 128 + hope_test::kGuardBytes, cudaMemcpyHostToDevice), cudaErrorInvalidValue)
      << "a copy past the end of the allocation";
  EXPECT_EQ(cudaMemcpy(host, host + 64, 16, cudaMemcpyDeviceToHost), cudaErrorInvalidValue)
      << "host memory passed as the device source";
  (void)cudaGetLastError();
}

// ---- approximate math --------------------------------------------------------------------------------------------------

__global__ void exp2_kernel(const float *x, float *y, int n) {
  for (int i = threadIdx.x; i < n; i += blockDim.x) y[i] = exp2f(x[i]);
}

TEST(EmuMath, Exp2StaysWithinTwoUlpOfTheExactValue) {
  std::vector<float> x;
  for (int i = -2000; i <= 2000; ++i) x.push_back(static_cast<float>(i) * 0.0625f + 0.0001f * static_cast<float>(i % 7));
  DeviceBuffer dx, dy;
  ASSERT_CUDA(dx.alloc_upload(x.data(), x.size() * 4));
  ASSERT_CUDA(dy.alloc(x.size() * 4));
  hope::launch_kernel(&exp2_kernel, 1, 128, 0, nullptr, dx.as<float>(), dy.as<float>(), static_cast<int>(x.size()));
  ASSERT_CUDA(cudaGetLastError());
  std::vector<float> y(x.size());
  ASSERT_CUDA(dy.download(y.data(), y.size() * 4));
  int moved = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const float exact = static_cast<float>(std::exp2(static_cast<double>(x[i])));
    const float ulp = std::nextafter(exact, std::numeric_limits<float>::infinity()) - exact;
    EXPECT_LE(std::fabs(y[i] - exact), 2.5f * ulp) << "x = " << x[i];
    moved += y[i] != exact;
  }
  EXPECT_GT(moved, 0) << "the emulated ex2.approx should use its error bound (HOPE_EMU_APPROX_ULP)";
}

}  // namespace
