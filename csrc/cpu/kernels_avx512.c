/* cpu/kernels_avx512.c — AVX-512 float32 micro-kernels (F32 mode), built with a target attribute and chosen
 * at run time (isa.c), so the library needs no global -mavx512 flag and runs on any x86-64.
 *
 * Q.K^T: a tile of up to 12 query rows x 32 keys lives in 24 zmm accumulators; per head_dim column it loads
 * two 16-key vectors of the K panel and broadcasts one q value per row (12 rows x 2 FMAs per 2 loads).
 * P.V: a tile of up to 6 rows x 64 output columns (24 accumulators) walks all keys of the block: per key four
 * V vectors and one broadcast p per row. exp2 is a degree-6 polynomial on [-1/2, 1/2] with vscalefps.
 * The functions are also the F32 half of the AVX512_BF16 table (kernels_avx512bf16.c). */
#include "kernels_x86.h"

#if HOPEI_X86_KERNELS
#include <math.h>
#include <string.h>

#define QK_MR 12
#define PV_MR 6

/* S[MR][16 NV] = Q[MR][dp] . K^T for NV (1 or 2) chunks of 16 keys. */
HOPEI_T512 HOPEI_INLINE void qk_tile(const int MR, const int NV, const float *q, int64_t q_ld, const float *k,
                                     int dp, float *s, int64_t s_ld) {
  __m512 acc[QK_MR][2];
#pragma GCC unroll 12
  for (int r = 0; r < MR; ++r) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
  const float *k1 = k + (int64_t)HOPEI_KEY_CHUNK * dp;
  for (int c = 0; c < dp; ++c) {
    const __m512 b0 = _mm512_loadu_ps(k + c * HOPEI_KEY_CHUNK);
    const __m512 b1 = NV > 1 ? _mm512_loadu_ps(k1 + c * HOPEI_KEY_CHUNK) : b0;
#pragma GCC unroll 12
    for (int r = 0; r < MR; ++r) {
      const __m512 a = _mm512_set1_ps(q[r * q_ld + c]);
      acc[r][0] = _mm512_fmadd_ps(a, b0, acc[r][0]);
      if (NV > 1) acc[r][1] = _mm512_fmadd_ps(a, b1, acc[r][1]);
    }
  }
#pragma GCC unroll 12
  for (int r = 0; r < MR; ++r) {
    _mm512_storeu_ps(s + r * s_ld, acc[r][0]);
    if (NV > 1) _mm512_storeu_ps(s + r * s_ld + 16, acc[r][1]);
  }
}

#define QK_CASE(MR)                                          \
  case MR:                                                   \
    if (nv == 2) qk_tile(MR, 2, qq, q_ld, kk, dp, ss, s_ld); \
    else qk_tile(MR, 1, qq, q_ld, kk, dp, ss, s_ld);         \
    break;

HOPEI_T512 void hopei_avx512_qk_f32(const float *q, int64_t q_ld, int rows, const float *k, int keys, int dp,
                                    float *s, int64_t s_ld) {
  for (int r0 = 0; r0 < rows; r0 += QK_MR) {
    const int mr = rows - r0 < QK_MR ? rows - r0 : QK_MR;
    for (int j = 0; j < keys; j += 2 * HOPEI_KEY_CHUNK) {
      const int nv = keys - j >= 2 * HOPEI_KEY_CHUNK ? 2 : 1;
      const float *qq = q + r0 * q_ld, *kk = k + (int64_t)j * dp;
      float *ss = s + r0 * s_ld + j;
      switch (mr) {
        QK_CASE(1) QK_CASE(2) QK_CASE(3) QK_CASE(4) QK_CASE(5) QK_CASE(6)
        QK_CASE(7) QK_CASE(8) QK_CASE(9) QK_CASE(10) QK_CASE(11) QK_CASE(12)
        default: break;
      }
    }
  }
}

/* O[MR][16 NC] += P[MR][keys] . V[keys][16 NC] (V rows dp apart). */
HOPEI_T512 HOPEI_INLINE void pv_tile(const int MR, const int NC, const float *p, int64_t p_ld, const float *v,
                                     int keys, int dp, float *o, int64_t o_ld) {
  __m512 acc[PV_MR][4];
#pragma GCC unroll 6
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
    for (int j = 0; j < NC; ++j) acc[r][j] = _mm512_loadu_ps(o + r * o_ld + 16 * j);
  for (int n = 0; n < keys; ++n) {
    __m512 b[4];
#pragma GCC unroll 4
    for (int j = 0; j < NC; ++j) b[j] = _mm512_loadu_ps(v + (int64_t)n * dp + 16 * j);
#pragma GCC unroll 6
    for (int r = 0; r < MR; ++r) {
      const __m512 a = _mm512_set1_ps(p[r * p_ld + n]);
#pragma GCC unroll 4
      for (int j = 0; j < NC; ++j) acc[r][j] = _mm512_fmadd_ps(a, b[j], acc[r][j]);
    }
  }
#pragma GCC unroll 6
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
    for (int j = 0; j < NC; ++j) _mm512_storeu_ps(o + r * o_ld + 16 * j, acc[r][j]);
}

#define PV_CASE(MR)                                                  \
  case MR:                                                           \
    if (nc == 4) pv_tile(MR, 4, pp, p_ld, vv, keys, dp, oo, o_ld);   \
    else pv_tile(MR, 2, pp, p_ld, vv, keys, dp, oo, o_ld);           \
    break;

