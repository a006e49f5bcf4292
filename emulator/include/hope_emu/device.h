// device.h — the CUDA device built-ins for kernel source compiled by a host C++ compiler on the emulated GPU.
//
// CMake force-includes this header (-include hope_emu/device.h) into every kernel source of an emulated
// build (HOPE_EMULATED_DEVICE), before anything else; kernel files themselves are unchanged. The toolkit's
// own headers are parsed in host mode: they give dim3, uint3, float4, ..., __half / __nv_bfloat16 with their
// host conversion paths, and the runtime API declarations (implemented by emulator/src/runtime.cc). What
// nvcc provides only to device code is defined here on top of exec.h: the built-in variables, barriers,
// warp shuffles and votes, the read-only / streaming load and store intrinsics, the IEEE-rounded arithmetic
// intrinsics, and the approximate math functions (with their documented error, see exec.h).
#pragma once

#ifndef HOPE_EMULATED_DEVICE
#error "hope_emu/device.h is only for emulated builds (HOPE_EMULATED_DEVICE)"
#endif

// __grid_constant__ marks a kernel parameter whose address device code takes (a TMA tensor map): the emulated
// launch hands every thread its own copy of the parameters, so it compiles away. Defined before the toolkit's
// headers, which then keep it.
#ifndef __grid_constant__
#define __grid_constant__
#endif

#include <cfloat>
#include <climits>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "hope_emu/exec.h"

// Launch bounds only guide nvcc's register allocation.
#ifndef __launch_bounds__
#define __launch_bounds__(...)
#endif

// ---- built-in variables (CUDA C++ Programming Guide, "Built-in Variables") ------------------------------
#define threadIdx (::hope::emu::ids().thread_idx)
#define blockIdx (::hope::emu::ids().block_idx)
#define blockDim (::hope::emu::ids().block_dim)
#define gridDim (::hope::emu::ids().grid_dim)
#define warpSize 32

// ---- synchronisation ----------------------------------------------------------------------------------
inline void __syncthreads(::hope::emu::Site site = ::hope::emu::Site::here()) { ::hope::emu::syncthreads(site); }
inline void __syncwarp(unsigned mask = 0xffffffffu, ::hope::emu::Site site = ::hope::emu::Site::here()) {
  ::hope::emu::syncwarp(mask, site);
}
inline void __threadfence() {}
inline void __threadfence_block() {}

// ---- warp shuffles and votes ("Warp Shuffle Functions", "Warp Vote Functions") -------------------------
namespace hope {
namespace emu {
template <typename T>
T shuffle_value(unsigned mask, T var, ShuffleKind kind, int arg, int width, Site site) {
  static_assert(std::is_trivially_copyable<T>::value && sizeof(T) % 4 == 0 && sizeof(T) <= 16,
                "shuffled types are 4, 8, 12 or 16 bytes");
  if (sizeof(T) <= 8) {
    uint64_t bits = 0;
    std::memcpy(&bits, &var, sizeof(T));
    bits = shuffle(mask, bits, kind, arg, width, site);
    std::memcpy(&var, &bits, sizeof(T));
    return var;
  }
  uint32_t words[sizeof(T) / 4];
  std::memcpy(words, &var, sizeof(T));
  for (uint32_t &w : words) w = static_cast<uint32_t>(shuffle(mask, w, kind, arg, width, site));
  std::memcpy(&var, words, sizeof(T));
  return var;
}
}  // namespace emu
}  // namespace hope

template <typename T>
T __shfl_sync(unsigned mask, T var, int src_lane, int width = 32, ::hope::emu::Site site = ::hope::emu::Site::here()) {
  return ::hope::emu::shuffle_value(mask, var, ::hope::emu::kShflIdx, src_lane, width, site);
}
template <typename T>
T __shfl_up_sync(unsigned mask, T var, unsigned delta, int width = 32,
                 ::hope::emu::Site site = ::hope::emu::Site::here()) {
  return ::hope::emu::shuffle_value(mask, var, ::hope::emu::kShflUp, static_cast<int>(delta), width, site);
}
template <typename T>
T __shfl_down_sync(unsigned mask, T var, unsigned delta, int width = 32,
                   ::hope::emu::Site site = ::hope::emu::Site::here()) {
  return ::hope::emu::shuffle_value(mask, var, ::hope::emu::kShflDown, static_cast<int>(delta), width, site);
}
template <typename T>
T __shfl_xor_sync(unsigned mask, T var, int lane_mask, int width = 32,
                  ::hope::emu::Site site = ::hope::emu::Site::here()) {
  return ::hope::emu::shuffle_value(mask, var, ::hope::emu::kShflXor, lane_mask, width, site);
}
inline unsigned __ballot_sync(unsigned mask, int pred, ::hope::emu::Site site = ::hope::emu::Site::here()) {
  return ::hope::emu::vote(mask, pred, ::hope::emu::kVoteBallot, site);
}
inline int __any_sync(unsigned mask, int pred, ::hope::emu::Site site = ::hope::emu::Site::here()) {
  return static_cast<int>(::hope::emu::vote(mask, pred, ::hope::emu::kVoteAny, site));
}
inline int __all_sync(unsigned mask, int pred, ::hope::emu::Site site = ::hope::emu::Site::here()) {
  return static_cast<int>(::hope::emu::vote(mask, pred, ::hope::emu::kVoteAll, site));
}

