// vec.cuh — 16-byte vector loads and stores of any element type, converted to and from float32 registers,
// the alignment test that decides whether a kernel may use them, and the paired (half2 / bfloat162)
// pack/unpack helpers of the serving and fused attention kernels.
#pragma once

#include <cstdint>
#include <cstring>

#include "common/dtype.cuh"

namespace hope {

// The bits of a register value as another type of the same size. Reading a uint4 through a __half2 pointer
// breaks C++'s aliasing rules, and optimisers act on that (the emulated GPU's g++ build returned stale
// values from exactly such a read in the decode kernel's unpack8); a memcpy of a register is the conforming
// spelling and compiles to nothing.
template <typename To, typename From>
__device__ __forceinline__ To bit_cast(const From &from) {
  static_assert(sizeof(To) == sizeof(From), "bit_cast between types of one size");
  To to;
  memcpy(&to, &from, sizeof(To));
  return to;
}

// N elements of T as one value (for bit_cast to and from vector registers).
template <typename T, int N>
struct ElemArray {
  T v[N];
};

// Elements of T in one 16-byte vector: 8 for float16/bfloat16, 4 for float32.
template <typename T>
struct Vec16 {
  static constexpr int kElems = 16 / sizeof(T);
  static_assert(16 % sizeof(T) == 0, "element size must divide 16 bytes");
};

inline bool is_aligned16(const void *p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

// Raw 16-byte load at p (16-byte aligned): evict-first hint when STREAMING (data read once), else the
// read-only cache path. Keep the raw vector in registers and convert late (unpack16) to save registers.
template <bool STREAMING = false, typename T>
__device__ __forceinline__ uint4 load16(const T *p) {
  const uint4 *src = reinterpret_cast<const uint4 *>(p);
  return STREAMING ? __ldcs(src) : __ldg(src);
}

// The 16 raw bytes of a vector of T as floats.
template <typename T>
__device__ __forceinline__ void unpack16(const uint4 &raw, float (&out)[Vec16<T>::kElems]) {
  const auto e = bit_cast<ElemArray<T, Vec16<T>::kElems>>(raw);
#pragma unroll
  for (int i = 0; i < Vec16<T>::kElems; ++i) out[i] = to_float(e.v[i]);
}

// Loads 16 bytes at p (16-byte aligned) and converts them to float. `Streaming` uses the evict-first hint
// (data read once, e.g. a tensor being rotated), otherwise the read-only cache path.
template <typename T, bool STREAMING = false>
__device__ __forceinline__ void load16_to_float(const T *p, float (&out)[Vec16<T>::kElems]) {
  unpack16<T>(load16<STREAMING>(p), out);
}

// Converts float registers to T (round to nearest even) and stores 16 bytes at p (16-byte aligned).
template <typename T, bool STREAMING = false>
__device__ __forceinline__ void store16_from_float(T *p, const float (&in)[Vec16<T>::kElems]) {
  ElemArray<T, Vec16<T>::kElems> e;
#pragma unroll
  for (int i = 0; i < Vec16<T>::kElems; ++i) e.v[i] = from_float<T>(in[i]);
  const uint4 raw = bit_cast<uint4>(e);
  uint4 *dst = reinterpret_cast<uint4 *>(p);
  if (STREAMING) __stcs(dst, raw);
  else *dst = raw;
}

// Loads N floats (N a multiple of 4) from 16-byte-aligned p through the read-only cache.
template <int N>
__device__ __forceinline__ void load_floats(const float *p, float (&out)[N]) {
  static_assert(N % 4 == 0, "N must be a multiple of 4");
#pragma unroll
  for (int i = 0; i < N / 4; ++i) {
    float4 v = __ldg(reinterpret_cast<const float4 *>(p) + i);
    out[4 * i] = v.x;
    out[4 * i + 1] = v.y;
    out[4 * i + 2] = v.z;
    out[4 * i + 3] = v.w;
  }
}

// Paired half-precision type of T (__half2 / __nv_bfloat162) with its two-lane float conversions.
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

// Two floats -> one 32-bit register of two T (lo in the low half), round to nearest even; and back.
template <typename T>
__device__ __forceinline__ uint32_t pack2(float lo, float hi) {
  return bit_cast<uint32_t>(Pair<T>::from_float2(lo, hi));
}
template <typename T>
__device__ __forceinline__ float2 unpack2(uint32_t v) {
  return Pair<T>::to_float2(bit_cast<typename Pair<T>::Type>(v));
}

// 8 half-precision elements in a uint4 -> 8 floats, and back (paired conversions).
template <typename T>
__device__ __forceinline__ void unpack8(const uint4 &raw, float (&f)[8]) {
  const uint32_t w[4] = {raw.x, raw.y, raw.z, raw.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 x = unpack2<T>(w[i]);
    f[2 * i] = x.x;
    f[2 * i + 1] = x.y;
  }
}
template <typename T>
__device__ __forceinline__ uint4 pack8(const float (&f)[8]) {
  uint4 raw;
  raw.x = pack2<T>(f[0], f[1]);
  raw.y = pack2<T>(f[2], f[3]);
  raw.z = pack2<T>(f[4], f[5]);
  raw.w = pack2<T>(f[6], f[7]);
  return raw;
}

}  // namespace hope
