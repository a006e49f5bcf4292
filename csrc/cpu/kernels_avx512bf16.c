/* cpu/kernels_avx512bf16.c — BF16 mode on AVX512_BF16: `vdpbf16ps` multiplies pairs of bfloat16 values
 * exactly and adds both products into a float32 lane, twice the float32 FMA rate.
 *
 * Q.K^T: the K panel holds, per pair of head_dim columns, 16 keys x 2 values in one vector; a tile of up to
 * 12 rows x 32 keys (24 accumulators) broadcasts one (q[2c], q[2c+1]) pair per row.
 * P.V: the V panel holds, per pair of keys, each column's two values side by side; a tile of up to 6 rows x 64
 * columns broadcasts one (p[2n], p[2n+1]) pair per row.
 * P is rounded to bfloat16 for P.V (as a tensor-core FlashAttention does); its row sum, and so the lse, is
 * taken in float32 before the rounding. Packers for bfloat16 pages (the decode hot path) are
 * vector code: a 16 x 16 transpose for K, vpermt2w interleaving for V. Everything float32 comes from
 * kernels_avx512.c. */
#include "kernels_x86.h"

#if HOPEI_X86_KERNELS
#include <string.h>

#define QK_MR 12
#define PV_MR 6

HOPEI_T512BF16 HOPEI_INLINE __m512bh as_bh(__m512i x) { return (__m512bh)x; }

HOPEI_T512BF16 HOPEI_INLINE __m512i bcast_pair(const uint16_t *p) {
  int32_t w;
  memcpy(&w, p, sizeof w);
  return _mm512_set1_epi32(w);
}

