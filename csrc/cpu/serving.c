/* cpu/serving.c — the CPU backend of hope_kv_append, hope_decode_forward and hope_merge_states.
 *
 * Receives params validated and resolved by csrc/serving.c (strides non-zero, softmax_scale > 0, slots, page
 * table entries, seq_lens and cu_seqlens_q checked) and the decode plan.
 *
 * Decode is memory-bound: every key and value of a sequence is read once per call, so the work is organised
 * around that read. A task is (sequence, kv head, split of the keys): all query rows that read this kv head
 * (the group's query heads x the sequence's 1..8 new tokens) are rotated once (hopei_cpu_rotate_row, rounded
 * to the cache dtype as a tensor-core path would) into packed rows that stay in L1, then the task walks its
 * pages in blocks: each block's K and V rows are gathered from the (scattered) pages straight into the
 * micro-kernels' panels, and hopei_flash_rows (the prefill's online softmax) runs all rows against it. Every
 * K/V byte is loaded from memory once per call, whatever the GQA group or query count. Tasks are taken from
 * an atomic counter. With more than one split (planned in csrc/serving.c, as for the GPU), each task writes
 * normalised partial states into the caller's workspace and a second pass merges them exactly as the GPU
 * does. */
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "serving/launch.h"

/* ---- hope_kv_append ------------------------------------------------------------------------------- */

static void kv_append_range(void *ctx, int64_t begin, int64_t end) {
  const hope_kv_append_params_t *p = (const hope_kv_append_params_t *)ctx;
  const hope_paged_kv_t *c = &p->cache;
  const int32_t d = c->head_dim, hk = c->num_kv_heads, dt = c->dtype;
  const int32_t half = (p->rotary_dim > 0 ? p->rotary_dim : d) / 2;
  const size_t esz = hopei_dtype_size(dt);
  float row[HOPEI_ATTN_CPU_MAX_HEAD_DIM];
  for (int64_t t = begin; t < end; ++t) {
    const int64_t slot = p->slot_mapping[t];
    if (slot < 0) continue;
    for (int32_t h = 0; h < hk; ++h) {
      const int64_t dst = (slot * hk + h) * d;
      const float *cs = p->cos_k != NULL ? p->cos_k + t * half : NULL;
      const float *sn = p->sin_k != NULL ? p->sin_k + t * half : NULL;
      hopei_cpu_rotate_row((const char *)p->k + (size_t)(t * p->k_row_stride + (int64_t)h * d) * esz, dt, d, cs, sn,
                           p->rope_pairing, p->rotary_dim, false, row);
      hopei_store_row(c->k_pages, dt, dst, row, d);
      memcpy((char *)c->v_pages + (size_t)dst * esz,
             (const char *)p->v + (size_t)(t * p->v_row_stride + (int64_t)h * d) * esz, (size_t)d * esz);
    }
  }
}

hope_status_t hopei_kv_append_cpu(const hope_kv_append_params_t *p) {
  hopei_parallel_for(p->num_tokens, 64, kv_append_range, (void *)p);
  return HOPE_SUCCESS;
}

/* ---- hope_decode_forward -------------------------------------------------------------------------- */

/* Keys per block: 16 pages of 16 tokens; the block's panels and S stay in L1/L2. */
#define DECODE_BLOCK_KEYS 256
/* Query rows per pass over the keys (a group larger than this reads its keys more than once). */
#define DECODE_MAX_ROWS 64

typedef struct {
  const hope_decode_params_t *p;
  const hopei_decode_plan_t *plan;
  const hopei_cpu_kernels_t *kern;
  hopei_mode_t mode;
  hopei_flash_cfg_t flash;
  int dp;
  size_t esz;             /* bytes per packed element */
  int64_t total_q;
  int64_t rows;           /* batch * max_seqlen_q */
  int64_t num_tasks;
  atomic_llong next;
  char *scratch;
  size_t scratch_bytes;   /* per worker */
} decode_ctx_t;

