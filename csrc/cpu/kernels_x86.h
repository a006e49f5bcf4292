/* cpu/kernels_x86.h — what the x86 kernel files share: the target attributes (each function that uses an
 * ISA's intrinsics carries its attribute; nothing is compiled with a global -m flag), the vector exp2 and the
 * 16 x 16 transpose, and the AVX-512 float32 kernels the AVX512_BF16 table reuses. */
#ifndef HOPE_CPU_KERNELS_X86_H_
#define HOPE_CPU_KERNELS_X86_H_

#include "kernels.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define HOPEI_X86_KERNELS 1
#include <immintrin.h>

#define HOPEI_T256 __attribute__((target("avx2,fma,f16c")))
#define HOPEI_T512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")))
#define HOPEI_T512BF16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,avx2,fma,f16c")))
#define HOPEI_INLINE static inline __attribute__((always_inline))

/* exp2 on [-1/2, 1/2]: 1 + f (c1 + f (c2 + ...)), the Cephes exp2f minimax coefficients (relative error
 * below 2e-7), then scaled by 2^n. Inputs below -126 give 0 (the driver's arguments are <= ~0); NaN stays
 * NaN. */
#define HOPEI_EXP2_C6 1.535336188319500e-4f
#define HOPEI_EXP2_C5 1.339887440266574e-3f
#define HOPEI_EXP2_C4 9.618437357674640e-3f
#define HOPEI_EXP2_C3 5.550332471162809e-2f
#define HOPEI_EXP2_C2 2.402264791363012e-1f
#define HOPEI_EXP2_C1 6.931472028550421e-1f

HOPEI_T512 HOPEI_INLINE __m512 hopei_exp2_512(__m512 x) {
  const __mmask16 live = _mm512_cmp_ps_mask(x, _mm512_set1_ps(-126.f), _CMP_NLT_UQ);
  const __m512 n = _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m512 f = _mm512_sub_ps(x, n);
  __m512 p = _mm512_set1_ps(HOPEI_EXP2_C6);
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(HOPEI_EXP2_C5));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(HOPEI_EXP2_C4));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(HOPEI_EXP2_C3));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(HOPEI_EXP2_C2));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(HOPEI_EXP2_C1));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.f));
  return _mm512_maskz_scalef_ps(live, p, n);
}

HOPEI_T256 HOPEI_INLINE __m256 hopei_exp2_256(__m256 x) {
  const __m256 live = _mm256_cmp_ps(x, _mm256_set1_ps(-126.f), _CMP_NLT_UQ);
  const __m256 xc = _mm256_max_ps(x, _mm256_set1_ps(-126.f)); /* keeps the exponent arithmetic in range */
  const __m256 n = _mm256_round_ps(xc, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m256 f = _mm256_sub_ps(xc, n);
  __m256 p = _mm256_set1_ps(HOPEI_EXP2_C6);
  p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(HOPEI_EXP2_C5));
  p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(HOPEI_EXP2_C4));
  p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(HOPEI_EXP2_C3));
  p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(HOPEI_EXP2_C2));
  p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(HOPEI_EXP2_C1));
  p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.f));
  const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  const __m256 r = _mm256_mul_ps(p, _mm256_castsi256_ps(e));
  /* NaN inputs: `live` is all ones and max() dropped the NaN; put it back */
  const __m256 nan = _mm256_cmp_ps(x, x, _CMP_UNORD_Q);
  return _mm256_or_ps(_mm256_and_ps(r, live), _mm256_and_ps(nan, x));
}

/* Transposes a 16 x 16 block of 32-bit elements held as 16 rows: afterwards t[j] holds column j. */
HOPEI_T512 HOPEI_INLINE void hopei_transpose16x16_epi32(__m512i t[16]) {
  __m512i a[16], b[16];
  for (int k = 0; k < 8; ++k) { /* within 128-bit lanes: pairs of rows */
    a[2 * k] = _mm512_unpacklo_epi32(t[2 * k], t[2 * k + 1]);
    a[2 * k + 1] = _mm512_unpackhi_epi32(t[2 * k], t[2 * k + 1]);
  }
  for (int k = 0; k < 4; ++k) { /* b[4k + m], lane L: column 4L + m of rows 4k..4k+3 */
    b[4 * k + 0] = _mm512_unpacklo_epi64(a[4 * k], a[4 * k + 2]);
    b[4 * k + 1] = _mm512_unpackhi_epi64(a[4 * k], a[4 * k + 2]);
    b[4 * k + 2] = _mm512_unpacklo_epi64(a[4 * k + 1], a[4 * k + 3]);
    b[4 * k + 3] = _mm512_unpackhi_epi64(a[4 * k + 1], a[4 * k + 3]);
  }
  for (int m = 0; m < 4; ++m) { /* gather lane L of b[m], b[4+m], b[8+m], b[12+m] into column 4L + m */
    const __m512i x0 = _mm512_shuffle_i32x4(b[m], b[4 + m], 0x44), x1 = _mm512_shuffle_i32x4(b[m], b[4 + m], 0xee);
    const __m512i y0 = _mm512_shuffle_i32x4(b[8 + m], b[12 + m], 0x44),
                  y1 = _mm512_shuffle_i32x4(b[8 + m], b[12 + m], 0xee);
    t[0 + m] = _mm512_shuffle_i32x4(x0, y0, 0x88);
    t[4 + m] = _mm512_shuffle_i32x4(x0, y0, 0xdd);
    t[8 + m] = _mm512_shuffle_i32x4(x1, y1, 0x88);
    t[12 + m] = _mm512_shuffle_i32x4(x1, y1, 0xdd);
  }
}

/* The AVX-512 float32 kernels (kernels_avx512.c), shared with the AVX512_BF16 table. */
void hopei_avx512_qk_f32(const float *q, int64_t q_ld, int rows, const float *k, int keys, int dp, float *s,
                         int64_t s_ld);
void hopei_avx512_pv_f32(const float *p, int64_t p_ld, int rows, const float *v, int keys, int dp, float *o,
                         int64_t o_ld);
float hopei_avx512_row_max(const float *x, int n);
float hopei_avx512_exp_f32(const float *x, float *p, int n, int n_pad, float mul, float sub);
void hopei_avx512_scale(float *x, int n, float a);
void hopei_avx512_pack_k_f32(const void *const *rows, int n, int32_t dtype, int d, int dp, float *dst);
void hopei_avx512_pack_v_f32(const void *const *rows, int n, int32_t dtype, int d, int dp, float *dst);

#else
#define HOPEI_X86_KERNELS 0
#endif

#endif /* HOPE_CPU_KERNELS_X86_H_ */
