// common.cuh — small device helpers of the serving kernels: dtype conversion (round to nearest even),
// 16-byte vector <-> float conversion, cp.async with zero fill, and the launch-error check.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "../../csrc/internal.h"

namespace hope {
namespace serving {

__device__ __forceinline__ float to_f(float x) { return x; }
__device__ __forceinline__ float to_f(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_f(__nv_bfloat16 x) { return __bfloat162float(x); }

template <typename T>
__device__ __forceinline__ T from_f(float x);
template <>
__device__ __forceinline__ float from_f<float>(float x) { return x; }
template <>
__device__ __forceinline__ __half from_f<__half>(float x) { return __float2half_rn(x); }
template <>
__device__ __forceinline__ __nv_bfloat16 from_f<__nv_bfloat16>(float x) { return __float2bfloat16_rn(x); }

// The value a float32 takes once stored in T and read back.
template <typename T>
__device__ __forceinline__ float round_f(float x) { return to_f(from_f<T>(x)); }

template <typename T>
struct Pair;
template <>
struct Pair<__half> {
  using Type = __half2;
  static __device__ __forceinline__ float2 to_float2(Type v) { return __half22float2(v); }
  static __device__ __forceinline__ Type from_float2(float a, float b) { return __floats2half2_rn(a, b); }
};
template <>
struct Pair<__nv_bfloat16> {
  using Type = __nv_bfloat162;
  static __device__ __forceinline__ float2 to_float2(Type v) { return __bfloat1622float2(v); }
  static __device__ __forceinline__ Type from_float2(float a, float b) { return __floats2bfloat162_rn(a, b); }
};

// 8 half-precision elements in a uint4 -> 8 floats, and back.
template <typename T>
__device__ __forceinline__ void unpack8(const uint4 &raw, float (&f)[8]) {
  const typename Pair<T>::Type *h = reinterpret_cast<const typename Pair<T>::Type *>(&raw);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 x = Pair<T>::to_float2(h[i]);
    f[2 * i] = x.x;
    f[2 * i + 1] = x.y;
  }
}
template <typename T>
__device__ __forceinline__ uint4 pack8(const float (&f)[8]) {
  uint4 raw;
  typename Pair<T>::Type *h = reinterpret_cast<typename Pair<T>::Type *>(&raw);
#pragma unroll
  for (int i = 0; i < 4; ++i) h[i] = Pair<T>::from_float2(f[2 * i], f[2 * i + 1]);
  return raw;
}

// 16-byte asynchronous copy global -> shared; src_bytes 0 writes 16 zero bytes and reads nothing. The "memory"
// clobbers keep the compiler from moving shared-memory accesses across the copy, commit and wait.
__device__ __forceinline__ void cp_async_16(void *smem, const void *gmem, int src_bytes) {
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(gmem), "r"(src_bytes) : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

// Checks the launch just made; returns a status with a message naming `fn` and `what`.
inline hope_status_t check_launch(const char *fn, const char *what) {
  const cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) return hopei_cuda_fail(static_cast<int>(e), fn, what);
  return HOPE_SUCCESS;
}

}  // namespace serving
}  // namespace hope