/* Gathers keys [key0, key0 + n) of one sequence and kv head from the pages into K/V panels. */
typedef struct {
  const decode_ctx_t *ctx;
  const int32_t *table;   /* the sequence's page table row */
  int32_t h;
  char *kp, *vp;          /* panels of one block */
} gather_t;

/* The address of key `key`'s row (kv head h) in a page array: page table lookups walk the keys in order, so the
 * division by the page size happens once per call, not per key. */
typedef struct {
  const int32_t *table;
  int32_t ps, page_off; /* page size; offset of the next key within its page */
  int64_t page;         /* index of the next key's page in the table */
} page_walk_t;

static inline page_walk_t walk_start(const int32_t *table, int32_t ps, int64_t key) {
  page_walk_t w = {table, ps, (int32_t)(key % ps), key / ps};
  return w;
}

/* Slot of the walk's current key, then advances to the next key. */
static inline int64_t walk_next(page_walk_t *w) {
  const int64_t slot = (int64_t)w->table[w->page] * w->ps + w->page_off;
  if (++w->page_off == w->ps) {
    w->page_off = 0;
    ++w->page;
  }
  return slot;
}

static void gather_block(void *vg, int64_t key0, int n, const void **k, const void **v) {
  const gather_t *g = (const gather_t *)vg;
  const decode_ctx_t *c = g->ctx;
  const hope_paged_kv_t *cache = &c->p->cache;
  const int32_t ps = cache->page_size, d = cache->head_dim, dt = cache->dtype;
  const size_t row_bytes = (size_t)d * hopei_dtype_size(dt), panel = (size_t)HOPEI_KEY_CHUNK * c->dp * c->esz;
  const size_t head_off = (size_t)g->h * row_bytes, slot_bytes = (size_t)cache->num_kv_heads * row_bytes;
  const char *kbase = (const char *)cache->k_pages + head_off, *vbase = (const char *)cache->v_pages + head_off;
  const void *krows[HOPEI_KEY_CHUNK], *vrows[HOPEI_KEY_CHUNK];
  page_walk_t rows = walk_start(g->table, ps, key0);
  for (int j = 0; j < n; j += HOPEI_KEY_CHUNK) {
    const int m = n - j < HOPEI_KEY_CHUNK ? n - j : HOPEI_KEY_CHUNK;
    for (int i = 0; i < m; ++i) {
      const size_t at = (size_t)walk_next(&rows) * slot_bytes;
      krows[i] = kbase + at;
      vrows[i] = vbase + at;
    }
    char *kd = g->kp + (size_t)(j / HOPEI_KEY_CHUNK) * panel, *vd = g->vp + (size_t)(j / HOPEI_KEY_CHUNK) * panel;
    if (c->mode == HOPEI_MODE_BF16) {
      c->kern->pack_k_bf16(krows, m, d, c->dp, (uint16_t *)kd);
      c->kern->pack_v_bf16(vrows, m, d, c->dp, (uint16_t *)vd);
    } else {
      c->kern->pack_k_f32(krows, m, dt, d, c->dp, (float *)kd);
      c->kern->pack_v_f32(vrows, m, dt, d, c->dp, (float *)vd);
    }
  }
  *k = g->kp;
  *v = g->vp;
}

/* Scratch of one worker: packed q rows, K and V panels of a block, O, lse, last, hopei_flash_rows' own. */
static size_t decode_scratch_bytes(const decode_ctx_t *c) {
  const size_t panels = (size_t)DECODE_BLOCK_KEYS * c->dp * c->esz;
  size_t bytes = (size_t)DECODE_MAX_ROWS * c->dp * c->esz + 2 * panels;
  bytes += (size_t)DECODE_MAX_ROWS * c->dp * sizeof(float) + (size_t)DECODE_MAX_ROWS * (sizeof(float) + 8);
  return (bytes + 63) / 64 * 64 + hopei_flash_scratch_bytes(&c->flash, DECODE_MAX_ROWS);
}

/* One (sequence b, kv head h, split s): query rows r = qi * group + g for the sequence's new tokens qi and the
 * group's query heads g, in passes of at most DECODE_MAX_ROWS rows. */
