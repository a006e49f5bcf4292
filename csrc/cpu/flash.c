/* cpu/flash.c — the online softmax over blocks of keys for a block of query rows (FlashAttention's loop),
 * shared by the prefill (attention.c) and decode (serving.c) drivers. The ISA-specific work (the two matrix
 * products, the row max, the exponentials) goes through the kernel table; this file only orders it.
 *
 * Per key block: S = Q K^T (raw), then per row m' = max(m, max S), P = 2^(S c - m' c) with c = scale log2(e),
 * l = l 2^((m - m') c) + sum P, O = O 2^((m - m') c), and once per block O += P V. At the end O / l and
 * lse = m scale + ln l. */
#include <math.h>
#include <string.h>

#include "kernels.h"

#define HOPEI_LOG2E 1.4426950408889634

static size_t align64(size_t x) { return (x + 63) & ~(size_t)63; }

size_t hopei_flash_scratch_bytes(const hopei_flash_cfg_t *cfg, int rows) {
  const size_t bk = (size_t)cfg->block_keys, r = (size_t)(rows > 0 ? rows : 1);
  size_t bytes = align64(r * bk * sizeof(float));                                 /* S (and P in F32 mode) */
  if (cfg->mode == HOPEI_MODE_BF16) bytes += align64(r * bk * sizeof(uint16_t));  /* P */
  bytes += 2 * align64(r * sizeof(float));                                        /* m, l */
  return bytes;
}

void hopei_flash_rows(const hopei_flash_cfg_t *cfg, const void *q, int64_t q_ld, int rows, const int64_t *last,
                      int64_t key_begin, int64_t key_end, hopei_kv_block_fn kv, void *kv_ctx, void *scratch,
                      float *o, int64_t o_ld, float *lse_out) {
  const hopei_cpu_kernels_t *kern = cfg->kern;
  const int bk = cfg->block_keys, dp = cfg->dp;
  const bool bf16 = cfg->mode == HOPEI_MODE_BF16;
  char *base = (char *)scratch;
  float *s = (float *)base;
  base += align64((size_t)rows * bk * sizeof(float));
  uint16_t *pb = NULL;
  if (bf16) {
    pb = (uint16_t *)base;
    base += align64((size_t)rows * bk * sizeof(uint16_t));
  }
  float *m = (float *)base;
  float *l = (float *)(base + align64((size_t)rows * sizeof(float)));

  const float c = (float)(cfg->scale * HOPEI_LOG2E);
  for (int r = 0; r < rows; ++r) {
    m[r] = -INFINITY;
    l[r] = 0.f;
    memset(o + r * o_ld, 0, (size_t)dp * sizeof(float));
  }

  for (int64_t k0 = key_begin; k0 < key_end; k0 += bk) {
    const int n = key_end - k0 < bk ? (int)(key_end - k0) : bk;
    const int npad = (n + HOPEI_KEY_CHUNK - 1) / HOPEI_KEY_CHUNK * HOPEI_KEY_CHUNK;
    bool any = false;
    for (int r = 0; r < rows && !any; ++r) any = last[r] >= k0;
    if (!any) break; /* no row sees a key of this block, nor of any later one */
    const void *kp, *vp;
    kv(kv_ctx, k0, n, &kp, &vp);
    if (bf16) kern->qk_bf16((const uint16_t *)q, q_ld, rows, (const uint16_t *)kp, npad, dp, s, bk);
    else kern->qk_f32((const float *)q, q_ld, rows, (const float *)kp, npad, dp, s, bk);
    for (int r = 0; r < rows; ++r) {
      float *sr = s + (int64_t)r * bk;
      int64_t cnt64 = last[r] + 1 - k0;
      const int cnt = cnt64 <= 0 ? 0 : cnt64 > n ? n : (int)cnt64;
      if (cnt == 0) { /* the row sees none of these keys: P = 0 */
        if (bf16) memset(pb + (int64_t)r * bk, 0, (size_t)npad * sizeof(uint16_t));
        else memset(sr, 0, (size_t)npad * sizeof(float));
        continue;
      }
      const float bmax = kern->row_max(sr, cnt);
      const float mx = bmax > m[r] ? bmax : m[r];
      /* mx is finite for finite inputs; 2^((m - mx) c) is 0 on the first visible block (m = -inf) */
      const float alpha = m[r] == -INFINITY ? 0.f : exp2f((m[r] - mx) * c);
      const float sum = bf16 ? kern->exp_bf16(sr, pb + (int64_t)r * bk, cnt, npad, c, mx * c)
                             : kern->exp_f32(sr, sr, cnt, npad, c, mx * c);
      l[r] = l[r] * alpha + sum;
      if (alpha != 1.f) kern->scale(o + r * o_ld, dp, alpha);
      m[r] = mx;
    }
    if (bf16) kern->pv_bf16(pb, bk, rows, (const uint16_t *)vp, npad, dp, o, o_ld);
    else kern->pv_f32(s, bk, rows, (const float *)vp, npad, dp, o, o_ld);
  }

  for (int r = 0; r < rows; ++r) {
    float *orow = o + r * o_ld;
    if (l[r] > 0.f) {
      kern->scale(orow, dp, 1.f / l[r]);
      lse_out[r] = m[r] * cfg->scale + logf(l[r]);
    } else {
      memset(orow, 0, (size_t)dp * sizeof(float));
      lse_out[r] = -INFINITY;
    }
  }
}
