// rope_tile.cuh — the rotation of SPEC §4 as every fused-attention path applies it to 16-bit tiles: the sm80
// and sm90 kernels (Q and K tiles in shared memory) and the K pre-pass (k_prepass.cu) share these functions,
// so that all of them produce bit-identical rotated keys and queries.
#pragma once

#include <cstdint>

#include "common/vec.cuh"

namespace hope {

// Explicit _rn intrinsics leave the compiler no contraction choice, so every caller rounds identically.
__device__ __forceinline__ float rope_first(float x1, float x2, float c, float s) {
  return __fmaf_rn(x1, c, -__fmul_rn(x2, s));  // x[i] cos - x[i + half] sin
}
__device__ __forceinline__ float rope_second(float x1, float x2, float c, float s) {
  return __fmaf_rn(x2, c, __fmul_rn(x1, s));  // x[i + half] cos + x[i] sin
}

// Loads N consecutive floats (N = 4 or 8: cos or sin of N pairs); 16-byte vector loads when `aligned`.
template <int N>
__device__ __forceinline__ void load_floats_ro(float (&v)[N], const float *p, bool aligned) {
  static_assert(N % 4 == 0, "whole float4s");
  if (aligned) {
#pragma unroll
    for (int i = 0; i < N / 4; ++i) {
      const float4 a = __ldg(reinterpret_cast<const float4 *>(p) + i);
      v[4 * i] = a.x; v[4 * i + 1] = a.y; v[4 * i + 2] = a.z; v[4 * i + 3] = a.w;
    }
  } else {
#pragma unroll
    for (int j = 0; j < N; ++j) v[j] = __ldg(p + j);
  }
}
__device__ __forceinline__ void load_f8(float (&v)[8], const float *p, bool aligned) { load_floats_ro<8>(v, p, aligned); }

// Rotates N pairs held as N / 2 words of two T each: a holds x[i..i+N-1], b holds x[i+half..i+half+N-1].
template <typename T, int N>
__device__ __forceinline__ void rope_pairs(uint32_t (&a)[N / 2], uint32_t (&b)[N / 2], const float (&c)[N],
                                           const float (&s)[N]) {
#pragma unroll
  for (int j = 0; j < N / 2; ++j) {
    const float2 x1 = unpack2<T>(a[j]);
    const float2 x2 = unpack2<T>(b[j]);
    const int e = 2 * j;
    a[j] = pack2<T>(rope_first(x1.x, x2.x, c[e], s[e]), rope_first(x1.y, x2.y, c[e + 1], s[e + 1]));
    b[j] = pack2<T>(rope_second(x1.x, x2.x, c[e], s[e]), rope_second(x1.y, x2.y, c[e + 1], s[e + 1]));
  }
}

// Rotates 8 pairs: lo holds x[i..i+7], hi holds x[i+half..i+half+7] (8 elements of T each).
template <typename T>
__device__ __forceinline__ void rope_chunk(uint4 &lo, uint4 &hi, const float (&c)[8], const float (&s)[8]) {
  rope_pairs<T, 8>(*reinterpret_cast<uint32_t(*)[4]>(&lo), *reinterpret_cast<uint32_t(*)[4]>(&hi), c, s);
}

}  // namespace hope