static void decode_task(const decode_ctx_t *c, int64_t task, char *scratch) {
  const hope_decode_params_t *p = c->p;
  const hopei_decode_plan_t *plan = c->plan;
  const hope_paged_kv_t *cache = &p->cache;
  const int32_t d = cache->head_dim, hq = p->num_q_heads, hk = cache->num_kv_heads, dt = cache->dtype;
  const int32_t group = hq / hk, splits = plan->num_splits, dp = c->dp;
  /* task = (b * splits + s) * hk + h: threads that start together read the kv heads of the same pages */
  const int32_t h = (int32_t)(task % hk);
  const int32_t s = (int32_t)((task / hk) % splits);
  const int32_t b = (int32_t)(task / ((int64_t)splits * hk));
  const int64_t len = p->seq_lens[b];
  const int32_t q0 = p->cu_seqlens_q[b], nq = p->cu_seqlens_q[b + 1] - q0;
  const int32_t half = (p->rotary_dim > 0 ? p->rotary_dim : d) / 2;
  const int64_t chunk = (len + splits - 1) / splits;
  int64_t start = (int64_t)s * chunk, end = start + chunk;
  if (start > len) start = len;
  if (end > len) end = len;

  char *qpack = scratch;
  gather_t g;
  g.ctx = c;
  /* page_table may be NULL when max_pages_per_seq is 0 (then len is 0 and no page is read) */
  g.table = p->page_table != NULL ? p->page_table + (int64_t)b * p->max_pages_per_seq : NULL;
  g.h = h;
  g.kp = qpack + (size_t)DECODE_MAX_ROWS * dp * c->esz;
  g.vp = g.kp + (size_t)DECODE_BLOCK_KEYS * dp * c->esz;
  float *o = (float *)(g.vp + (size_t)DECODE_BLOCK_KEYS * dp * c->esz);
  float *lse = o + (size_t)DECODE_MAX_ROWS * dp;
  int64_t *last = (int64_t *)(lse + DECODE_MAX_ROWS);
  void *fscratch = scratch + c->scratch_bytes - hopei_flash_scratch_bytes(&c->flash, DECODE_MAX_ROWS);
  const size_t qesz = hopei_dtype_size(dt);

  const int32_t total_rows = nq * group;
  for (int32_t r0 = 0; r0 < total_rows; r0 += DECODE_MAX_ROWS) {
    const int32_t rows = total_rows - r0 < DECODE_MAX_ROWS ? total_rows - r0 : DECODE_MAX_ROWS;
    for (int32_t r = 0; r < rows; ++r) {
      const int32_t qi = (r0 + r) / group, j = h * group + (r0 + r) % group;
      const int64_t token = (int64_t)q0 + qi;
      float row[HOPEI_ATTN_CPU_MAX_HEAD_DIM];
      hopei_cpu_rotate_row((const char *)p->q + (size_t)(token * plan->q_row_stride + (int64_t)j * d) * qesz, dt, d,
                           p->cos_q != NULL ? p->cos_q + token * half : NULL,
                           p->sin_q != NULL ? p->sin_q + token * half : NULL, p->rope_pairing, p->rotary_dim, true,
                           row);
      hopei_pack_row(row, d, dp, c->mode, qpack + (size_t)r * dp * c->esz);
      last[r] = p->causal ? len - nq + qi : len - 1;
    }
    hopei_flash_rows(&c->flash, qpack, dp, rows, last, start, end, gather_block, &g, fscratch, o, dp, lse);
    for (int32_t r = 0; r < rows; ++r) {
      const int32_t qi = (r0 + r) / group, j = h * group + (r0 + r) % group;
      const int64_t token = (int64_t)q0 + qi;
      const float *orow = o + (size_t)r * dp;
      if (splits == 1) {
        const int64_t ob = (token * hq + j) * d;
        hopei_store_row(p->out, dt, ob, orow, d);
        if (p->lse != NULL) p->lse[(int64_t)j * c->total_q + token] = lse[r];
      } else {
        const int64_t prow = ((int64_t)s * c->rows + (int64_t)b * p->max_seqlen_q + qi) * hq + j;
        memcpy(plan->partial_o + prow * d, orow, (size_t)d * sizeof(float));
        plan->partial_lse[prow] = lse[r];
      }
    }
  }
}

