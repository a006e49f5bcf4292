/* cpu/kernels_portable.c — the plain C path: the reference for the vector paths and what runs on a CPU
 * without AVX2 (or another architecture). Loops are written so the compiler can vectorise the key / column
 * dimension with its baseline vectors; the order of every reduction is fixed. F32 mode only. */
#include <math.h>
#include <string.h>

#include "kernels.h"

static void qk_f32(const float *q, int64_t q_ld, int rows, const float *k, int keys, int dp, float *s,
                   int64_t s_ld) {
  for (int r = 0; r < rows; ++r) {
    const float *qr = q + r * q_ld;
    for (int j = 0; j < keys; j += HOPEI_KEY_CHUNK) {
      const float *kc = k + (int64_t)j * dp;
      float acc[HOPEI_KEY_CHUNK] = {0};
      for (int c = 0; c < dp; ++c)
        for (int i = 0; i < HOPEI_KEY_CHUNK; ++i) acc[i] += qr[c] * kc[c * HOPEI_KEY_CHUNK + i];
      memcpy(s + r * s_ld + j, acc, sizeof acc);
    }
  }
}

static void pv_f32(const float *p, int64_t p_ld, int rows, const float *v, int keys, int dp, float *o,
                   int64_t o_ld) {
  for (int r = 0; r < rows; ++r) {
    float *orow = o + r * o_ld;
    const float *pr = p + r * p_ld;
    for (int n = 0; n < keys; ++n) {
      const float pn = pr[n];
      const float *vr = v + (int64_t)n * dp;
      for (int c = 0; c < dp; ++c) orow[c] += pn * vr[c];
    }
  }
}

static float row_max(const float *x, int n) {
  float m = x[0];
  for (int i = 1; i < n; ++i) m = x[i] > m ? x[i] : m;
  return m;
}

static float exp_f32(const float *x, float *p, int n, int n_pad, float mul, float sub) {
  float sum = 0.f;
  for (int i = 0; i < n; ++i) {
    p[i] = x[i] == -INFINITY ? 0.f : exp2f(x[i] * mul - sub);
    sum += p[i];
  }
  for (int i = n; i < n_pad; ++i) p[i] = 0.f;
  return sum;
}

static void scale(float *x, int n, float a) {
  for (int i = 0; i < n; ++i) x[i] *= a;
}

static const hopei_cpu_kernels_t kPortable = {
    .name = "portable",
    .isa = HOPEI_ISA_PORTABLE,
    .qk_f32 = qk_f32,
    .pv_f32 = pv_f32,
    .row_max = row_max,
    .exp_f32 = exp_f32,
    .scale = scale,
    .pack_k_f32 = hopei_pack_k_f32_generic,
    .pack_v_f32 = hopei_pack_v_f32_generic,
};

const hopei_cpu_kernels_t *hopei_cpu_kernels_portable(void) { return &kPortable; }
