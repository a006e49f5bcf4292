/* cpu/attention.c — the CPU backend of hope_attention_forward (SPEC §4, §5): the driver.
 *
 * Receives parameters validated and resolved by csrc/attention.c (strides non-zero, softmax_scale > 0,
 * cu_seqlens checked, sizes known to fit). Two passes over hopei_parallel_for threads:
 *  1. Packing. Every q row is rotated once (hopei_cpu_rotate_row; rounded to the dtype in a float16/bfloat16
 *     attention, SPEC §4) into a packed row [kv head][token][query head of the group][dp], so that the rows
 *     of all query heads sharing a kv head lie one dp apart. Every chunk of 16 keys of one kv head is rotated
 *     once into a K panel and its values converted into a V panel (layouts in kernels.h). k_rotated, when
 *     asked for, is written here.
 *  2. Attention. Work items are (sequence, kv head, block of query tokens) with the rows of all the kv head's
 *     query heads stacked, so each block of K/V brought into L2 serves the whole GQA group. Items are taken
 *     most expensive first from an atomic counter, so the long rows of a causal sequence start early and no
 *     core idles at the end. Each runs hopei_flash_rows over its keys in blocks of a fixed size.
 * Every row's arithmetic depends only on the call's shapes (block sizes come from the lengths, never from
 * the thread count) and is reduced in a fixed order: the result is bit-identical for any HOPE_NUM_THREADS.
 * Rows with no visible key (causal with Nq > Nk, or Nk = 0) get out = 0 and lse = -inf. */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"

/* Keys per block of the online softmax: the block's K and V panels (128 KiB each) and S stay in the core's L2. */
static int block_keys(int dp, size_t esz) {
  const int keys = (int)(131072 / ((size_t)dp * esz)) / HOPEI_KEY_CHUNK * HOPEI_KEY_CHUNK; /* 128 KiB of K */
  return keys < 64 ? 64 : keys > 512 ? 512 : keys;
}
/* Most rows one work item stacks. */
#define MAX_ITEM_ROWS 128
/* Query tokens per work item: about 64 (128 for long sequences) stacked rows of the GQA group, enough to reuse
 * each K/V block from L2, few enough to balance the threads. A group above MAX_ITEM_ROWS heads is cut into
 * items of one token and MAX_ITEM_ROWS heads. */
static int block_tokens(int64_t max_q, int group) {
  const int rows = max_q >= 2048 ? MAX_ITEM_ROWS : MAX_ITEM_ROWS / 2;
  return rows / group > 0 ? rows / group : 1;
}

typedef struct {
  int32_t b, kvh, row0, rows; /* rows: query tokens */
  int32_t g0, ng;             /* query heads g0 .. g0 + ng - 1 of the kv head's group (all unless > 128) */
  int64_t cost;               /* query rows x visible keys */
} item_t;

typedef struct {
  const hope_attention_params_t *p;
  const hopei_cpu_kernels_t *kern;
  hopei_mode_t mode;
  int hq, hk, d, dp, group;
  size_t esz;                 /* bytes per packed element */
  int64_t total_q, total_chunks;
  const int64_t *chunk_off;   /* [batch + 1] first key chunk of each sequence */
  const int32_t *chunk_seq;   /* [total_chunks] sequence of each chunk */
  char *qbuf, *kbuf, *vbuf;   /* packed q rows, K panels, V panels */
  /* attention */
  hopei_flash_cfg_t flash;
  int bm;                     /* query tokens per item */
  int ng;                     /* query heads per item: the group, or MAX_ITEM_ROWS of it (then bm = 1) */
  const item_t *items;
  int64_t num_items;
  atomic_llong next;
  char *scratch;
  size_t scratch_bytes;       /* per worker */
} ctx_t;

static int cmp_items(const void *a, const void *b) {
  const item_t *x = (const item_t *)a, *y = (const item_t *)b;
  if (x->cost != y->cost) return x->cost > y->cost ? -1 : 1;
  if (x->b != y->b) return x->b < y->b ? -1 : 1;
  if (x->kvh != y->kvh) return x->kvh < y->kvh ? -1 : 1;
  if (x->g0 != y->g0) return x->g0 < y->g0 ? -1 : 1;
  return x->row0 < y->row0 ? -1 : x->row0 > y->row0;
}