static void decode_worker(void *vctx, int64_t begin, int64_t end) {
  decode_ctx_t *c = (decode_ctx_t *)vctx;
  (void)end; /* the chunk runs serially: one scratch slot */
  char *scratch = c->scratch + (size_t)begin * c->scratch_bytes;
  for (;;) {
    const int64_t t = atomic_fetch_add_explicit(&c->next, 1, memory_order_relaxed);
    if (t >= c->num_tasks) break;
    decode_task(c, t, scratch);
  }
}

/* Merges the splits of one (row = b * max_seqlen_q + qi, query head). */
static void decode_merge_range(void *vctx, int64_t begin, int64_t end) {
  const decode_ctx_t *ctx = (const decode_ctx_t *)vctx;
  const hope_decode_params_t *p = ctx->p;
  const hopei_decode_plan_t *plan = ctx->plan;
  const int32_t d = p->cache.head_dim, hq = p->num_q_heads, splits = plan->num_splits, dt = p->cache.dtype;
  for (int64_t item = begin; item < end; ++item) {
    const int32_t j = (int32_t)(item % hq);
    const int64_t row = item / hq;
    const int32_t b = (int32_t)(row / p->max_seqlen_q), qi = (int32_t)(row % p->max_seqlen_q);
    const int32_t q0 = p->cu_seqlens_q[b], nq = p->cu_seqlens_q[b + 1] - q0;
    if (qi >= nq) continue;
    const int64_t token = (int64_t)q0 + qi;
    float mx = -INFINITY;
    for (int32_t s = 0; s < splits; ++s) {
      const float v = plan->partial_lse[((int64_t)s * ctx->rows + row) * hq + j];
      if (v > mx) mx = v;
    }
    const int64_t ob = (token * hq + j) * d;
    if (mx == -INFINITY) {
      for (int32_t i = 0; i < d; ++i) hopei_store(p->out, dt, ob + i, 0.f);
      if (p->lse != NULL) p->lse[(int64_t)j * ctx->total_q + token] = -INFINITY;
      continue;
    }
    float acc[HOPEI_ATTN_CPU_MAX_HEAD_DIM];
    for (int32_t i = 0; i < d; ++i) acc[i] = 0.f;
    float wsum = 0.f;
    for (int32_t s = 0; s < splits; ++s) {
      const int64_t srow = ((int64_t)s * ctx->rows + row) * hq + j;
      const float v = plan->partial_lse[srow];
      if (v == -INFINITY) continue;
      const float w = expf(v - mx);
      wsum += w;
      const float *po = plan->partial_o + srow * d;
      for (int32_t i = 0; i < d; ++i) acc[i] += w * po[i];
    }
    const float inv = 1.f / wsum;
    for (int32_t i = 0; i < d; ++i) acc[i] *= inv;
    hopei_store_row(p->out, dt, ob, acc, d);
    if (p->lse != NULL) p->lse[(int64_t)j * ctx->total_q + token] = mx + logf(wsum);
  }
}

