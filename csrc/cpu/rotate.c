/* cpu/rotate.c — the one q/k rotation of the CPU backend (SPEC §4, §8). hope_rope_apply, hope_kv_append,
 * hope_attention_forward and hope_decode_forward all rotate a row through hopei_cpu_rotate_row, so a pairing
 * or rotary dimension lives in one place. The work is O(tokens * heads * head_dim), small beside attention:
 * plain C that the compiler vectorises is enough here. */
#include <string.h>

#include "kernels.h"

/* bfloat16 rounding (nearest even; NaN stays a quiet NaN) written so the loops below vectorise. */
static inline uint32_t bf16_round_bits(uint32_t u) {
  const uint32_t r = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
  return (u & 0x7fffffffu) > 0x7f800000u ? (u | 0x00400000u) & 0xffff0000u : r;
}

void hopei_store_row(void *dst, int32_t dtype, int64_t at, const float *x, int n) {
  switch (dtype) {
    case HOPE_DTYPE_FLOAT32: memcpy((float *)dst + at, x, (size_t)n * sizeof(float)); break;
    case HOPE_DTYPE_BFLOAT16: {
      uint16_t *o = (uint16_t *)dst + at;
      for (int i = 0; i < n; ++i) {
        uint32_t u;
        memcpy(&u, x + i, sizeof u);
        o[i] = (uint16_t)(bf16_round_bits(u) >> 16);
      }
      break;
    }
    default:
      for (int i = 0; i < n; ++i) ((uint16_t *)dst)[at + i] = hopei_float_to_half(x[i]);
      break;
  }
}

float hopei_round_to_dtype(float x, int32_t dtype) {
  switch (dtype) {
    case HOPE_DTYPE_FLOAT16: return hopei_half_to_float(hopei_float_to_half(x));
    case HOPE_DTYPE_BFLOAT16: return hopei_bf16_to_float(hopei_float_to_bf16(x));
    default: return x;
  }
}

/* src (d values of `dtype`) as float32. */
static void load_row(const void *src, int32_t dtype, int d, float *dst) {
  switch (dtype) {
    case HOPE_DTYPE_FLOAT32: memcpy(dst, src, (size_t)d * sizeof(float)); break;
    case HOPE_DTYPE_BFLOAT16: {
      const uint16_t *s = (const uint16_t *)src;
      for (int i = 0; i < d; ++i) {
        const uint32_t u = (uint32_t)s[i] << 16;
        memcpy(dst + i, &u, sizeof u);
      }
      break;
    }
    default: {
      const uint16_t *s = (const uint16_t *)src;
      for (int i = 0; i < d; ++i) dst[i] = hopei_half_to_float(s[i]);
      break;
    }
  }
}

void hopei_cpu_rotate_row(const void *src, int32_t dtype, int d, const float *cos, const float *sin,
                          int32_t pairing, int32_t rotary_dim, bool round_to_dtype, float *dst) {
  float x[HOPEI_ATTN_CPU_MAX_HEAD_DIM];
  load_row(src, dtype, d, x);
  if (cos == NULL) {
    memcpy(dst, x, (size_t)d * sizeof(float));
    return; /* a conversion of dtype values is exact: nothing to round */
  }
  const int r = rotary_dim > 0 && rotary_dim < d ? rotary_dim : d, half = r / 2;
  if (pairing == HOPE_PAIRING_INTERLEAVED) {
    for (int i = 0; i < half; ++i) {
      const float x0 = x[2 * i], x1 = x[2 * i + 1];
      dst[2 * i] = x0 * cos[i] - x1 * sin[i];
      dst[2 * i + 1] = x1 * cos[i] + x0 * sin[i];
    }
  } else {
    for (int i = 0; i < half; ++i) {
      const float x0 = x[i], x1 = x[i + half];
      dst[i] = x0 * cos[i] - x1 * sin[i];
      dst[i + half] = x1 * cos[i] + x0 * sin[i];
    }
  }
  for (int i = r; i < d; ++i) dst[i] = x[i];
  if (round_to_dtype && dtype == HOPE_DTYPE_BFLOAT16) {
    for (int i = 0; i < r; ++i) {
      uint32_t u;
      memcpy(&u, dst + i, sizeof u);
      u = bf16_round_bits(u);
      memcpy(dst + i, &u, sizeof u);
    }
  } else if (round_to_dtype && dtype == HOPE_DTYPE_FLOAT16) {
    for (int i = 0; i < r; ++i) dst[i] = hopei_round_to_dtype(dst[i], dtype);
  }
}
