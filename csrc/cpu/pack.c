/* cpu/pack.c — portable packers into the panel layouts of kernels.h. Every ISA table may use them; the
 * AVX-512 tables replace the ones on the decode hot path (bfloat16 pages) with vector versions. */
#include <string.h>

#include "kernels.h"

void hopei_pack_row(const float *src, int d, int dp, hopei_mode_t mode, void *dst) {
  if (mode == HOPEI_MODE_BF16) { /* src holds bfloat16 values (rounded by the rotation): keep the top halves */
    uint16_t *o = (uint16_t *)dst;
    for (int i = 0; i < d; ++i) {
      uint32_t u;
      memcpy(&u, src + i, sizeof u);
      o[i] = (uint16_t)(u >> 16);
    }
    for (int i = d; i < dp; ++i) o[i] = 0;
  } else {
    float *o = (float *)dst;
    memcpy(o, src, (size_t)d * sizeof(float));
    for (int i = d; i < dp; ++i) o[i] = 0.f;
  }
}

/* Row i of a chunk as float32, zero past d (and zero rows past n). */
static void chunk_row(const void *const *rows, int n, int32_t dtype, int d, int dp, int i, float *out) {
  if (i >= n) {
    memset(out, 0, (size_t)dp * sizeof(float));
    return;
  }
  if (dtype == HOPE_DTYPE_FLOAT32) memcpy(out, rows[i], (size_t)d * sizeof(float));
  else for (int c = 0; c < d; ++c) out[c] = hopei_load(rows[i], dtype, c);
  for (int c = d; c < dp; ++c) out[c] = 0.f;
}

void hopei_pack_k_f32_generic(const void *const *rows, int n, int32_t dtype, int d, int dp, float *dst) {
  float row[HOPEI_ATTN_CPU_MAX_HEAD_DIM];
  for (int i = 0; i < HOPEI_KEY_CHUNK; ++i) {
    chunk_row(rows, n, dtype, d, dp, i, row);
    for (int c = 0; c < dp; ++c) dst[c * HOPEI_KEY_CHUNK + i] = row[c];
  }
}

void hopei_pack_v_f32_generic(const void *const *rows, int n, int32_t dtype, int d, int dp, float *dst) {
  for (int i = 0; i < HOPEI_KEY_CHUNK; ++i) chunk_row(rows, n, dtype, d, dp, i, dst + (int64_t)i * dp);
}

static const uint16_t *bf16_row(const void *const *rows, int n, int i) {
  return i < n ? (const uint16_t *)rows[i] : NULL;
}

void hopei_pack_k_bf16_generic(const void *const *rows, int n, int d, int dp, uint16_t *dst) {
  for (int i = 0; i < HOPEI_KEY_CHUNK; ++i) {
    const uint16_t *r = bf16_row(rows, n, i);
    for (int c = 0; c < dp; ++c) /* pair c/2, key i, half c%2 */
      dst[(c / 2) * 2 * HOPEI_KEY_CHUNK + 2 * i + (c & 1)] = r != NULL && c < d ? r[c] : 0;
  }
}

void hopei_pack_v_bf16_generic(const void *const *rows, int n, int d, int dp, uint16_t *dst) {
  for (int i = 0; i < HOPEI_KEY_CHUNK; ++i) {
    const uint16_t *r = bf16_row(rows, n, i);
    uint16_t *o = dst + (int64_t)(i / 2) * 2 * dp + (i & 1);
    for (int c = 0; c < dp; ++c) o[2 * c] = r != NULL && c < d ? r[c] : 0;
  }
}
