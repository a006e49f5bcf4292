// exec.h — the emulated GPU's interface to device code (see emulator/README.md).
//
// Kernel source compiled with HOPE_EMULATED_DEVICE reaches the emulator only through this header: the
// launch (kernels/common/launch.cuh), the shared-memory declarations, the CUDA built-ins of device.h
// (threadIdx, __syncthreads, shuffles, ...) and the emulated bodies of the PTX wrapper headers. Everything
// here runs inside an emulated CUDA thread (a fiber); calling it from plain host code is a reported error.
//
// Every collective takes the call site (`Site`, captured by a defaulted argument at the kernel's call), so
// a hazard is reported with the file and line of the kernel code that caused it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <tuple>
#include <type_traits>
#include <typeinfo>
#include <utility>

#include <cuda_runtime.h>  // dim3, uint3, cudaStream_t: the toolkit header, parsed in host mode

#define HOPE_EMU_API __attribute__((visibility("default")))

namespace hope {
namespace emu {

// A source location in kernel code; `Site::here()` as a default argument records the caller's line.
struct Site {
  const char *file;
  int line;
  static Site here(const char *file = __builtin_FILE(), int line = __builtin_LINE()) { return Site{file, line}; }
};

// ---- built-in variables of the running emulated thread --------------------------------------------------
struct ThreadIds {
  uint3 thread_idx, block_idx;
  dim3 block_dim, grid_dim;
};
HOPE_EMU_API const ThreadIds &ids();

// ---- launch ------------------------------------------------------------------------------------------
using KernelBody = std::function<void()>;
// Runs (or, on a capturing stream, records) one launch; errors go to the emulated runtime's last error.
HOPE_EMU_API void launch_body(KernelBody body, dim3 grid, dim3 block, size_t smem_bytes, cudaStream_t stream,
                              const void *kernel);

// The arguments are converted to the kernel's parameter types once, as a real launch copies them into its
// parameter buffer; every emulated thread then receives its own copy.
template <typename... Params, typename... Args>
void launch(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem_bytes, cudaStream_t stream,
            Args &&...args) {
  static_assert(sizeof...(Params) == sizeof...(Args), "kernel launched with the wrong number of arguments");
  auto params = std::make_shared<const std::tuple<std::decay_t<Params>...>>(std::forward<Args>(args)...);
  launch_body([kernel, params] { std::apply(kernel, *params); }, grid, block, smem_bytes, stream,
              reinterpret_cast<const void *>(kernel));
}

// ---- shared memory -----------------------------------------------------------------------------------
// The CTA's dynamic shared memory: exactly the launched size, NaN-filled (0xff bytes) at every CTA start.
HOPE_EMU_API void *dynamic_smem_base();
// One static shared object per (file, line, type) and CTA, NaN-filled when the CTA first reaches it.
HOPE_EMU_API void *static_smem_alloc(const char *file, int line, size_t bytes, size_t align, const char *type);

template <typename T>
T *dynamic_smem() {
  return static_cast<T *>(dynamic_smem_base());
}
template <typename T>
T &static_smem(const char *file, int line) {
  static_assert(std::is_trivially_destructible<T>::value, "__shared__ objects have no destructor");
  return *static_cast<T *>(static_smem_alloc(file, line, sizeof(T), alignof(T), typeid(T).name()));
}

// Shared-state-space address (what __cvta_generic_to_shared returns) of a generic pointer into the CTA's
// shared memory, and back; both check that the bytes lie inside memory the CTA owns.
HOPE_EMU_API uint32_t shared_address(const void *generic, Site site = Site::here());
HOPE_EMU_API void *shared_pointer(uint32_t addr, size_t bytes, Site site = Site::here());

// ---- synchronisation and warp collectives (CUDA C++ Programming Guide semantics) -----------------------
HOPE_EMU_API void syncthreads(Site site);
HOPE_EMU_API void syncwarp(unsigned mask, Site site);
enum ShuffleKind : int { kShflIdx = 0, kShflUp = 1, kShflDown = 2, kShflXor = 3 };
// One shuffle of a 32- or 64-bit value (wider types are shuffled in 32-bit parts by device.h).
HOPE_EMU_API uint64_t shuffle(unsigned mask, uint64_t value, ShuffleKind kind, int lane_arg, int width, Site site);
enum VoteKind : int { kVoteBallot = 0, kVoteAny = 1, kVoteAll = 2 };
HOPE_EMU_API unsigned vote(unsigned mask, int predicate, VoteKind kind, Site site);
// A point where the running thread may be preempted (the random schedule interleaves threads there).
HOPE_EMU_API void preemption_point();

// ---- sm_80 PTX (emulator/src/ptx_sm80.cc) ----------------------------------------------------------------
// cp.async.{ca,cg}.shared.global [dst], [src], cp_size, src_size
HOPE_EMU_API void cp_async(uint32_t dst, const void *src, int cp_size, int src_size, Site site);
HOPE_EMU_API void cp_async_commit_group(Site site);
HOPE_EMU_API void cp_async_wait_group(int n, Site site);
// ldmatrix.sync.aligned.m8n8.{x1,x2,x4}{.trans}.shared.b16: regs[0..num) of this lane.
HOPE_EMU_API void ldmatrix(uint32_t *regs, int num, bool trans, uint32_t addr, Site site);
// mma.sync.aligned.m16n8k16.row.col.f32.{f16,bf16}.{f16,bf16}.f32 d, a, b, c (d may alias c).
enum MmaType : int { kMmaF16 = 0, kMmaBF16 = 1 };
HOPE_EMU_API void mma_m16n8k16(float *d, const uint32_t *a, const uint32_t *b, const float *c, MmaType type,
                               Site site);

// ---- sm_90a PTX (emulator/src/ptx_sm90.cc) ----------------------------------------------------------------
// Shared-memory operands are shared-state-space addresses (what smem_addr() returns), as in PTX.
//
// mbarrier.init.shared::cta.b64 [addr], count (count in [1, 2^20 - 1]).
HOPE_EMU_API void mbarrier_init(uint32_t addr, uint32_t count, Site site);
// mbarrier.arrive{.expect_tx}.shared::cta.b64 _, [addr]{, tx_bytes}: raises the current phase's expected
// transaction count by tx_bytes (0 for a plain arrive), then arrives once.
HOPE_EMU_API void mbarrier_arrive(uint32_t addr, uint32_t tx_bytes, Site site);
// mbarrier.try_wait.parity.shared::cta.b64: true once the phase of parity `parity` has completed. The
// emulated instruction blocks the calling thread until then (the hardware's "time limit" is unbounded), except
// that under the random schedule it sometimes gives up early and returns false, as the hardware may.
HOPE_EMU_API bool mbarrier_try_wait_parity(uint32_t addr, uint32_t parity, Site site);
// cp.async.bulk.tensor.{1..5}d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [dst], [map, {c...}],
// [mbar]: the box at `coords` (innermost first) of the tensor map at generic address `map` (built by the
// emulated cuTensorMapEncodeTiled), completing its byte count on the mbarrier at `mbar`.
HOPE_EMU_API void tma_load_tile(uint32_t dst, const void *map, uint32_t mbar, const int32_t *coords, int rank,
                                Site site);
// prefetch.tensormap [map]: checks the tensor map.
HOPE_EMU_API void tma_prefetch_map(const void *map, Site site);
// fence.proxy.async.shared::cta: what the generic proxy wrote to shared memory becomes visible to the async
// proxy (wgmma operands, TMA).
HOPE_EMU_API void fence_proxy_async_shared(Site site);
// bar.sync id, threads (wait = true) / bar.arrive id, threads (wait = false): named barrier `id` in [0, 16)
// completes when `threads` (a multiple of 32) threads have arrived.
HOPE_EMU_API void named_barrier(uint32_t id, uint32_t threads, bool wait, Site site);
// setmaxnreg.{inc,dec}.sync.aligned.u32 regs: checked to be warpgroup-uniform; otherwise no effect.
HOPE_EMU_API void setmaxnreg(uint32_t regs, bool increase, Site site);
// wgmma.fence / wgmma.commit_group / wgmma.wait_group N (.sync.aligned, warpgroup-wide).
HOPE_EMU_API void wgmma_fence(Site site);
HOPE_EMU_API void wgmma_commit_group(Site site);
HOPE_EMU_API void wgmma_wait_group(int pending, Site site);
// wgmma.mma_async.sync.aligned.m64n{n}k16.f32.{f16,bf16}.{f16,bf16} d, a, b_desc, scale_d, 1, 1{, trans_a},
// trans_b: `d` the n / 2 float32 accumulators of this thread, `a_regs` this thread's 4 A registers (the RS form)
// or nullptr (the SS form: A from shared memory through desc_a, K-major when trans_a == 0).
HOPE_EMU_API void wgmma_mma_async(float *d, int n, MmaType type, const uint32_t *a_regs, uint64_t desc_a,
                                  uint64_t desc_b, int scale_d, int trans_a, int trans_b, Site site);

// ---- approximate math ------------------------------------------------------------------------------------
// ex2.approx.f32: 2^x rounded correctly, then moved by a deterministic, input-dependent amount within the
// hardware's documented error bound (HOPE_EMU_APPROX_ULP, default 2 ulp), so code that relies on more
// accuracy than the hardware promises shows it.
HOPE_EMU_API float ex2_approx(float x);

}  // namespace emu
}  // namespace hope
