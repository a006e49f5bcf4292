/* cpu/kernels_avx2.c — AVX2 + FMA float32 micro-kernels (F32 mode) for x86-64 CPUs without AVX-512.
 * Q.K^T: a tile of up to 6 rows x 16 keys (12 ymm accumulators; one 16-key chunk is two ymm loads per column).
 * P.V: a tile of up to 6 rows x 16 columns (12 accumulators) walks the keys of the block. Packing uses the
 * portable packers (it is off the hot path for prefill). */
#include "kernels_x86.h"

#if HOPEI_X86_KERNELS
#include <math.h>
#include <string.h>

#define MR_MAX 6

HOPEI_T256 HOPEI_INLINE void qk_tile(const int MR, const float *q, int64_t q_ld, const float *k, int dp, float *s,
                                     int64_t s_ld) {
  __m256 acc[MR_MAX][2];
#pragma GCC unroll 6
  for (int r = 0; r < MR; ++r) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
  for (int c = 0; c < dp; ++c) {
    const __m256 b0 = _mm256_loadu_ps(k + c * HOPEI_KEY_CHUNK), b1 = _mm256_loadu_ps(k + c * HOPEI_KEY_CHUNK + 8);
#pragma GCC unroll 6
    for (int r = 0; r < MR; ++r) {
      const __m256 a = _mm256_broadcast_ss(q + r * q_ld + c);
      acc[r][0] = _mm256_fmadd_ps(a, b0, acc[r][0]);
      acc[r][1] = _mm256_fmadd_ps(a, b1, acc[r][1]);
    }
  }
#pragma GCC unroll 6
  for (int r = 0; r < MR; ++r) {
    _mm256_storeu_ps(s + r * s_ld, acc[r][0]);
    _mm256_storeu_ps(s + r * s_ld + 8, acc[r][1]);
  }
}

HOPEI_T256 static void qk_f32(const float *q, int64_t q_ld, int rows, const float *k, int keys, int dp, float *s,
                              int64_t s_ld) {
  for (int r0 = 0; r0 < rows; r0 += MR_MAX) {
    const int mr = rows - r0 < MR_MAX ? rows - r0 : MR_MAX;
    for (int j = 0; j < keys; j += HOPEI_KEY_CHUNK) {
      const float *qq = q + r0 * q_ld, *kk = k + (int64_t)j * dp;
      float *ss = s + r0 * s_ld + j;
      switch (mr) {
        case 1: qk_tile(1, qq, q_ld, kk, dp, ss, s_ld); break;
        case 2: qk_tile(2, qq, q_ld, kk, dp, ss, s_ld); break;
        case 3: qk_tile(3, qq, q_ld, kk, dp, ss, s_ld); break;
        case 4: qk_tile(4, qq, q_ld, kk, dp, ss, s_ld); break;
        case 5: qk_tile(5, qq, q_ld, kk, dp, ss, s_ld); break;
        default: qk_tile(6, qq, q_ld, kk, dp, ss, s_ld); break;
      }
    }
  }
}

HOPEI_T256 HOPEI_INLINE void pv_tile(const int MR, const float *p, int64_t p_ld, const float *v, int keys, int dp,
                                     float *o, int64_t o_ld) {
  __m256 acc[MR_MAX][2];
#pragma GCC unroll 6
  for (int r = 0; r < MR; ++r) {
    acc[r][0] = _mm256_loadu_ps(o + r * o_ld);
    acc[r][1] = _mm256_loadu_ps(o + r * o_ld + 8);
  }
  for (int n = 0; n < keys; ++n) {
    const __m256 b0 = _mm256_loadu_ps(v + (int64_t)n * dp), b1 = _mm256_loadu_ps(v + (int64_t)n * dp + 8);
#pragma GCC unroll 6
    for (int r = 0; r < MR; ++r) {
      const __m256 a = _mm256_broadcast_ss(p + r * p_ld + n);
      acc[r][0] = _mm256_fmadd_ps(a, b0, acc[r][0]);
      acc[r][1] = _mm256_fmadd_ps(a, b1, acc[r][1]);
    }
  }
#pragma GCC unroll 6
  for (int r = 0; r < MR; ++r) {
    _mm256_storeu_ps(o + r * o_ld, acc[r][0]);
    _mm256_storeu_ps(o + r * o_ld + 8, acc[r][1]);
  }
}

