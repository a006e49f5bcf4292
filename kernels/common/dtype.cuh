// dtype.cuh — device-side conversions between the library's storage dtypes and float32 (round to nearest
// even, as __float2half_rn / __float2bfloat16_rn), and the dtype switch that turns hope_dtype_t into a type.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "hope_attn.h"

namespace hope {

template <typename T>
struct DtypeTraits;
template <>
struct DtypeTraits<float> {
  static constexpr int kDtype = HOPE_DTYPE_FLOAT32;
  static constexpr const char *kName = "float32";
};
template <>
struct DtypeTraits<__half> {
  static constexpr int kDtype = HOPE_DTYPE_FLOAT16;
  static constexpr const char *kName = "float16";
};
template <>
struct DtypeTraits<__nv_bfloat16> {
  static constexpr int kDtype = HOPE_DTYPE_BFLOAT16;
  static constexpr const char *kName = "bfloat16";
};

__device__ __forceinline__ float to_float(float x) { return x; }
__device__ __forceinline__ float to_float(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }

template <typename T>
__device__ __forceinline__ T from_float(float x);
template <>
__device__ __forceinline__ float from_float<float>(float x) { return x; }
template <>
__device__ __forceinline__ __half from_float<__half>(float x) { return __float2half_rn(x); }
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float x) { return __float2bfloat16_rn(x); }

// The value a float32 takes once stored in T (round to nearest even) and read back.
template <typename T>
__device__ __forceinline__ float round_to(float x) { return to_float(from_float<T>(x)); }

// Calls f(T{}) with T the C++ type of a hope_dtype_t; returns false (and calls nothing) for an unknown dtype.
template <typename F>
inline bool dispatch_dtype(int dtype, F &&f) {
  switch (dtype) {
    case HOPE_DTYPE_FLOAT16: f(__half{}); return true;
    case HOPE_DTYPE_BFLOAT16: f(__nv_bfloat16{}); return true;
    case HOPE_DTYPE_FLOAT32: f(float{}); return true;
    default: return false;
  }
}

}  // namespace hope
