// emu_hazards.cu — the emulated GPU's own checks, each shown to fire on a small kernel that has the bug:
// reads of in-flight cp.async bytes, a too-shallow wait, a copy landed by another thread read without a
// barrier, a missing barrier between warps, divergent .aligned collectives, a deadlock, a barrier in
// divergent code, an exit with copies in flight, shared memory out of bounds, a shuffle from outside its
// member mask, launch-configuration limits and a forbidden call inside a stream capture; and the sm_90 ones:
// wgmma reading generic-proxy writes without fence.proxy.async, an mma_async without wgmma.fence, accumulators
// read (NaN) or written before their wait_group, wgmma never retired, a TMA destination read before its
// mbarrier phase (wrong parity), expect_tx short of the copied bytes, a copy never waited for, a buffer refilled
// under an in-flight wgmma, named barriers with disagreeing counts and a divergent warpgroup. Emulated builds
// only (a real GPU would hang, fault or silently race on most of these kernels).
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include <gtest/gtest.h>

#include "attention/ptx_sm80.cuh"
#include "attention/ptx_sm90.cuh"
#include "common/cp_async.cuh"
#include "common/launch.cuh"
#include "gpu_util.h"
#include "hope_emu/control.h"
#include "sm90_util.cuh"

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

// ---- sm_90: wgmma, proxy fences, TMA, mbarriers, named barriers ------------------------------------------------

namespace sm90 = hope::sm90;