HOPEI_T512 void hopei_avx512_pv_f32(const float *p, int64_t p_ld, int rows, const float *v, int keys, int dp,
                                    float *o, int64_t o_ld) {
  for (int r0 = 0; r0 < rows; r0 += PV_MR) {
    const int mr = rows - r0 < PV_MR ? rows - r0 : PV_MR;
    for (int c0 = 0; c0 < dp; c0 += 64) {
      const int nc = dp - c0 >= 64 ? 4 : 2; /* dp is a multiple of 32 */
      const float *pp = p + r0 * p_ld, *vv = v + c0;
      float *oo = o + r0 * o_ld + c0;
      switch (mr) {
        PV_CASE(1) PV_CASE(2) PV_CASE(3) PV_CASE(4) PV_CASE(5) PV_CASE(6)
        default: break;
      }
    }
  }
}

HOPEI_T512 float hopei_avx512_row_max(const float *x, int n) {
  __m512 m = _mm512_set1_ps(-INFINITY);
  int i = 0;
  for (; i + 16 <= n; i += 16) m = _mm512_max_ps(m, _mm512_loadu_ps(x + i));
  if (i < n) {
    const __mmask16 k = (__mmask16)((1u << (n - i)) - 1u);
    m = _mm512_mask_max_ps(m, k, m, _mm512_maskz_loadu_ps(k, x + i));
  }
  return _mm512_reduce_max_ps(m);
}

HOPEI_T512 float hopei_avx512_exp_f32(const float *x, float *p, int n, int n_pad, float mul, float sub) {
  const __m512 vm = _mm512_set1_ps(mul), vs = _mm512_set1_ps(sub);
  __m512 sum = _mm512_setzero_ps();
  int i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512 e = hopei_exp2_512(_mm512_fmsub_ps(_mm512_loadu_ps(x + i), vm, vs));
    _mm512_storeu_ps(p + i, e);
    sum = _mm512_add_ps(sum, e);
  }
  if (i < n) {
    const __mmask16 k = (__mmask16)((1u << (n - i)) - 1u);
    const __m512 e = _mm512_maskz_mov_ps(k, hopei_exp2_512(_mm512_fmsub_ps(_mm512_maskz_loadu_ps(k, x + i), vm, vs)));
    _mm512_storeu_ps(p + i, e); /* n_pad >= i + 16: zeros past n */
    sum = _mm512_add_ps(sum, e);
    i += 16;
  }
  for (; i < n_pad; i += 16) _mm512_storeu_ps(p + i, _mm512_setzero_ps());
  return _mm512_reduce_add_ps(sum);
}

HOPEI_T512 void hopei_avx512_scale(float *x, int n, float a) {
  const __m512 va = _mm512_set1_ps(a);
  int i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(x + i, _mm512_mul_ps(_mm512_loadu_ps(x + i), va));
  for (; i < n; ++i) x[i] *= a;
}

/* 16 values of `dtype` at src (the first `valid` of them; the rest read as zero) as float32. */
HOPEI_T512 HOPEI_INLINE __m512 load16(const void *src, int32_t dtype, int valid) {
  const __mmask16 k = valid >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (valid > 0 ? valid : 0)) - 1u);
  if (dtype == HOPE_DTYPE_FLOAT32) return _mm512_maskz_loadu_ps(k, src);
  const __m256i h = _mm256_maskz_loadu_epi16(k, src);
  if (dtype == HOPE_DTYPE_BFLOAT16) return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
  return _mm512_cvtph_ps(h);
}

HOPEI_T512 void hopei_avx512_pack_k_f32(const void *const *rows, int n, int32_t dtype, int d, int dp, float *dst) {
  const size_t esz = hopei_dtype_size(dtype);
  for (int c0 = 0; c0 < dp; c0 += 16) {
    __m512i t[16];
    for (int i = 0; i < 16; ++i)
      t[i] = i < n ? _mm512_castps_si512(load16((const char *)rows[i] + (size_t)c0 * esz, dtype, d - c0))
                   : _mm512_setzero_si512();
    hopei_transpose16x16_epi32(t);
    for (int c = 0; c < 16; ++c) _mm512_storeu_si512(dst + (int64_t)(c0 + c) * 16, t[c]);
  }
}

HOPEI_T512 void hopei_avx512_pack_v_f32(const void *const *rows, int n, int32_t dtype, int d, int dp, float *dst) {
  const size_t esz = hopei_dtype_size(dtype);
  for (int i = 0; i < 16; ++i)
    for (int c0 = 0; c0 < dp; c0 += 16)
      _mm512_storeu_ps(dst + (int64_t)i * dp + c0, i < n ? load16((const char *)rows[i] + (size_t)c0 * esz, dtype,
                                                                    d - c0)
                                                         : _mm512_setzero_ps());
}

static const hopei_cpu_kernels_t kAvx512 = {
    .name = "avx512",
    .isa = HOPEI_ISA_AVX512,
    .qk_f32 = hopei_avx512_qk_f32,
    .pv_f32 = hopei_avx512_pv_f32,
    .row_max = hopei_avx512_row_max,
    .exp_f32 = hopei_avx512_exp_f32,
    .scale = hopei_avx512_scale,
    .pack_k_f32 = hopei_avx512_pack_k_f32,
    .pack_v_f32 = hopei_avx512_pack_v_f32,
};

const hopei_cpu_kernels_t *hopei_cpu_kernels_avx512(void) { return &kAvx512; }

#else

const hopei_cpu_kernels_t *hopei_cpu_kernels_avx512(void) { return NULL; }

#endif