/* ---- pass 1: packing ------------------------------------------------------------------------------------ */

static void pack_q_range(void *vctx, int64_t begin, int64_t end) {
  const ctx_t *c = (const ctx_t *)vctx;
  const hope_attention_params_t *p = c->p;
  const int d = c->d, rd = p->rotary_dim > 0 ? p->rotary_dim : d;
  const size_t esz = hopei_dtype_size(p->dtype);
  float row[HOPEI_ATTN_CPU_MAX_HEAD_DIM];
  for (int64_t t = begin; t < end; ++t) {
    const float *cs = p->cos_q != NULL ? p->cos_q + t * (rd / 2) : NULL;
    const float *sn = p->sin_q != NULL ? p->sin_q + t * (rd / 2) : NULL;
    for (int j = 0; j < c->hq; ++j) {
      const char *src = (const char *)p->q + (size_t)(t * p->q_row_stride + (int64_t)j * d) * esz;
      hopei_cpu_rotate_row(src, p->dtype, d, cs, sn, p->rope_pairing, p->rotary_dim, true, row);
      const int64_t at = ((int64_t)(j / c->group) * c->total_q + t) * c->group + j % c->group;
      hopei_pack_row(row, d, c->dp, c->mode, c->qbuf + (size_t)at * c->dp * c->esz);
    }
  }
}

/* Unit u = kv head u / total_chunks, chunk u % total_chunks: K rotated (and written to k_rotated), V converted. */
static void pack_kv_range(void *vctx, int64_t begin, int64_t end) {
  const ctx_t *c = (const ctx_t *)vctx;
  const hope_attention_params_t *p = c->p;
  const int d = c->d, dp = c->dp, rd = p->rotary_dim > 0 ? p->rotary_dim : d;
  const size_t esz = hopei_dtype_size(p->dtype), panel = (size_t)HOPEI_KEY_CHUNK * dp * c->esz;
  float rows[HOPEI_KEY_CHUNK][HOPEI_ATTN_CPU_MAX_HEAD_DIM];
  uint16_t rows16[HOPEI_KEY_CHUNK][HOPEI_ATTN_CPU_MAX_HEAD_DIM];
  const void *kptr[HOPEI_KEY_CHUNK], *vptr[HOPEI_KEY_CHUNK];
  for (int64_t u = begin; u < end; ++u) {
    const int h = (int)(u / c->total_chunks);
    const int64_t gc = u % c->total_chunks;
    const int32_t b = c->chunk_seq[gc];
    const int64_t first = (int64_t)p->cu_seqlens_k[b] + (gc - c->chunk_off[b]) * HOPEI_KEY_CHUNK;
    const int64_t left = p->cu_seqlens_k[b + 1] - first;
    const int n = left < HOPEI_KEY_CHUNK ? (int)left : HOPEI_KEY_CHUNK;
    for (int i = 0; i < n; ++i) {
      const int64_t t = first + i;
      const float *cs = p->cos_k != NULL ? p->cos_k + t * (rd / 2) : NULL;
      const float *sn = p->sin_k != NULL ? p->sin_k + t * (rd / 2) : NULL;
      const char *src = (const char *)p->k + (size_t)(t * p->k_row_stride + (int64_t)h * d) * esz;
      hopei_cpu_rotate_row(src, p->dtype, d, cs, sn, p->rope_pairing, p->rotary_dim, true, rows[i]);
      if (p->k_rotated != NULL) hopei_store_row(p->k_rotated, p->dtype, (t * c->hk + h) * (int64_t)d, rows[i], d);
      vptr[i] = (const char *)p->v + (size_t)(t * p->v_row_stride + (int64_t)h * d) * esz;
    }
    char *kdst = c->kbuf + (size_t)((int64_t)h * c->total_chunks + gc) * panel;
    char *vdst = c->vbuf + (size_t)((int64_t)h * c->total_chunks + gc) * panel;
    if (c->mode == HOPEI_MODE_BF16) {
      for (int i = 0; i < n; ++i) {
        hopei_pack_row(rows[i], d, d, HOPEI_MODE_BF16, rows16[i]);
        kptr[i] = rows16[i];
      }
      c->kern->pack_k_bf16(kptr, n, d, dp, (uint16_t *)kdst);
      c->kern->pack_v_bf16(vptr, n, d, dp, (uint16_t *)vdst);
    } else {
      for (int i = 0; i < n; ++i) kptr[i] = rows[i];
      c->kern->pack_k_f32(kptr, n, HOPE_DTYPE_FLOAT32, d, dp, (float *)kdst);
      c->kern->pack_v_f32(vptr, n, p->dtype, d, dp, (float *)vdst);
    }
  }
}