// One warpgroup, D (64 x 16) = A (64 x 16) B^T from a zeroed 128B-swizzled tile (A: rows 0-63, B: rows 64-79).
// variant 0: correct; 1: no fence.proxy.async after the generic writes; 2: no wgmma.fence; 3: an accumulator
// written between commit and wait; 4: an accumulator read before the wait (reads NaN: no error); 5: no wait.
__global__ void wgmma_hazard_kernel(float *out, int variant) {
  HOPE_DYNAMIC_SMEM(raw, unsigned char);
  unsigned char *s = hope_test::smem_aligned_1024(raw);
  const int tid = threadIdx.x;
  for (int i = tid; i < 80 * 128 / 16; i += 128) reinterpret_cast<uint4 *>(s)[i] = make_uint4(0, 0, 0, 0);
  if (variant != 1) sm90::fence_proxy_async_smem();
  __syncthreads();
  float d[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  if (variant != 2) sm90::wgmma_arrive();
  sm90::wgmma_ss<16, __half>(d, sm90::smem_desc_sw128(s, 16, 1024), sm90::smem_desc_sw128(s + 64 * 128, 16, 1024), 0);
  sm90::wgmma_commit();
  if (variant == 3) d[0] = 1.f;
  if (variant == 4) out[tid] = d[0];
  if (variant != 5) sm90::wgmma_wait<0>(d);
  if (variant != 4) out[tid] = d[0];
}

TEST(EmuHazardsSm90, WgmmaChecksItsFencesAndAccumulators) {
  DeviceBuffer out;
  ASSERT_CUDA(out.alloc(128 * 4));
  const int smem = 80 * 128 + 1024;
  auto run = [&](int variant) { hope::launch_kernel(&wgmma_hazard_kernel, 1, 128, smem, nullptr, out.as<float>(), variant); };
  const long before = hopeemu_error_count();
  run(0);
  ASSERT_CUDA(cudaGetLastError());
  std::vector<float> got(128);
  ASSERT_CUDA(out.download(got.data(), 128 * 4));
  EXPECT_EQ(hopeemu_error_count(), before) << "the correct variant must not be reported";
  for (int t = 0; t < 128; ++t) EXPECT_EQ(got[t], 0.f) << "thread " << t;
  expect_emulator_error([&] { run(1); }, "generic-proxy writes read by wgmma without fence.proxy.async");
  expect_emulator_error([&] { run(2); }, "wgmma.mma_async without wgmma.fence");
  expect_emulator_error([&] { run(3); }, "accumulator written before wgmma.wait_group");
  expect_emulator_error([&] { run(5); }, "wgmma never retired");
  const long before4 = hopeemu_error_count();
  run(4);
  ASSERT_CUDA(cudaGetLastError());
  ASSERT_CUDA(out.download(got.data(), 128 * 4));
  EXPECT_EQ(hopeemu_error_count(), before4);
  for (int t = 0; t < 128; ++t) EXPECT_TRUE(std::isnan(got[t])) << "an accumulator read before its wait must be NaN, thread " << t;
}

// One warpgroup: thread 0 copies a 16 x 64 f16 box (2048 bytes) with TMA into the tile, every thread waits for
// the mbarrier phase and D (64 x 64) = 0 * B is computed from it (RS, B N-major).
// variant 0: correct; 1: waits on parity 1 (the phase before: returns at once) and reads the copy in flight;
// 2: expect_tx of 1024 bytes for the 2048-byte copy; 3: nobody waits; 4: a second copy refills the tile while
// the wgmma that reads it is in flight.
__global__ void tma_hazard_kernel(const __grid_constant__ sm90::TmaDescriptor map, float *out, int variant) {
  HOPE_DYNAMIC_SMEM(raw, unsigned char);
  unsigned char *s = hope_test::smem_aligned_1024(raw);
  uint64_t *bar = reinterpret_cast<uint64_t *>(s + 16 * 128);
  const int tid = threadIdx.x;
  hope_test::init_mbarrier_for_block(bar, 1);
  if (tid == 0) {
    sm90::mbarrier_arrive_expect_tx(bar, variant == 2 ? 1024 : 2048);
    sm90::tma_load_3d(s, &map, bar, 0, 0, 0);
  }
  if (variant == 3) return;
  sm90::mbarrier_wait(bar, variant == 1 ? 1 : 0);
  float d[32];
  const uint32_t a[4] = {0, 0, 0, 0};
  sm90::wgmma_arrive();
  sm90::wgmma_rs<64, __half>(d, a, sm90::smem_desc_sw128(s, 16 * 128, 1024), 0);
  sm90::wgmma_commit();
  if (variant == 4 && tid == 0) {
    sm90::mbarrier_arrive_expect_tx(bar, 2048);
    sm90::tma_load_3d(s, &map, bar, 0, 0, 0);
  }
  sm90::wgmma_wait<0>(d);
  if (variant == 4) sm90::mbarrier_wait(bar, 1);
  out[tid] = d[0];
}

TEST(EmuHazardsSm90, TmaAndMbarrierChecks) {
  std::vector<uint16_t> host(16 * 64, 0x3c00);  // 1.0 in f16
  DeviceBuffer t, out;
  ASSERT_CUDA(t.alloc_upload(host.data(), host.size() * 2));
  ASSERT_CUDA(out.alloc(128 * 4));
  sm90::TmaDescriptor map;
  ASSERT_EQ(sm90::make_tensor_map_rows_sw128(&map, t.get(), false, 16, 1, 128, 16), CUDA_SUCCESS);
  const int smem = 16 * 128 + 64 + 1024;
  auto run = [&](int variant) {
    hope::launch_kernel(&tma_hazard_kernel, 1, 128, smem, nullptr, map, out.as<float>(), variant);
  };
  const long before = hopeemu_error_count();
  run(0);
  ASSERT_CUDA(cudaGetLastError());
  EXPECT_EQ(hopeemu_error_count(), before) << "the correct variant must not be reported";
  expect_emulator_error([&] { run(1); }, "wrong mbarrier parity: the copy is read in flight");
  expect_emulator_error([&] { run(2); }, "expect_tx short of the copied bytes");
  expect_emulator_error([&] { run(3); }, "a TMA copy nobody waits for");
  expect_emulator_error([&] { run(4); }, "a buffer refilled under an in-flight wgmma");
}

// Warp 0 names 64 participants, warp 1 names 96, at one named barrier (warps 2 and 3 take no part).
__global__ void named_barrier_count_kernel(int *out) {
  if (threadIdx.x >= 64) return;
  sm90::named_barrier_sync(1, threadIdx.x < 32 ? 64 : 96);
  out[threadIdx.x] = 1;
}

// Half the warpgroup reaches wgmma.fence at one line, the other half at another.
__global__ void divergent_warpgroup_kernel(int *out) {
  if (threadIdx.x < 64) sm90::wgmma_arrive();
  else sm90::wgmma_arrive();
  out[threadIdx.x] = 1;
}

TEST(EmuHazardsSm90, NamedBarrierCountsAndWarpgroupsMustAgree) {
  DeviceBuffer out;
  ASSERT_CUDA(out.alloc(128 * 4));
  expect_emulator_error([&] { hope::launch_kernel(&named_barrier_count_kernel, 1, 128, 0, nullptr, out.as<int>()); },
                        "named barrier with two thread counts");
  expect_emulator_error([&] { hope::launch_kernel(&divergent_warpgroup_kernel, 1, 128, 0, nullptr, out.as<int>()); },
                        "divergent warpgroup");
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