// ---- loads and stores ("Read-Only Data Cache Load Function", "Load/Store Functions Using Cache Hints") -----
// The cache hints change nothing in the emulator; each is a plain access of global memory (which lives in
// host memory, so AddressSanitizer builds check it).
template <typename T>
T __ldg(const T *p) {
  return *p;
}
template <typename T>
T __ldcs(const T *p) {
  return *p;
}
template <typename T>
T __ldcg(const T *p) {
  return *p;
}
template <typename T>
void __stcs(T *p, T v) {
  *p = v;
}
template <typename T>
void __stcg(T *p, T v) {
  *p = v;
}

// Address-space conversion (PTX cvta.to.shared): the offset of a generic pointer in the CTA's shared memory.
inline size_t __cvta_generic_to_shared(const void *p, ::hope::emu::Site site = ::hope::emu::Site::here()) {
  return ::hope::emu::shared_address(p, site);
}

// ---- IEEE-rounded arithmetic intrinsics ("Single/Double Precision Intrinsics"): round to nearest even, never
// contracted (emulated kernels are compiled with -ffp-contract=off) -----------------------------------------
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline float __fmaf_rn(float a, float b, float c) { return std::fma(a, b, c); }
inline float __frcp_rn(float a) { return 1.0f / a; }
inline float __fsqrt_rn(float a) { return std::sqrt(a); }
inline double __dadd_rn(double a, double b) { return a + b; }
inline double __dmul_rn(double a, double b) { return a * b; }
inline double __fma_rn(double a, double b, double c) { return std::fma(a, b, c); }

// ---- approximate math functions ("Mathematical Functions": exp2f and expf within 2 ulp, logf and log2f
// within 1 ulp). The emulated versions use the full documented error (see exec.h) so a kernel whose result
// depends on the library's exact rounding fails here rather than on some GPU. ----------------------------
namespace hope {
namespace emu {
HOPE_EMU_API float approx_expf(float x);
HOPE_EMU_API float approx_logf(float x);
HOPE_EMU_API float approx_log2f(float x);
}  // namespace emu
}  // namespace hope
#define exp2f(x) ::hope::emu::ex2_approx(x)
#define expf(x) ::hope::emu::approx_expf(x)
#define logf(x) ::hope::emu::approx_logf(x)
#define log2f(x) ::hope::emu::approx_log2f(x)
#define __expf(x) ::hope::emu::approx_expf(x)
#define __logf(x) ::hope::emu::approx_logf(x)

// ---- integer and float min / max of device code (nvcc's math_functions.hpp overloads) -------------------
template <typename A, typename B,
          typename = std::enable_if_t<std::is_arithmetic<A>::value && std::is_arithmetic<B>::value>>
inline std::common_type_t<A, B> min(A a, B b) {
  using C = std::common_type_t<A, B>;
  return static_cast<C>(b) < static_cast<C>(a) ? static_cast<C>(b) : static_cast<C>(a);
}
template <typename A, typename B,
          typename = std::enable_if_t<std::is_arithmetic<A>::value && std::is_arithmetic<B>::value>>
inline std::common_type_t<A, B> max(A a, B b) {
  using C = std::common_type_t<A, B>;
  return static_cast<C>(a) < static_cast<C>(b) ? static_cast<C>(b) : static_cast<C>(a);
}

// ---- runtime API overloads nvcc's cuda_runtime.h adds for kernel function pointers ---------------------------
template <typename T>
inline cudaError_t cudaFuncSetAttribute(T *entry, cudaFuncAttribute attr, int value) {
  return ::cudaFuncSetAttribute(reinterpret_cast<const void *>(entry), attr, value);
}

// ---- atomics: emulated threads of one launch never run at the same time, so plain read-modify-writes are
// atomic; each is a preemption point like the hardware's memory operation. ----------------------------------
template <typename T>
T atomicAdd(T *p, T v) {
  ::hope::emu::preemption_point();
  const T old = *p;
  *p = old + v;
  return old;
}
template <typename T>
T atomicMax(T *p, T v) {
  ::hope::emu::preemption_point();
  const T old = *p;
  if (old < v) *p = v;
  return old;
}
template <typename T>
T atomicMin(T *p, T v) {
  ::hope::emu::preemption_point();
  const T old = *p;
  if (v < old) *p = v;
  return old;
}
template <typename T>
T atomicExch(T *p, T v) {
  ::hope::emu::preemption_point();
  const T old = *p;
  *p = v;
  return old;
}
template <typename T>
T atomicCAS(T *p, T compare, T v) {
  ::hope::emu::preemption_point();
  const T old = *p;
  if (old == compare) *p = v;
  return old;
}
