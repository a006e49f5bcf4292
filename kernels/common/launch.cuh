// launch.cuh — the seam between kernel code and whatever executes it. Kernels are launched through
// hope::launch_kernel and declare shared memory through HOPE_DYNAMIC_SMEM / HOPE_STATIC_SMEM, so the same
// kernel text compiles with nvcc for a GPU and with a host C++ compiler for the emulated GPU
// (HOPE_EMULATED_DEVICE, see emulator/README.md), where g++ can parse neither `<<<>>>` nor `__shared__`.
// Inline PTX never appears in a kernel: it lives in the wrapper headers (common/cp_async.cuh,
// attention/ptx_sm80.cuh), each with an emulated body.
#pragma once

#include <cstddef>
#include <utility>

#include <cuda_runtime.h>

#ifdef HOPE_EMULATED_DEVICE
#include "hope_emu/exec.h"
#endif

namespace hope {

// Names any type, arrays and template types included, as one token sequence for the macros below.
template <typename T>
using SmemType = T;

}  // namespace hope

// HOPE_DYNAMIC_SMEM(name, T): `T *const name`, the CTA's dynamic shared memory (16-byte aligned), as many
// bytes as the launch asked for.
// HOPE_STATIC_SMEM(name, T...): `name`, an lvalue of type T in static shared memory, one per CTA
// (e.g. HOPE_STATIC_SMEM(red, float[32]); HOPE_STATIC_SMEM(sm, Smem<D, T>);).
#ifdef HOPE_EMULATED_DEVICE
#define HOPE_DYNAMIC_SMEM(name, T) T *const name = ::hope::emu::dynamic_smem<T>()
#define HOPE_STATIC_SMEM(name, ...) \
  ::hope::SmemType<__VA_ARGS__> &name = ::hope::emu::static_smem<::hope::SmemType<__VA_ARGS__>>(__FILE__, __LINE__)
#else
#define HOPE_DYNAMIC_SMEM(name, T)                                  \
  extern __shared__ __align__(16) unsigned char hope_dynamic_smem_[]; \
  T *const name = reinterpret_cast<T *>(hope_dynamic_smem_)
#define HOPE_STATIC_SMEM(name, ...) __shared__ ::hope::SmemType<__VA_ARGS__> name
#endif

namespace hope {

// Launches `kernel` on grid x block threads with smem_bytes of dynamic shared memory on `stream`; the
// arguments convert to the kernel's parameter types as in `kernel<<<...>>>(args...)`. Like a triple-chevron
// launch it reports nothing itself: check cudaGetLastError() right after.
template <typename... Params, typename... Args>
inline void launch_kernel(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem_bytes,
                          cudaStream_t stream, Args &&...args) {
#ifdef HOPE_EMULATED_DEVICE
  ::hope::emu::launch(kernel, grid, block, smem_bytes, stream, std::forward<Args>(args)...);
#else
  kernel<<<grid, block, smem_bytes, stream>>>(std::forward<Args>(args)...);
#endif
}

}  // namespace hope
