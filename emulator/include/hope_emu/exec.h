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

// ---- approximate math ------------------------------------------------------------------------------------
// ex2.approx.f32: 2^x rounded correctly, then moved by a deterministic, input-dependent amount within the
// hardware's documented error bound (HOPE_EMU_APPROX_ULP, default 2 ulp), so code that relies on more
// accuracy than the hardware promises shows it.
HOPE_EMU_API float ex2_approx(float x);

}  // namespace emu
}  // namespace hope
