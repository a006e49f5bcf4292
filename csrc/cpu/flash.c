/* cpu/flash.c — the online softmax over blocks of keys for a block of query rows (FlashAttention's loop),
 * shared by the prefill (attention.c) and decode (decode.c) drivers. The ISA-specific work (the two matrix
 * products, the row max, the exponentials) goes through the kernel table; this file only orders it.
 *
 * Per key block: S = Q K^T (raw), then per row m' = max(m, max S), P = 2^(S c - m' c) with c = scale log2(e),
 * l = l 2^((m - m') c) + sum P, O = O 2^((m - m') c), and once per block O += P V. At the end O / l and
 * lse = m scale + ln l. hopei_flash_rows runs the whole loop; a driver that interleaves several sets of rows
 * over one read of the keys (decode: the kv heads of a page) calls begin / block / end itself. */
#include <math.h>
#include <string.h>

#include "kernels.h"

#define HOPEI_LOG2E 1.4426950408889634

static size_t align64(size_t x) { return (x + 63) & ~(size_t)63; }

size_t hopei_flash_block_scratch_bytes(const hopei_flash_cfg_t *cfg, int rows) {
  const size_t bk = (size_t)cfg->block_keys, r = (size_t)(rows > 0 ? rows : 1);
  size_t bytes = align64(r * bk * sizeof(float));                                 /* S (and P in F32 mode) */
  if (cfg->mode == HOPEI_MODE_BF16) bytes += align64(r * bk * sizeof(uint16_t));  /* P */
  return bytes;
}

size_t hopei_flash_scratch_bytes(const hopei_flash_cfg_t *cfg, int rows) {
  const size_t r = (size_t)(rows > 0 ? rows : 1);
  return hopei_flash_block_scratch_bytes(cfg, rows) + 2 * align64(r * sizeof(float)); /* + m, l */
}

void hopei_flash_begin(const hopei_flash_cfg_t *cfg, const hopei_flash_state_t *st, int rows) {
  for (int r = 0; r < rows; ++r) {
    st->m[r] = -INFINITY;
    st->l[r] = 0.f;
    memset(st->o + r * st->o_ld, 0, (size_t)cfg->dp * sizeof(float));
  }
}

bool hopei_flash_block_visible(int rows, const int64_t *last, int64_t key0) {
  for (int r = 0; r < rows; ++r)
    if (last[r] >= key0) return true;
  return false;
}

void hopei_flash_block_buffers(const hopei_flash_cfg_t *cfg, int rows, void *scratch, float **s, void **p) {
  *s = (float *)scratch;
  *p = cfg->mode == HOPEI_MODE_BF16 ? (char *)scratch + align64((size_t)rows * cfg->block_keys * sizeof(float))
                                    : scratch;
}

void hopei_flash_softmax(const hopei_flash_cfg_t *cfg, const hopei_flash_state_t *st, int rows, const int64_t *last,
                         int64_t k0, int n, void *scratch) {
  const hopei_cpu_kernels_t *kern = cfg->kern;
  const int bk = cfg->block_keys, dp = cfg->dp;
  const bool bf16 = cfg->mode == HOPEI_MODE_BF16;
  float *s;
  void *pv;
  hopei_flash_block_buffers(cfg, rows, scratch, &s, &pv);
  uint16_t *pb = (uint16_t *)pv;
  float *m = st->m, *l = st->l, *o = st->o;
  const float c = (float)(cfg->scale * HOPEI_LOG2E);
  const int npad = (n + HOPEI_KEY_CHUNK - 1) / HOPEI_KEY_CHUNK * HOPEI_KEY_CHUNK;
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
    if (alpha != 1.f) kern->scale(o + r * st->o_ld, dp, alpha);
    m[r] = mx;
  }
}

void hopei_flash_block(const hopei_flash_cfg_t *cfg, const hopei_flash_state_t *st, const void *q, int64_t q_ld,
                       int rows, const int64_t *last, int64_t k0, int n, const void *kp, const void *vp,
                       void *scratch) {
  const hopei_cpu_kernels_t *kern = cfg->kern;
  const int bk = cfg->block_keys, dp = cfg->dp;
  const int npad = (n + HOPEI_KEY_CHUNK - 1) / HOPEI_KEY_CHUNK * HOPEI_KEY_CHUNK;
  float *s;
  void *p;
  hopei_flash_block_buffers(cfg, rows, scratch, &s, &p);
  if (cfg->mode == HOPEI_MODE_BF16) {
    kern->qk_bf16((const uint16_t *)q, q_ld, rows, (const uint16_t *)kp, npad, dp, s, bk);
    hopei_flash_softmax(cfg, st, rows, last, k0, n, scratch);
    kern->pv_bf16((const uint16_t *)p, bk, rows, (const uint16_t *)vp, npad, dp, st->o, st->o_ld);
  } else {
    kern->qk_f32((const float *)q, q_ld, rows, (const float *)kp, npad, dp, s, bk);
    hopei_flash_softmax(cfg, st, rows, last, k0, n, scratch);
    kern->pv_f32((const float *)p, bk, rows, (const float *)vp, npad, dp, st->o, st->o_ld);
  }
}

void hopei_flash_end(const hopei_flash_cfg_t *cfg, const hopei_flash_state_t *st, int rows, float *lse_out) {
  for (int r = 0; r < rows; ++r) {
    float *orow = st->o + r * st->o_ld;
    if (st->l[r] > 0.f) {
      cfg->kern->scale(orow, cfg->dp, 1.f / st->l[r]);
      lse_out[r] = st->m[r] * cfg->scale + logf(st->l[r]);
    } else {
      memset(orow, 0, (size_t)cfg->dp * sizeof(float));
      lse_out[r] = -INFINITY;
    }
  }
}

void hopei_flash_rows(const hopei_flash_cfg_t *cfg, const void *q, int64_t q_ld, int rows, const int64_t *last,
                      int64_t key_begin, int64_t key_end, hopei_kv_block_fn kv, void *kv_ctx, void *scratch,
                      float *o, int64_t o_ld, float *lse_out) {
  const size_t block_bytes = hopei_flash_block_scratch_bytes(cfg, rows);
  const size_t r = (size_t)(rows > 0 ? rows : 1);
  hopei_flash_state_t st;
  st.m = (float *)((char *)scratch + block_bytes);
  st.l = (float *)((char *)scratch + block_bytes + align64(r * sizeof(float)));
  st.o = o;
  st.o_ld = o_ld;
  hopei_flash_begin(cfg, &st, rows);
  for (int64_t k0 = key_begin; k0 < key_end; k0 += cfg->block_keys) {
    if (!hopei_flash_block_visible(rows, last, k0)) break; /* no row sees a key of this block, nor a later one */
    const int n = key_end - k0 < cfg->block_keys ? (int)(key_end - k0) : cfg->block_keys;
    const void *kp, *vp;
    kv(kv_ctx, k0, n, &kp, &vp);
    hopei_flash_block(cfg, &st, q, q_ld, rows, last, k0, n, kp, vp, scratch);
  }
  hopei_flash_end(cfg, &st, rows, lse_out);
}