HOPEI_T256 static void pv_f32(const float *p, int64_t p_ld, int rows, const float *v, int keys, int dp, float *o,
                              int64_t o_ld) {
  for (int r0 = 0; r0 < rows; r0 += MR_MAX) {
    const int mr = rows - r0 < MR_MAX ? rows - r0 : MR_MAX;
    for (int c0 = 0; c0 < dp; c0 += 16) {
      const float *pp = p + r0 * p_ld, *vv = v + c0;
      float *oo = o + r0 * o_ld + c0;
      switch (mr) {
        case 1: pv_tile(1, pp, p_ld, vv, keys, dp, oo, o_ld); break;
        case 2: pv_tile(2, pp, p_ld, vv, keys, dp, oo, o_ld); break;
        case 3: pv_tile(3, pp, p_ld, vv, keys, dp, oo, o_ld); break;
        case 4: pv_tile(4, pp, p_ld, vv, keys, dp, oo, o_ld); break;
        case 5: pv_tile(5, pp, p_ld, vv, keys, dp, oo, o_ld); break;
        default: pv_tile(6, pp, p_ld, vv, keys, dp, oo, o_ld); break;
      }
    }
  }
}

HOPEI_T256 HOPEI_INLINE float hmax8(__m256 v) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_movehdup_ps(m));
  return _mm_cvtss_f32(m);
}

HOPEI_T256 HOPEI_INLINE float hsum8(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

HOPEI_T256 static float row_max(const float *x, int n) {
  __m256 m = _mm256_set1_ps(-INFINITY);
  int i = 0;
  for (; i + 8 <= n; i += 8) m = _mm256_max_ps(m, _mm256_loadu_ps(x + i));
  float r = hmax8(m);
  for (; i < n; ++i) r = x[i] > r ? x[i] : r;
  return r;
}

HOPEI_T256 static float exp_f32(const float *x, float *p, int n, int n_pad, float mul, float sub) {
  const __m256 vm = _mm256_set1_ps(mul), vs = _mm256_set1_ps(sub);
  __m256 sum = _mm256_setzero_ps();
  float tail[8];
  for (int i = 0; i < n_pad; i += 8) {
    __m256 xv;
    if (i + 8 <= n) {
      xv = _mm256_loadu_ps(x + i);
    } else { /* the last partial vector: past n the result is 0 */
      for (int t = 0; t < 8; ++t) tail[t] = i + t < n ? x[i + t] : -INFINITY;
      xv = _mm256_loadu_ps(tail);
    }
    const __m256 e = hopei_exp2_256(_mm256_fmsub_ps(xv, vm, vs));
    _mm256_storeu_ps(p + i, e);
    sum = _mm256_add_ps(sum, e);
  }
  return hsum8(sum);
}

HOPEI_T256 static void scale(float *x, int n, float a) {
  const __m256 va = _mm256_set1_ps(a);
  int i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_loadu_ps(x + i), va));
  for (; i < n; ++i) x[i] *= a;
}

static const hopei_cpu_kernels_t kAvx2 = {
    .name = "avx2",
    .isa = HOPEI_ISA_AVX2,
    .qk_f32 = qk_f32,
    .pv_f32 = pv_f32,
    .row_max = row_max,
    .exp_f32 = exp_f32,
    .scale = scale,
    .pack_k_f32 = hopei_pack_k_f32_generic,
    .pack_v_f32 = hopei_pack_v_f32_generic,
};

const hopei_cpu_kernels_t *hopei_cpu_kernels_avx2(void) { return &kAvx2; }

#else

const hopei_cpu_kernels_t *hopei_cpu_kernels_avx2(void) { return NULL; }

#endif