/* ---- pass 2: attention ---------------------------------------------------------------------------------- */

typedef struct {
  const char *k, *v; /* the panels of one (kv head, sequence) */
  size_t panel;      /* bytes per chunk */
} kv_ctx_t;

static void kv_block(void *vctx, int64_t key0, int n, const void **k, const void **v) {
  const kv_ctx_t *c = (const kv_ctx_t *)vctx;
  (void)n;
  *k = c->k + (size_t)(key0 / HOPEI_KEY_CHUNK) * c->panel;
  *v = c->v + (size_t)(key0 / HOPEI_KEY_CHUNK) * c->panel;
}


static void process_item(ctx_t *c, const item_t *it, char *scratch) {
  const hope_attention_params_t *p = c->p;
  const int dp = c->dp, group = c->group, ng = it->ng, rows = it->rows * ng;
  const int64_t q0 = p->cu_seqlens_q[it->b], nq = p->cu_seqlens_q[it->b + 1] - q0;
  const int64_t nk = (int64_t)p->cu_seqlens_k[it->b + 1] - p->cu_seqlens_k[it->b];
  const int max_rows = c->bm * c->ng;
  float *o = (float *)scratch;                               /* [rows][dp] */
  float *lse = o + (size_t)max_rows * dp;                    /* [rows] */
  int64_t *last = (int64_t *)(lse + max_rows + (max_rows & 1)); /* [rows] */
  void *fscratch = (char *)scratch + c->scratch_bytes - hopei_flash_scratch_bytes(&c->flash, max_rows);
  int64_t key_end = 0;
  for (int t = 0; t < it->rows; ++t) {
    int64_t lt = nk - 1;
    if (p->causal && it->row0 + t + nk - nq < lt) lt = it->row0 + t + nk - nq;
    if (lt < -1) lt = -1;
    for (int g = 0; g < ng; ++g) last[t * ng + g] = lt;
    if (lt + 1 > key_end) key_end = lt + 1;
  }
  const size_t panel = (size_t)HOPEI_KEY_CHUNK * dp * c->esz;
  const size_t kv_off = (size_t)((int64_t)it->kvh * c->total_chunks + c->chunk_off[it->b]) * panel;
  kv_ctx_t kv = {c->kbuf + kv_off, c->vbuf + kv_off, panel};
  /* rows one dp apart: all heads of the group for bm tokens, or ng heads of one token */
  const int64_t qrow0 = ((int64_t)it->kvh * c->total_q + q0 + it->row0) * group + it->g0;
  hopei_flash_rows(&c->flash, c->qbuf + (size_t)qrow0 * dp * c->esz, dp, rows, last, 0, key_end, kv_block, &kv,
                   fscratch, o, dp, lse);

  const int64_t width = (int64_t)c->hq * c->d;
  for (int r = 0; r < rows; ++r) {
    const int64_t tok = q0 + it->row0 + r / ng;
    const int head = it->kvh * group + it->g0 + r % ng;
    hopei_store_row(p->out, p->dtype, tok * width + (int64_t)head * c->d, o + (size_t)r * dp, c->d);
    if (p->lse != NULL) p->lse[(int64_t)head * c->total_q + tok] = lse[r];
  }
}