hope_status_t hopei_decode_cpu(const hope_decode_params_t *p, const hopei_decode_plan_t *plan) {
  static const char fn[] = "hope_decode_forward";
  if (p->cache.head_dim > HOPEI_ATTN_CPU_MAX_HEAD_DIM)
    return hopei_fail(HOPE_ERROR_INTERNAL, "%s: head_dim %d above the CPU limit", fn, p->cache.head_dim);
  decode_ctx_t ctx;
  memset(&ctx, 0, sizeof ctx);
  HOPEI_TRY(hopei_cpu_kernels(fn, &ctx.kern));
  ctx.p = p;
  ctx.plan = plan;
  ctx.total_q = p->cu_seqlens_q[p->batch];
  ctx.rows = (int64_t)p->batch * p->max_seqlen_q;
  ctx.dp = hopei_cpu_padded_dim(p->cache.head_dim);
  ctx.mode = p->cache.dtype == HOPE_DTYPE_BFLOAT16 && ctx.kern->qk_bf16 != NULL ? HOPEI_MODE_BF16 : HOPEI_MODE_F32;
  ctx.esz = ctx.mode == HOPEI_MODE_BF16 ? 2 : 4;
  ctx.flash.kern = ctx.kern;
  ctx.flash.mode = ctx.mode;
  ctx.flash.dp = ctx.dp;
  ctx.flash.block_keys = DECODE_BLOCK_KEYS;
  ctx.flash.scale = plan->softmax_scale;
  ctx.num_tasks = (int64_t)p->batch * p->cache.num_kv_heads * plan->num_splits;
  ctx.scratch_bytes = decode_scratch_bytes(&ctx);
  int64_t workers = hopei_num_threads();
  if (workers > ctx.num_tasks) workers = ctx.num_tasks;
  if (workers < 1) workers = 1;
  void *scratch = NULL;
  if (posix_memalign(&scratch, 64, (size_t)workers * ctx.scratch_bytes) != 0)
    return hopei_fail(HOPE_ERROR_OUT_OF_MEMORY, "%s: could not allocate %zu bytes of CPU scratch", fn,
                      (size_t)workers * ctx.scratch_bytes);
  ctx.scratch = (char *)scratch;
  atomic_init(&ctx.next, 0);
  hopei_parallel_for(workers, 1, decode_worker, &ctx);
  if (plan->num_splits > 1) hopei_parallel_for(ctx.rows * p->num_q_heads, 16, decode_merge_range, &ctx);
  free(scratch);
  return HOPE_SUCCESS;
}

/* ---- hope_merge_states ---------------------------------------------------------------------------- */

static void merge_range(void *ctx, int64_t begin, int64_t end) {
  const hope_merge_params_t *p = (const hope_merge_params_t *)ctx;
  const int32_t d = p->head_dim, dt = p->dtype;
  for (int64_t item = begin; item < end; ++item) {
    const int64_t t = item / p->num_heads;
    const int32_t h = (int32_t)(item % p->num_heads);
    const int64_t li = (int64_t)h * p->num_tokens + t;
    const float la = p->lse_a[li], lb = p->lse_b[li];
    const float m = la > lb ? la : lb;
    const int64_t ob = item * d; /* item = t * heads + h */
    if (!(la < INFINITY) || !(lb < INFINITY)) { /* a NaN or +inf lse on either side: NaN out and lse */
      for (int32_t i = 0; i < d; ++i) hopei_store(p->out, dt, ob + i, NAN);
      if (p->lse_out != NULL) p->lse_out[li] = NAN;
      continue;
    }
    if (m == -INFINITY) {
      for (int32_t i = 0; i < d; ++i) hopei_store(p->out, dt, ob + i, 0.f);
      if (p->lse_out != NULL) p->lse_out[li] = -INFINITY;
      continue;
    }
    const float wa = la == -INFINITY ? 0.f : expf(la - m);
    const float wb = lb == -INFINITY ? 0.f : expf(lb - m);
    const float sum = wa + wb, inv = 1.f / sum;
    for (int32_t i = 0; i < d; ++i) {
      float v = 0.f;
      if (wa > 0.f) v += wa * hopei_load(p->o_a, dt, ob + i);
      if (wb > 0.f) v += wb * hopei_load(p->o_b, dt, ob + i);
      hopei_store(p->out, dt, ob + i, v * inv);
    }
    if (p->lse_out != NULL) p->lse_out[li] = m + logf(sum);
  }
}

hope_status_t hopei_merge_states_cpu(const hope_merge_params_t *p) {
  hopei_parallel_for(p->num_tokens * p->num_heads, 256, merge_range, (void *)p);
  return HOPE_SUCCESS;
}