HOPEI_T512BF16 HOPEI_INLINE void qk_tile(const int MR, const int NV, const uint16_t *q, int64_t q_ld,
                                         const uint16_t *k, int dp, float *s, int64_t s_ld) {
  __m512 acc[QK_MR][2];
#pragma GCC unroll 12
  for (int r = 0; r < MR; ++r) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
  const uint16_t *k1 = k + (int64_t)HOPEI_KEY_CHUNK * dp;
  for (int c = 0; c < dp; c += 2) {
    const __m512i b0 = _mm512_loadu_si512(k + c * HOPEI_KEY_CHUNK);
    const __m512i b1 = NV > 1 ? _mm512_loadu_si512(k1 + c * HOPEI_KEY_CHUNK) : b0;
#pragma GCC unroll 12
    for (int r = 0; r < MR; ++r) {
      const __m512i a = bcast_pair(q + r * q_ld + c);
      acc[r][0] = _mm512_dpbf16_ps(acc[r][0], as_bh(a), as_bh(b0));
      if (NV > 1) acc[r][1] = _mm512_dpbf16_ps(acc[r][1], as_bh(a), as_bh(b1));
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

HOPEI_T512BF16 static void qk_bf16(const uint16_t *q, int64_t q_ld, int rows, const uint16_t *k, int keys, int dp,
                                   float *s, int64_t s_ld) {
  for (int r0 = 0; r0 < rows; r0 += QK_MR) {
    const int mr = rows - r0 < QK_MR ? rows - r0 : QK_MR;
    for (int j = 0; j < keys; j += 2 * HOPEI_KEY_CHUNK) {
      const int nv = keys - j >= 2 * HOPEI_KEY_CHUNK ? 2 : 1;
      const uint16_t *qq = q + r0 * q_ld, *kk = k + (int64_t)j * dp;
      float *ss = s + r0 * s_ld + j;
      switch (mr) {
        QK_CASE(1) QK_CASE(2) QK_CASE(3) QK_CASE(4) QK_CASE(5) QK_CASE(6)
        QK_CASE(7) QK_CASE(8) QK_CASE(9) QK_CASE(10) QK_CASE(11) QK_CASE(12)
        default: break;
      }
    }
  }
}

/* O[MR][16 NC] += P[MR][keys] . V, V panel rows (key pairs) 2 dp values apart. */
HOPEI_T512BF16 HOPEI_INLINE void pv_tile(const int MR, const int NC, const uint16_t *p, int64_t p_ld,
                                         const uint16_t *v, int keys, int dp, float *o, int64_t o_ld) {
  __m512 acc[PV_MR][4];
#pragma GCC unroll 6
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
    for (int j = 0; j < NC; ++j) acc[r][j] = _mm512_loadu_ps(o + r * o_ld + 16 * j);
  for (int n = 0; n < keys; n += 2) {
    const uint16_t *vr = v + (int64_t)n * dp; /* key pair n/2: 2 dp values */
    __m512i b[4];
#pragma GCC unroll 4
    for (int j = 0; j < NC; ++j) b[j] = _mm512_loadu_si512(vr + 32 * j);
#pragma GCC unroll 6
    for (int r = 0; r < MR; ++r) {
      const __m512i a = bcast_pair(p + r * p_ld + n);
#pragma GCC unroll 4
      for (int j = 0; j < NC; ++j) acc[r][j] = _mm512_dpbf16_ps(acc[r][j], as_bh(a), as_bh(b[j]));
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

HOPEI_T512BF16 static void pv_bf16(const uint16_t *p, int64_t p_ld, int rows, const uint16_t *v, int keys, int dp,
                                   float *o, int64_t o_ld) {
  for (int r0 = 0; r0 < rows; r0 += PV_MR) {
    const int mr = rows - r0 < PV_MR ? rows - r0 : PV_MR;
    for (int c0 = 0; c0 < dp; c0 += 64) {
      const int nc = dp - c0 >= 64 ? 4 : 2; /* dp is a multiple of 32 */
      const uint16_t *pp = p + r0 * p_ld, *vv = v + 2 * c0;
      float *oo = o + r0 * o_ld + c0;
      switch (mr) {
        PV_CASE(1) PV_CASE(2) PV_CASE(3) PV_CASE(4) PV_CASE(5) PV_CASE(6)
        default: break;
      }
    }
  }
}

HOPEI_T512BF16 static float exp_bf16(const float *x, uint16_t *p, int n, int n_pad, float mul, float sub) {
  const __m512 vm = _mm512_set1_ps(mul), vs = _mm512_set1_ps(sub);
  __m512 sum = _mm512_setzero_ps();
  for (int i = 0; i < n_pad; i += 16) {
    const int valid = n - i;
    const __mmask16 k = valid >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (valid > 0 ? valid : 0)) - 1u);
    const __m512 e = _mm512_maskz_mov_ps(k, hopei_exp2_512(_mm512_fmsub_ps(_mm512_maskz_loadu_ps(k, x + i), vm, vs)));
    const __m256i h = (__m256i)_mm512_cvtneps_pbh(e);
    _mm256_storeu_si256((__m256i *)(p + i), h);
    sum = _mm512_add_ps(sum, e);
  }
  return _mm512_reduce_add_ps(sum);
}

/* 32 bfloat16 values of a row from column c0 (zeros past d); the row pointer is never NULL. Callers step c0 by 32
 * below dp, so c0 < d. */
HOPEI_T512BF16 HOPEI_INLINE __m512i load32_row(const uint16_t *row, int c0, int d) {
  if (c0 + 32 <= d) return _mm512_loadu_si512(row + c0);
  const int valid = d - c0;
  return _mm512_maskz_loadu_epi16(valid > 0 ? (__mmask32)((1u << valid) - 1u) : 0, row + c0);
}

/* The same for a row that may be missing (NULL: zeros). */
HOPEI_T512BF16 HOPEI_INLINE __m512i load32(const uint16_t *row, int c0, int d) {
  return row == NULL ? _mm512_setzero_si512() : load32_row(row, c0, d);
}

HOPEI_T512BF16 static void pack_k_bf16(const void *const *rows, int n, int d, int dp, uint16_t *dst) {
  for (int c0 = 0; c0 < dp; c0 += 32) { /* 16 pairs of columns at a time */
    __m512i t[16];
    for (int i = 0; i < 16; ++i) t[i] = load32(i < n ? (const uint16_t *)rows[i] : NULL, c0, d);
    hopei_transpose16x16_epi32(t); /* t[j]: pair c0/2 + j of the 16 keys */
    for (int j = 0; j < 16; ++j) _mm512_storeu_si512(dst + (int64_t)(c0 / 2 + j) * 32, t[j]);
  }
}

HOPEI_T512BF16 static void pack_v_bf16(const void *const *rows, int n, int d, int dp, uint16_t *dst) {
  /* lo: columns 0..15 of a and b interleaved; hi: columns 16..31 */
  const __m512i lo = _mm512_set_epi16(47, 15, 46, 14, 45, 13, 44, 12, 43, 11, 42, 10, 41, 9, 40, 8, 39, 7, 38, 6,
                                      37, 5, 36, 4, 35, 3, 34, 2, 33, 1, 32, 0);
  const __m512i hi = _mm512_add_epi16(lo, _mm512_set1_epi16(16));
  for (int m = 0; m < 8; ++m) {
    const uint16_t *a = 2 * m < n ? (const uint16_t *)rows[2 * m] : NULL;
    const uint16_t *b = 2 * m + 1 < n ? (const uint16_t *)rows[2 * m + 1] : NULL;
    uint16_t *o = dst + (int64_t)m * 2 * dp;
    for (int c0 = 0; c0 < dp; c0 += 32) {
      const __m512i va = load32(a, c0, d), vb = load32(b, c0, d);
      _mm512_storeu_si512(o + 2 * c0, _mm512_permutex2var_epi16(va, lo, vb));
      _mm512_storeu_si512(o + 2 * c0 + 32, _mm512_permutex2var_epi16(va, hi, vb));
    }
  }
}

/* ---- decode on cache rows (no packing) ------------------------------------------------------------------ */

/* Lane i of the result = the sum of the 16 lanes of a[i]. Four halving steps, each adding two vectors'
 * shuffled halves (first 256-bit halves, then 128-bit, 64-bit, 32-bit ones), leave key 4 (i % 4) + i / 4's sum
 * in lane i; a last permutation puts key i's sum in lane i. */
HOPEI_T512BF16 HOPEI_INLINE __m512 reduce16(const __m512 a[16]) {
  __m512 b[8], c[4], e[2];
  for (int k = 0; k < 8; ++k) /* 128-bit lanes 0,1: key 2k; 2,3: key 2k + 1 */
    b[k] = _mm512_add_ps(_mm512_shuffle_f32x4(a[2 * k], a[2 * k + 1], 0x44),
                         _mm512_shuffle_f32x4(a[2 * k], a[2 * k + 1], 0xee));
  for (int k = 0; k < 4; ++k) /* 128-bit lane L: key 4k + L */
    c[k] = _mm512_add_ps(_mm512_shuffle_f32x4(b[2 * k], b[2 * k + 1], 0x88),
                         _mm512_shuffle_f32x4(b[2 * k], b[2 * k + 1], 0xdd));
  for (int k = 0; k < 2; ++k) /* lane L, elements 0,1: key 8k + L; elements 2,3: key 8k + 4 + L */
    e[k] = _mm512_add_ps(_mm512_shuffle_ps(c[2 * k], c[2 * k + 1], 0x44),
                         _mm512_shuffle_ps(c[2 * k], c[2 * k + 1], 0xee));
  /* lane L, element j: key L + 4j */
  const __m512 f = _mm512_add_ps(_mm512_shuffle_ps(e[0], e[1], 0x88), _mm512_shuffle_ps(e[0], e[1], 0xdd));
  const __m512i order = _mm512_set_epi32(15, 11, 7, 3, 14, 10, 6, 2, 13, 9, 5, 1, 12, 8, 4, 0);
  return _mm512_permutexvar_ps(order, f);
}

/* S[r][0..16) for one q row against 16 K rows: one accumulator per key, reduced at the end. NC = dp / 32 in
 * {2, 4, 8} with d == dp: the q row stays in NC registers; NC = 0: any d and dp, q read from L1. */
HOPEI_T512BF16 HOPEI_INLINE void qk_rows16(const int NC, const uint16_t *q, const uint16_t *const *k, int d, int dp,
                                           float *s) {
  __m512i qv[8];
#pragma GCC unroll 8
  for (int c = 0; c < NC; ++c) qv[c] = _mm512_loadu_si512(q + 32 * c);
  __m512 acc[16];
#pragma GCC unroll 16
  for (int i = 0; i < 16; ++i) {
    const uint16_t *kr = k[i];
    __m512 a = _mm512_setzero_ps();
    if (NC > 0) {
#pragma GCC unroll 8
      for (int c = 0; c < NC; ++c)
        a = _mm512_dpbf16_ps(a, as_bh(qv[c]), as_bh(_mm512_loadu_si512(kr + 32 * c)));
    } else {
      for (int c = 0; c < dp; c += 32)
        a = _mm512_dpbf16_ps(a, as_bh(_mm512_loadu_si512(q + c)), as_bh(load32(kr, c, d)));
    }
    acc[i] = a;
  }
  _mm512_storeu_ps(s, reduce16(acc));
}

HOPEI_T512BF16 static void qk_rows_bf16(const uint16_t *q, int64_t q_ld, int rows, const void *const *krows, int keys,
                                        int d, int dp, float *s, int64_t s_ld) {
  const int nc = d == dp && (dp == 64 || dp == 128 || dp == 256) ? dp / 32 : 0;
  for (int i0 = 0; i0 < keys; i0 += 16) { /* the 16 rows stay in L1 across the q rows */
    const uint16_t *const *k = (const uint16_t *const *)krows + i0;
    for (int r = 0; r < rows; ++r) {
      const uint16_t *qr = q + r * q_ld;
      float *sr = s + r * s_ld + i0;
      switch (nc) {
        case 2: qk_rows16(2, qr, k, d, dp, sr); break;
        case 4: qk_rows16(4, qr, k, d, dp, sr); break;
        case 8: qk_rows16(8, qr, k, d, dp, sr); break;
        default: qk_rows16(0, qr, k, d, dp, sr); break;
      }
    }
  }
}

/* S[rows][keys] (row stride s_ld, rows <= 16) = Q . K^T on cache rows, the query rows given as a Q panel
 * (kernels.h). Per 16 keys: two halves of 8 keys (8 row pointers, 8 accumulators whose lanes are the 16 rows);
 * per pair c, one Q panel vector and each key's pair broadcast straight from its cache row; then the 16 x 16
 * tile of scores transposed in registers on its way out. Per (row, key) this is the vdpbf16ps sequence of qk_bf16
 * on a packed K panel with the operands swapped (a product of two bfloat16 values is exact): the same S, without
 * packing K. d is even. */
HOPEI_T512BF16 static void qk_qpanel_bf16(const uint16_t *qp, int rows, const void *const *krows, int keys, int d,
                                          int dp, float *s, int64_t s_ld) {
  (void)dp;
  float st[16][16] __attribute__((aligned(64))); /* st[key][row] */
  for (int i0 = 0; i0 < keys; i0 += 16) {
    const uint16_t *const *k = (const uint16_t *const *)krows + i0;
    for (int h = 0; h < 16; h += 8) {
      const uint16_t *kr[8];
#pragma GCC unroll 8
      for (int i = 0; i < 8; ++i) kr[i] = k[h + i];
      __m512 acc[8];
#pragma GCC unroll 8
      for (int i = 0; i < 8; ++i) acc[i] = _mm512_setzero_ps();
      for (int c = 0; c < d / 2; ++c) {
        const __m512i qv = _mm512_loadu_si512(qp + 32 * c);
#pragma GCC unroll 8
        for (int i = 0; i < 8; ++i) acc[i] = _mm512_dpbf16_ps(acc[i], as_bh(qv), as_bh(bcast_pair(kr[i] + 2 * c)));
      }
#pragma GCC unroll 8
      for (int i = 0; i < 8; ++i) _mm512_store_ps(st[h + i], acc[i]);
    }
    __m512i t[16];
#pragma GCC unroll 16
    for (int i = 0; i < 16; ++i) t[i] = _mm512_load_si512(st[i]);
    hopei_transpose16x16_epi32(t); /* t[r]: row r's 16 scores */
    for (int r = 0; r < rows; ++r) _mm512_storeu_si512(s + r * s_ld + i0, t[r]);
  }
}

/* O[MR][32 NC columns from c0] += P[MR][keys] . V: per pair of keys, their rows' columns interleaved in registers
 * (as pack_v_bf16 lays them out) and one (p[2n], p[2n+1]) broadcast per row. MR x NC <= 8. */
HOPEI_T512BF16 HOPEI_INLINE void pv_rows_tile(const int MR, const int NC, const uint16_t *p, int64_t p_ld,
                                              const uint16_t *const *v, int keys, int d, int c0, float *o,
                                              int64_t o_ld) {
  const __m512i lo = _mm512_set_epi16(47, 15, 46, 14, 45, 13, 44, 12, 43, 11, 42, 10, 41, 9, 40, 8, 39, 7, 38, 6,
                                      37, 5, 36, 4, 35, 3, 34, 2, 33, 1, 32, 0);
  const __m512i hi = _mm512_add_epi16(lo, _mm512_set1_epi16(16));
  __m512 acc[8][4];
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
    for (int j = 0; j < 2 * NC; ++j) acc[r][j] = _mm512_loadu_ps(o + r * o_ld + c0 + 16 * j);
  for (int n = 0; n < keys; n += 2) {
    __m512i b[4];
#pragma GCC unroll 2
    for (int j = 0; j < NC; ++j) {
      const __m512i va = load32_row(v[n], c0 + 32 * j, d), vb = load32_row(v[n + 1], c0 + 32 * j, d);
      b[2 * j] = _mm512_permutex2var_epi16(va, lo, vb);
      b[2 * j + 1] = _mm512_permutex2var_epi16(va, hi, vb);
    }
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
      const __m512i a = bcast_pair(p + r * p_ld + n);
#pragma GCC unroll 4
      for (int j = 0; j < 2 * NC; ++j) acc[r][j] = _mm512_dpbf16_ps(acc[r][j], as_bh(a), as_bh(b[j]));
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
    for (int j = 0; j < 2 * NC; ++j) _mm512_storeu_ps(o + r * o_ld + c0 + 16 * j, acc[r][j]);
}

#define PV_ROWS_CASE(MR)                                                   \
  case MR:                                                                 \
    if (nc == 2) pv_rows_tile(MR, 2, pp, p_ld, v, keys, d, c0, oo, o_ld);  \
    else pv_rows_tile(MR, 1, pp, p_ld, v, keys, d, c0, oo, o_ld);          \
    break;

HOPEI_T512BF16 static void pv_rows_bf16(const uint16_t *p, int64_t p_ld, int rows, const void *const *vrows, int keys,
                                        int d, int dp, float *o, int64_t o_ld) {
  const uint16_t *const *v = (const uint16_t *const *)vrows;
  int r0 = 0;
  for (; rows - r0 >= 8; r0 += 8) /* 8 rows x 32 columns: V interleaved once per 8 rows */
    for (int c0 = 0; c0 < dp; c0 += 32) pv_rows_tile(8, 1, p + r0 * p_ld, p_ld, v, keys, d, c0, o + r0 * o_ld, o_ld);
  for (; r0 < rows; r0 += 4) {
    const int mr = rows - r0 < 4 ? rows - r0 : 4;
    const uint16_t *pp = p + r0 * p_ld;
    float *oo = o + r0 * o_ld;
    for (int c0 = 0; c0 < dp; c0 += 64) {
      const int nc = dp - c0 >= 64 ? 2 : 1; /* dp is a multiple of 32 */
      switch (mr) {
        PV_ROWS_CASE(1) PV_ROWS_CASE(2) PV_ROWS_CASE(3) PV_ROWS_CASE(4)
        default: break;
      }
    }
  }
}

static const hopei_cpu_kernels_t kAvx512Bf16 = {
    .name = "avx512bf16",
    .isa = HOPEI_ISA_AVX512BF16,
    .qk_f32 = hopei_avx512_qk_f32,
    .pv_f32 = hopei_avx512_pv_f32,
    .qk_bf16 = qk_bf16,
    .pv_bf16 = pv_bf16,
    .row_max = hopei_avx512_row_max,
    .exp_f32 = hopei_avx512_exp_f32,
    .exp_bf16 = exp_bf16,
    .scale = hopei_avx512_scale,
    .pack_k_f32 = hopei_avx512_pack_k_f32,
    .pack_v_f32 = hopei_avx512_pack_v_f32,
    .pack_k_bf16 = pack_k_bf16,
    .pack_v_bf16 = pack_v_bf16,
    .qk_rows_bf16 = qk_rows_bf16,
    .pv_rows_bf16 = pv_rows_bf16,
    .qk_qpanel_bf16 = qk_qpanel_bf16,
};

const hopei_cpu_kernels_t *hopei_cpu_kernels_avx512bf16(void) { return &kAvx512Bf16; }

#else

const hopei_cpu_kernels_t *hopei_cpu_kernels_avx512bf16(void) { return NULL; }

#endif