static void attn_worker(void *vctx, int64_t begin, int64_t end) {
  ctx_t *c = (ctx_t *)vctx;
  (void)end; /* the chunk [begin, end) runs serially, so one scratch slot serves it */
  char *scratch = c->scratch + (size_t)begin * c->scratch_bytes;
  for (;;) {
    const int64_t i = atomic_fetch_add_explicit(&c->next, 1, memory_order_relaxed);
    if (i >= c->num_items) break;
    process_item(c, &c->items[i], scratch);
  }
}

/* ---- entry ---------------------------------------------------------------------------------------------- */

static void *alloc_aligned(size_t bytes) {
  void *ptr = NULL;
  bytes = (bytes + 63) & ~(size_t)63;
  return posix_memalign(&ptr, 64, bytes > 0 ? bytes : 64) == 0 ? ptr : NULL;
}

hope_status_t hopei_attention_cpu(const hope_attention_params_t *p) {
  static const char *fn = "hope_attention_forward";
  ctx_t c;
  memset(&c, 0, sizeof c);
  HOPEI_TRY(hopei_cpu_kernels(fn, &c.kern));
  c.p = p;
  c.hq = p->num_q_heads;
  c.hk = p->num_kv_heads;
  c.d = p->head_dim;
  c.dp = hopei_cpu_padded_dim(c.d);
  c.group = c.hq / c.hk;
  c.mode = p->dtype == HOPE_DTYPE_BFLOAT16 && c.kern->qk_bf16 != NULL ? HOPEI_MODE_BF16 : HOPEI_MODE_F32;
  c.esz = c.mode == HOPEI_MODE_BF16 ? 2 : 4;
  c.total_q = p->cu_seqlens_q[p->batch];
  int64_t max_q = 0;
  for (int32_t b = 0; b < p->batch; ++b) {
    const int64_t nq = (int64_t)p->cu_seqlens_q[b + 1] - p->cu_seqlens_q[b];
    if (nq > max_q) max_q = nq;
  }
  c.bm = block_tokens(max_q, c.group);
  c.ng = c.group < MAX_ITEM_ROWS ? c.group : MAX_ITEM_ROWS;
  const int64_t head_chunks = ((int64_t)c.group + c.ng - 1) / c.ng;
  c.flash.kern = c.kern;
  c.flash.mode = c.mode;
  c.flash.dp = c.dp;
  c.flash.block_keys = block_keys(c.dp, c.esz);
  c.flash.scale = p->softmax_scale;

  hope_status_t status = HOPE_SUCCESS;
  int64_t *chunk_off = NULL;
  int32_t *chunk_seq = NULL;
  item_t *items = NULL;
  /* Sizes. */
  chunk_off = (int64_t *)malloc((size_t)(p->batch + 1) * sizeof(int64_t));
  int64_t num_items = 0;
  if (chunk_off != NULL) {
    chunk_off[0] = 0;
    for (int32_t b = 0; b < p->batch; ++b) {
      const int64_t nk = (int64_t)p->cu_seqlens_k[b + 1] - p->cu_seqlens_k[b];
      const int64_t nq = (int64_t)p->cu_seqlens_q[b + 1] - p->cu_seqlens_q[b];
      chunk_off[b + 1] = chunk_off[b] + (nk + HOPEI_KEY_CHUNK - 1) / HOPEI_KEY_CHUNK;
      num_items += (nq + c.bm - 1) / c.bm * c.hk * head_chunks;
    }
    c.total_chunks = chunk_off[p->batch];
  }
  const size_t panel = (size_t)HOPEI_KEY_CHUNK * c.dp * c.esz;
  int64_t workers = hopei_num_threads();
  if (workers > num_items) workers = num_items;
  if (workers < 0) workers = 0; /* no query row: no attention scratch */
  const size_t max_rows = (size_t)c.bm * c.ng;
  c.scratch_bytes = (max_rows * c.dp * sizeof(float) + (max_rows + 1) * sizeof(float) + max_rows * sizeof(int64_t) +
                     63) / 64 * 64 + hopei_flash_scratch_bytes(&c.flash, (int)max_rows);
  chunk_seq = (int32_t *)malloc((size_t)(c.total_chunks > 0 ? c.total_chunks : 1) * sizeof(int32_t));
  items = (item_t *)malloc((size_t)(num_items > 0 ? num_items : 1) * sizeof(item_t));
  c.qbuf = (char *)alloc_aligned((size_t)c.total_q * c.hq * c.dp * c.esz);
  c.kbuf = (char *)alloc_aligned((size_t)c.total_chunks * c.hk * panel);
  c.vbuf = (char *)alloc_aligned((size_t)c.total_chunks * c.hk * panel);
  c.scratch = workers > 0 ? (char *)alloc_aligned((size_t)workers * c.scratch_bytes) : NULL;
  if (chunk_off == NULL || chunk_seq == NULL || items == NULL || c.qbuf == NULL || c.kbuf == NULL ||
      c.vbuf == NULL || (workers > 0 && c.scratch == NULL)) {
    status = hopei_fail(HOPE_ERROR_OUT_OF_MEMORY,
                        "%s: could not allocate the CPU backend's packed copies of q, k and v (%lld query and %lld "
                        "key tokens, head_dim %d)", fn, (long long)c.total_q,
                        (long long)p->cu_seqlens_k[p->batch], c.d);
    goto done;
  }
  c.chunk_off = chunk_off;
  c.chunk_seq = chunk_seq;

  /* Pass 1. */
  for (int32_t b = 0; b < p->batch; ++b)
    for (int64_t j = chunk_off[b]; j < chunk_off[b + 1]; ++j) chunk_seq[j] = b;
  {
    const int64_t per_token = (int64_t)c.hq * c.d;
    const int64_t min_q = per_token > 0 ? 32768 / per_token + 1 : 1;
    hopei_parallel_for(c.total_q, min_q, pack_q_range, &c);
    const int64_t min_kv = 32768 / ((int64_t)HOPEI_KEY_CHUNK * c.d) + 1;
    hopei_parallel_for(c.total_chunks * c.hk, min_kv, pack_kv_range, &c);
  }

  /* Pass 2: items, most expensive first. */
  {
    int64_t n = 0;
    for (int32_t b = 0; b < p->batch; ++b) {
      const int64_t nq = (int64_t)p->cu_seqlens_q[b + 1] - p->cu_seqlens_q[b];
      const int64_t nk = (int64_t)p->cu_seqlens_k[b + 1] - p->cu_seqlens_k[b];
      for (int64_t r0 = 0; r0 < nq; r0 += c.bm) {
        const int32_t rows = (int32_t)(nq - r0 < c.bm ? nq - r0 : c.bm);
        int64_t keys = nk; /* visible keys of the block's last row (causal), all otherwise */
        if (p->causal) keys = r0 + rows + nk - nq;
        keys = keys < 0 ? 0 : keys > nk ? nk : keys;
        for (int h = 0; h < c.hk; ++h)
          for (int64_t g0 = 0; g0 < c.group; g0 += c.ng) {
            item_t *it = &items[n++];
            it->b = b;
            it->kvh = h;
            it->row0 = (int32_t)r0;
            it->rows = rows;
            it->g0 = (int32_t)g0;
            it->ng = (int32_t)(c.group - g0 < c.ng ? c.group - g0 : c.ng);
            it->cost = (int64_t)rows * it->ng * (keys + 16); /* + writing the rows */
          }
      }
    }
    qsort(items, (size_t)n, sizeof(item_t), cmp_items);
    c.items = items;
    c.num_items = n;
    atomic_init(&c.next, 0);
    if (n > 0) hopei_parallel_for(workers, 1, attn_worker, &c);
  }

done:
  free(chunk_off);
  free(chunk_seq);
  free(items);
  free(c.qbuf);
  free(c.kbuf);
  free(c.vbuf);
  free(c.scratch);
  return status;
}
