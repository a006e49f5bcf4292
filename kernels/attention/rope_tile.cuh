// rope_tile.cuh — the rotation of SPEC §4 (and §8's pairings and rotary dimension) as every fused-attention
// path applies it to 16-bit tiles: the sm80 and sm90 kernels (Q and K tiles in shared memory) and the K
// pre-pass (k_prepass.cu) share these functions, so that all of them produce bit-identical rotated keys and
// queries.
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
  uint32_t a[4] = {lo.x, lo.y, lo.z, lo.w}, b[4] = {hi.x, hi.y, hi.z, hi.w};
  rope_pairs<T, 8>(a, b, c, s);
  lo = make_uint4(a[0], a[1], a[2], a[3]);
  hi = make_uint4(b[0], b[1], b[2], b[3]);
}

// Rotates N interleaved pairs (SPEC §8) held as N words of two T: pair j is (low, high) half of word j,
// i.e. (x[2i+2j], x[2i+2j+1]).
template <typename T, int N>
__device__ __forceinline__ void rope_pairs_interleaved(uint32_t (&w)[N], const float (&c)[N], const float (&s)[N]) {
#pragma unroll
  for (int j = 0; j < N; ++j) {
    const float2 x = unpack2<T>(w[j]);
    w[j] = pack2<T>(rope_first(x.x, x.y, c[j], s[j]), rope_second(x.x, x.y, c[j], s[j]));
  }
}

// Rotates 4 interleaved pairs: v holds x[2i..2i+7].
template <typename T>
__device__ __forceinline__ void rope_chunk_interleaved(uint4 &v, const float (&c)[4], const float (&s)[4]) {
  uint32_t w[4] = {v.x, v.y, v.z, v.w};
  rope_pairs_interleaved<T, 4>(w, c, s);
  v = make_uint4(w[0], w[1], w[2], w[3]);
}

__device__ __forceinline__ void load_f4(float (&v)[4], const float *p, bool aligned) { load_floats_ro<4>(v, p, aligned); }

// Rotates chunk c of the rotary dims of a row in place: rotate-half pairs chunk c (dims 8c..8c+7) with chunk
// c + rot_half/8 for c < rot_half/8; interleaved rotates the 4 pairs inside chunk c for c < rot_half/4. `at(ch)`
// gives the address of chunk ch of the row; cos/sin point at the row's table row (rot_half floats).
template <typename T, typename At>
__device__ __forceinline__ void rope_row_chunk(At at, int c, const float *cos, const float *sin, int rot_half,
                                               bool interleaved, bool aligned) {
  if (interleaved) {
    float cs[4], sn[4];
    load_f4(cs, cos + c * 4, aligned);
    load_f4(sn, sin + c * 4, aligned);
    uint4 *p = at(c);
    uint4 v = *p;
    rope_chunk_interleaved<T>(v, cs, sn);
    *p = v;
    return;
  }
  float cs[8], sn[8];
  load_f8(cs, cos + c * 8, aligned);
  load_f8(sn, sin + c * 8, aligned);
  uint4 *p_lo = at(c), *p_hi = at(c + rot_half / 8);
  uint4 lo = *p_lo, hi = *p_hi;
  rope_chunk<T>(lo, hi, cs, sn);
  *p_lo = lo;
  *p_hi = hi;
}

// Work items (chunks to rotate) per row: rot_half/8 chunk pairs (rotate-half) or rot_half/4 chunks (interleaved).
__host__ __device__ __forceinline__ int rope_items_per_row(int rot_half, bool interleaved) {
  return interleaved ? rot_half / 4 : rot_half / 8;
}

}  // namespace hope
