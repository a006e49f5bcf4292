/* dtype.c — float16 / bfloat16 <-> float32 conversions for the CPU backend (round to nearest even). */
#include <string.h>

#include "internal.h"

size_t hopei_dtype_size(int32_t dtype) {
  switch (dtype) {
    case HOPE_DTYPE_FLOAT16:
    case HOPE_DTYPE_BFLOAT16: return 2;
    case HOPE_DTYPE_FLOAT32: return 4;
    default: return 0;
  }
}

const char *hopei_dtype_name(int32_t dtype) {
  switch (dtype) {
    case HOPE_DTYPE_FLOAT16: return "float16";
    case HOPE_DTYPE_BFLOAT16: return "bfloat16";
    case HOPE_DTYPE_FLOAT32: return "float32";
    default: return "unknown dtype";
  }
}

static uint32_t f2u(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static float u2f(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

float hopei_half_to_float(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t man = h & 0x3ffu;
  if (exp == 0x1f) return u2f(sign | 0x7f800000u | (man << 13)); /* inf / NaN */
  if (exp == 0) {
    if (man == 0) return u2f(sign);
    float v = (float)man * 0x1p-24f; /* subnormal: exact */
    return sign ? -v : v;
  }
  return u2f(sign | ((exp + 112u) << 23) | (man << 13));
}

uint16_t hopei_float_to_half(float f) {
  uint32_t u = f2u(f);
  uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
  uint32_t abs = u & 0x7fffffffu;
  if (abs > 0x7f800000u) return (uint16_t)(sign | 0x7e00u);          /* NaN */
  if (abs >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u);         /* rounds to >= 65520: inf */
  if (abs < 0x38800000u) {                                           /* below 2^-14: subnormal or zero */
    /* value = abs_f * 2^24 in units of the smallest subnormal; round half to even */
    float v = u2f(abs) * 0x1p24f;
    float r = __builtin_rintf(v); /* default rounding mode: nearest even */
    return (uint16_t)(sign | (uint16_t)r);
  }
  uint32_t exp = ((abs >> 23) - 112u) << 10;
  uint32_t man = (abs >> 13) & 0x3ffu;
  uint32_t rest = abs & 0x1fffu;
  uint32_t h = exp | man;
  if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) h += 1u; /* carries into the exponent correctly */
  return (uint16_t)(sign | h);
}

float hopei_bf16_to_float(uint16_t b) { return u2f((uint32_t)b << 16); }

uint16_t hopei_float_to_bf16(float f) {
  uint32_t u = f2u(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u); /* quiet NaN */
  u += 0x7fffu + ((u >> 16) & 1u);
  return (uint16_t)(u >> 16);
}
