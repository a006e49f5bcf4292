/* cpu/decode.c — the CPU backend of hope_decode_forward: 1 to 8 new query tokens per sequence over the paged
 * KV cache.
 *
 * Receives params validated and resolved by csrc/serving.c (strides non-zero, softmax_scale > 0, page table
 * entries, seq_lens and cu_seqlens_q checked) and the decode plan (the split count, shared with the GPU path).
 *
 * Decode is memory-bound: every key and value of a sequence is read once per call, from pages scattered over
 * the cache. This machine-level fact shapes the loop:
 *  - A task is (sequence, split of its keys, head group). A head group is as many kv heads as fit in
 *    DECODE_MAX_ROWS query rows (a kv head's rows are its query heads x the sequence's new tokens): usually all
 *    of them, so a task reads each page slot's K and V rows whole, in one pass (a kv head with more rows than
 *    that is cut into row ranges, each its own group).
 *  - The task walks its keys in blocks of DECODE_BLOCK_KEYS. While it packs block j's rows into the
 *    micro-kernels' panels (one kv head at a time), it prefetches the same rows of block j + 1 into L2, so the
 *    next block's pages are already on their way while this one computes: many pages in flight per thread
 *    instead of one miss at a time.
 *  - Each kv head's query rows are rotated once (hopei_cpu_rotate_row, rounded to the cache dtype as a
 *    tensor-core path would) and run through the prefill's online softmax (hopei_flash_softmax).
 *  - The matrix products take one of three paths (block_path): on a bfloat16 cache with AVX512_BF16, straight on
 *    the cache rows (block_on_rows), a q row at a time for up to DECODE_ROW_KERNEL_ROWS rows per kv head and with
 *    the rows as a Q panel (no K packing) for up to DECODE_QPANEL_ROWS; otherwise K and V packed into the
 *    prefill's panels (block_on_panels).
 * Tasks are taken from an atomic counter. With more than one split each task writes normalised partial states
 * into the caller's workspace and a second pass merges them exactly as the GPU does. A row's arithmetic depends
 * only on the call's shape and the split count, never on the threads: with num_splits forced the result is
 * bit-identical for any HOPE_NUM_THREADS. */
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "serving/launch.h"

/* Keys per block: one kv head's K and V rows of a block (64 KiB each in bfloat16 at head_dim 128, or its packed
 * panels) stay in L2 beside the next block's rows in flight. */
#define DECODE_BLOCK_KEYS 256
/* Most query rows one task holds (all its kv heads' rows together). */
#define DECODE_MAX_ROWS 128
/* A kv head with at most this many query rows reads K and V rows in place (the qk_rows / pv_rows kernels, where
 * the ISA has them); more rows amortise packing the rows into panels once per block. */
#define DECODE_ROW_KERNEL_ROWS 8
/* Up to this many rows per kv head (one Q panel group), the in-place kernels with the rows as a Q panel. */
#define DECODE_QPANEL_ROWS 16

#if defined(__GNUC__) || defined(__clang__)
/* Into L2 (locality 2, prefetcht1 on x86: measured better here than into L1, which the rows would not fit) */
#define DECODE_PREFETCH(addr) __builtin_prefetch((addr), 0, 2)
/* Into L1 (locality 3, prefetcht0): rows already in L2, needed by the next kernel call */
#define DECODE_PREFETCH_L1(addr) __builtin_prefetch((addr), 0, 3)
#else
#define DECODE_PREFETCH(addr) ((void)(addr))
#define DECODE_PREFETCH_L1(addr) ((void)(addr))
#endif

/* ---- head groups ------------------------------------------------------------------------------------- */

/* How the kv heads of a sequence are grouped into tasks: `heads` kv heads per group, each with query rows
 * [part * rows, (part + 1) * rows) of its max_seqlen_q * group rows; `parts` row ranges per kv head. */
typedef struct {
  int32_t heads, parts, rows;
  int64_t groups;
} head_groups_t;

static head_groups_t head_groups(int32_t num_q_heads, int32_t num_kv_heads, int32_t max_seqlen_q) {
  const int64_t per_head = (int64_t)(num_q_heads / num_kv_heads) * (max_seqlen_q > 0 ? max_seqlen_q : 1);
  head_groups_t g;
  if (per_head <= DECODE_MAX_ROWS) {
    const int64_t fit = DECODE_MAX_ROWS / per_head;
    g.heads = (int32_t)(fit < num_kv_heads ? fit : num_kv_heads);
    g.parts = 1;
    g.rows = (int32_t)per_head;
    g.groups = (num_kv_heads + g.heads - 1) / g.heads;
  } else {
    g.heads = 1;
    g.parts = (int32_t)((per_head + DECODE_MAX_ROWS - 1) / DECODE_MAX_ROWS);
    g.rows = DECODE_MAX_ROWS;
    g.groups = (int64_t)num_kv_heads * g.parts;
  }
  return g;
}

int64_t hopei_decode_cpu_tasks_per_split(int32_t num_q_heads, int32_t num_kv_heads, int32_t max_seqlen_q) {
  return head_groups(num_q_heads, num_kv_heads, max_seqlen_q).groups;
}

/* ---- the page walk ----------------------------------------------------------------------------------- */

/* The slot of each key of a sequence in order: the division by the page size happens once per walk. */
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

/* What the row pointers past a block's last key point at (the widest padded row). */
static const uint16_t kZeroRow[HOPEI_ATTN_CPU_MAX_HEAD_DIM * 2];

/* ---- one task ---------------------------------------------------------------------------------------- */

typedef struct {
  const hope_decode_params_t *p;
  const hopei_decode_plan_t *plan;
  const hopei_cpu_kernels_t *kern;
  hopei_mode_t mode;
  hopei_flash_cfg_t flash;
  head_groups_t hg;
  int dp;
  size_t esz;             /* bytes per packed element */
  size_t row_bytes;       /* bytes of one kv head's row in the cache */
  int64_t total_q;
  int64_t rows;           /* batch * max_seqlen_q */
  int64_t num_tasks;
  atomic_llong next;
  char *scratch;
  size_t scratch_bytes;   /* per worker */
} decode_ctx_t;

/* Where a block's keys are: for key i, k[i] and v[i] point at the row of the group's first kv head in the key's
 * slot; the group's other heads follow it (span = heads * row_bytes contiguous bytes). */
typedef struct {
  const char *k[DECODE_BLOCK_KEYS], *v[DECODE_BLOCK_KEYS];
  int n;
} block_rows_t;

static void block_rows(const decode_ctx_t *c, const int32_t *table, int32_t h0, int64_t key0, int n,
                       block_rows_t *out) {
  const hope_paged_kv_t *cache = &c->p->cache;
  const char *k = (const char *)cache->k_pages + (size_t)h0 * c->row_bytes;
  const char *v = (const char *)cache->v_pages + (size_t)h0 * c->row_bytes;
  const size_t slot_bytes = (size_t)cache->num_kv_heads * c->row_bytes;
  page_walk_t walk = walk_start(table, cache->page_size, key0);
  for (int i = 0; i < n; ++i) {
    const size_t at = (size_t)walk_next(&walk) * slot_bytes;
    out->k[i] = k + at;
    out->v[i] = v + at;
  }
  out->n = n;
}

/* One kv head's rows of a block (head hh of the group) as the kernels take them: padded with the zero row to a
 * multiple of 16 keys. */
static void head_rows(const block_rows_t *b, size_t offset, const void **krows, const void **vrows) {
  int i = 0;
  for (; i < b->n; ++i) {
    krows[i] = b->k[i] + offset;
    vrows[i] = b->v[i] + offset;
  }
  for (; i % HOPEI_KEY_CHUNK != 0; ++i) krows[i] = vrows[i] = kZeroRow;
}

/* ---- prefetching the next block while this one computes -------------------------------------------------- */

/* Walks the next block's K and V spans line by line (key by key, so a page's lines go in address order) and
 * prefetches them a few lines per compute step: spread evenly over the block, not in bursts that would fill
 * the core's queue of outstanding misses and stall the arithmetic. */
typedef struct {
  const block_rows_t *rows;
  size_t span;       /* bytes per key */
  int key;           /* next key */
  size_t off;        /* next line's offset from the key's first line */
  int per_step;      /* lines of K (and as many of V) per step */
} prefetcher_t;

static void prefetch_begin(prefetcher_t *pf, const block_rows_t *next, size_t span, int steps) {
  pf->rows = next;
  pf->span = span;
  pf->key = 0;
  pf->off = 0;
  const int64_t lines = (int64_t)next->n * (int64_t)((span + 127) / 64);
  pf->per_step = steps > 0 ? (int)((lines + steps - 1) / steps) : 0;
}

static inline void prefetch_step(prefetcher_t *pf) {
  for (int i = 0; i < pf->per_step && pf->key < pf->rows->n; ++i) {
    const uintptr_t k = (uintptr_t)pf->rows->k[pf->key], v = (uintptr_t)pf->rows->v[pf->key];
    const uintptr_t k0 = k & ~(uintptr_t)63, v0 = v & ~(uintptr_t)63;
    DECODE_PREFETCH((const char *)(k0 + pf->off));
    DECODE_PREFETCH((const char *)(v0 + pf->off));
    pf->off += 64;
    if (k0 + pf->off >= k + pf->span && v0 + pf->off >= v + pf->span) {
      pf->off = 0;
      ++pf->key;
    }
  }
}

/* Into L1: every line of rows[i] for i in [begin, end) step `step` (the rows of the next kernel call, which the
 * block prefetcher has brought into L2), so that the call's loads hit L1. */
static inline void prefetch_rows_l1(const void *const *rows, int begin, int end, int step, size_t row_bytes) {
  for (int i = begin; i < end; i += step)
    for (size_t off = 0; off < row_bytes; off += 64) DECODE_PREFETCH_L1((const char *)rows[i] + off);
}

static size_t align64(size_t x) { return (x + 63) & ~(size_t)63; }

/* Kv heads of a task that may need a Q panel (16 rows each): a task with more than DECODE_ROW_KERNEL_ROWS rows per
 * head may take the Q panel path (block_path), and then has at most DECODE_MAX_ROWS / 9 heads. */
static size_t qpanel_heads(const decode_ctx_t *c) {
  return c->hg.rows > DECODE_ROW_KERNEL_ROWS ? (size_t)c->hg.heads : 0;
}

/* Scratch of one worker: packed q rows, Q panels, K and V panels of a block, O, m, l, lse, last, the block's S
 * and P. */
static size_t decode_scratch_bytes(const decode_ctx_t *c) {
  const size_t rows = DECODE_MAX_ROWS;
  size_t bytes = align64(rows * c->dp * c->esz) + 2 * align64((size_t)DECODE_BLOCK_KEYS * c->dp * c->esz);
  bytes += align64(qpanel_heads(c) * 16 * c->dp * c->esz); /* Q panels */
  bytes += align64(rows * c->dp * sizeof(float)) + 3 * align64(rows * sizeof(float)) +
           align64(rows * sizeof(int64_t));
  return bytes + hopei_flash_block_scratch_bytes(&c->flash, DECODE_MAX_ROWS);
}

/* How a task computes its blocks: K and V packed into panels (any mode and ISA); straight on the cache rows
 * (BF16 mode, few query rows per kv head: a q row at a time against 16 K rows); straight on the cache rows with
 * the query rows as a Q panel (BF16 mode, more rows: each K pair broadcast against 16 rows at a time). */
typedef enum { PATH_PANELS, PATH_ROWS, PATH_QPANEL } block_path_t;

/* The path for `rows` query rows per kv head. The Q panel is one group of 16 rows, rows past `rows` computed for
 * nothing: against the packed panels it was faster here for 12 and 16 rows (benchmarks/results/README.md); for
 * 32 rows, two groups per K broadcast, it gained 0-3%, not enough to keep a second V path for it, and for
 * 20 rows it lost 7%. */
static block_path_t block_path(const decode_ctx_t *c, int rows) {
  if (c->mode != HOPEI_MODE_BF16) return PATH_PANELS;
  if (c->kern->qk_rows_bf16 != NULL && c->kern->pv_rows_bf16 != NULL && rows <= DECODE_ROW_KERNEL_ROWS)
    return PATH_ROWS;
  if (c->kern->qk_qpanel_bf16 != NULL && c->kern->pv_rows_bf16 != NULL && rows <= DECODE_QPANEL_ROWS)
    return PATH_QPANEL;
  return PATH_PANELS;
}

/* Compute steps of one block for the prefetcher: one per (kv head, chunk of 16 keys[, q row]) and per P.V
 * slice. */
static int block_steps(block_path_t path, int heads, int rows, int n) {
  const int chunks = (n + HOPEI_KEY_CHUNK - 1) / HOPEI_KEY_CHUNK;
  switch (path) {
    case PATH_ROWS: return heads * (chunks * rows + (chunks + 1) / 2);
    case PATH_QPANEL: return heads * (chunks + (chunks + 1) / 2);
    default: return heads * chunks;
  }
}

/* One block for the group's kv heads, each head's rows packed into panels (chunk by chunk, a prefetch step
 * before each), then the prefill's block step on the panels. */
static void block_on_panels(const decode_ctx_t *c, const hopei_flash_state_t *st, const char *qpack, int heads,
                            int rows, const int64_t *last, int64_t k0, const block_rows_t *br, prefetcher_t *pf,
                            char *kp, char *vp, void *fscratch) {
  const hope_paged_kv_t *cache = &c->p->cache;
  const int32_t d = cache->head_dim, dt = cache->dtype;
  const size_t panel = (size_t)HOPEI_KEY_CHUNK * c->dp * c->esz;
  const void *krows[DECODE_BLOCK_KEYS], *vrows[DECODE_BLOCK_KEYS];
  for (int hh = 0; hh < heads; ++hh) {
    head_rows(br, (size_t)hh * c->row_bytes, krows, vrows);
    for (int j = 0; j < br->n; j += HOPEI_KEY_CHUNK) {
      prefetch_step(pf);
      const int m = br->n - j < HOPEI_KEY_CHUNK ? br->n - j : HOPEI_KEY_CHUNK;
      char *kd = kp + (size_t)(j / HOPEI_KEY_CHUNK) * panel, *vd = vp + (size_t)(j / HOPEI_KEY_CHUNK) * panel;
      if (c->mode == HOPEI_MODE_BF16) {
        c->kern->pack_k_bf16(krows + j, m, d, c->dp, (uint16_t *)kd);
        c->kern->pack_v_bf16(vrows + j, m, d, c->dp, (uint16_t *)vd);
      } else {
        c->kern->pack_k_f32(krows + j, m, dt, d, c->dp, (float *)kd);
        c->kern->pack_v_f32(vrows + j, m, dt, d, c->dp, (float *)vd);
      }
    }
    hopei_flash_block(&c->flash, &st[hh], qpack + (size_t)hh * rows * c->dp * c->esz, c->dp, rows, last, k0, br->n,
                      kp, vp, fscratch);
  }
}

/* One block for the group's kv heads straight on the cache rows (BF16 mode): per head, Q.K^T 16 keys at a time,
 * the softmax, then P.V on the V rows in slices of 32 keys, a prefetch step of the next block (into L2) before
 * each kernel call. Q.K^T takes the query rows
 *  - one at a time (qpanel NULL: up to DECODE_ROW_KERNEL_ROWS rows, packed in qpack), and then the rows of the
 *    next chunk of keys also go from L2 into L1 ahead of their call: before each Q.K^T call a share of the next
 *    chunk's K rows (every rows-th key), before each P.V slice the next slice's V rows (measured here: 1-6 points
 *    more of the paired read bandwidth at 1x32k and 8x4k, benchmarks/results/README.md);
 *  - or as each head's Q panel (up to DECODE_QPANEL_ROWS rows): each key's pairs broadcast from its row against
 *    the 16 query rows of a vector, no K packing, the same S as the panel path. */
static void block_on_rows(const decode_ctx_t *c, const hopei_flash_state_t *st, const char *qpack,
                          const uint16_t *qpanel, int heads, int rows, const int64_t *last, int64_t k0,
                          const block_rows_t *br, prefetcher_t *pf, void *fscratch) {
  const int32_t d = c->p->cache.head_dim, dp = c->dp, bk = DECODE_BLOCK_KEYS;
  const int npad = (br->n + HOPEI_KEY_CHUNK - 1) / HOPEI_KEY_CHUNK * HOPEI_KEY_CHUNK;
  const bool to_l1 = qpanel == NULL;
  const void *krows[DECODE_BLOCK_KEYS], *vrows[DECODE_BLOCK_KEYS];
  float *s;
  void *pv;
  hopei_flash_block_buffers(&c->flash, rows, fscratch, &s, &pv);
  const uint16_t *p = (const uint16_t *)pv;
  for (int hh = 0; hh < heads; ++hh) {
    head_rows(br, (size_t)hh * c->row_bytes, krows, vrows);
    if (qpanel != NULL)
      for (int j = 0; j < npad; j += HOPEI_KEY_CHUNK) {
        prefetch_step(pf);
        c->kern->qk_qpanel_bf16(qpanel + (size_t)hh * 16 * dp, rows, krows + j, HOPEI_KEY_CHUNK, d, dp, s + j, bk);
      }
    else
      for (int j = 0; j < npad; j += HOPEI_KEY_CHUNK)
        for (int r = 0; r < rows; ++r) {
          const uint16_t *q = (const uint16_t *)qpack + (size_t)(hh * rows + r) * dp;
          prefetch_step(pf);
          if (j + HOPEI_KEY_CHUNK < npad)
            prefetch_rows_l1(krows + j + HOPEI_KEY_CHUNK, r, HOPEI_KEY_CHUNK, rows, c->row_bytes);
          c->kern->qk_rows_bf16(q, dp, 1, krows + j, HOPEI_KEY_CHUNK, d, dp, s + (size_t)r * bk + j, bk);
        }
    hopei_flash_softmax(&c->flash, &st[hh], rows, last, k0, br->n, fscratch);
    for (int j = 0; j < npad; j += 2 * HOPEI_KEY_CHUNK) {
      prefetch_step(pf);
      const int m = npad - j < 2 * HOPEI_KEY_CHUNK ? npad - j : 2 * HOPEI_KEY_CHUNK;
      const int after = npad - (j + m) < m ? npad - (j + m) : m; /* keys of the next slice */
      if (to_l1) prefetch_rows_l1(vrows + j + m, 0, after, 1, c->row_bytes);
      c->kern->pv_rows_bf16(p + j, bk, rows, vrows + j, m, d, dp, st[hh].o, st[hh].o_ld);
    }
  }
}

/* The Q panel of one kv head (kernels.h) from its packed bfloat16 rows q[rows][dp], rows <= 16. */
static void build_qpanel(const uint16_t *q, int rows, int dp, uint16_t *qp) {
  for (int pair = 0; pair < dp / 2; ++pair)
    for (int i = 0; i < 16; ++i) {
      uint16_t *dst = qp + ((size_t)pair * 16 + i) * 2;
      dst[0] = i < rows ? q[(size_t)i * dp + 2 * pair] : 0;
      dst[1] = i < rows ? q[(size_t)i * dp + 2 * pair + 1] : 0;
    }
}

/* What one task covers: sequence b, split s, kv heads [h0, h0 + nh) and query rows [row0, row0 + nr) of each (row
 * r: token r / group, query head h * group + r % group of kv head h), keys [start, end). nr <= 0: nothing. */
typedef struct {
  int32_t b, s, h0, nh, row0, nr;
  int64_t start, end;
  const int32_t *table; /* the sequence's page table row */
} task_t;

/* Task = (b * splits + s) * groups + g: sequence b, split s, head group g. */
static task_t task_at(const decode_ctx_t *c, int64_t task) {
  const hope_decode_params_t *p = c->p;
  const int32_t hk = p->cache.num_kv_heads, group = p->num_q_heads / hk, splits = c->plan->num_splits;
  const int64_t g = task % c->hg.groups;
  task_t t;
  t.s = (int32_t)((task / c->hg.groups) % splits);
  t.b = (int32_t)(task / (c->hg.groups * splits));
  t.h0 = (int32_t)(g / c->hg.parts) * c->hg.heads;
  t.nh = hk - t.h0 < c->hg.heads ? hk - t.h0 : c->hg.heads;
  t.row0 = (int32_t)(g % c->hg.parts) * c->hg.rows;
  const int32_t seq_rows = (p->cu_seqlens_q[t.b + 1] - p->cu_seqlens_q[t.b]) * group;
  t.nr = seq_rows - t.row0 < c->hg.rows ? seq_rows - t.row0 : c->hg.rows;
  const int64_t len = p->seq_lens[t.b], chunk = (len + splits - 1) / splits;
  t.start = (int64_t)t.s * chunk < len ? (int64_t)t.s * chunk : len;
  t.end = t.start + chunk < len ? t.start + chunk : len;
  /* page_table may be NULL when max_pages_per_seq is 0 (then len is 0 and no page is read) */
  t.table = p->page_table != NULL ? p->page_table + (int64_t)t.b * p->max_pages_per_seq : NULL;
  return t;
}

/* The first block of keys [key0, end) of a task's kv heads. */
static void first_rows(const decode_ctx_t *c, const task_t *t, int64_t key0, block_rows_t *out) {
  const int64_t left = t->nr > 0 && key0 < t->end ? t->end - key0 : 0;
  block_rows(c, t->table, t->h0, key0, left < DECODE_BLOCK_KEYS ? (int)left : DECODE_BLOCK_KEYS, out);
}

/* Runs task t; `following` (NULL: none) is the task this thread runs next, whose first block is prefetched during
 * t's last one. */
static void decode_task(const decode_ctx_t *c, const task_t *t, const task_t *following, char *scratch) {
  if (t->nr <= 0) return; /* a row range past this sequence's new tokens */
  const hope_decode_params_t *p = c->p;
  const hopei_decode_plan_t *plan = c->plan;
  const hope_paged_kv_t *cache = &p->cache;
  const int32_t d = cache->head_dim, hq = p->num_q_heads, hk = cache->num_kv_heads, dt = cache->dtype;
  const int32_t group = hq / hk, splits = plan->num_splits, dp = c->dp;
  const int32_t b = t->b, s = t->s, h0 = t->h0, nh = t->nh, part_row0 = t->row0, nr = t->nr;
  const int32_t q0 = p->cu_seqlens_q[b], nq = p->cu_seqlens_q[b + 1] - q0;
  const int64_t len = p->seq_lens[b], start = t->start, end = t->end;
  const int32_t half = (p->rotary_dim > 0 ? p->rotary_dim : d) / 2;

  char *at = scratch;
  char *qpack = at;
  at += align64((size_t)DECODE_MAX_ROWS * dp * c->esz);
  uint16_t *qpanel = (uint16_t *)at;
  at += align64(qpanel_heads(c) * 16 * dp * c->esz);
  char *kp = at;
  at += align64((size_t)DECODE_BLOCK_KEYS * dp * c->esz);
  char *vp = at;
  at += align64((size_t)DECODE_BLOCK_KEYS * dp * c->esz);
  float *o = (float *)at;
  at += align64((size_t)DECODE_MAX_ROWS * dp * sizeof(float));
  float *m = (float *)at;
  at += align64(DECODE_MAX_ROWS * sizeof(float));
  float *l = (float *)at;
  at += align64(DECODE_MAX_ROWS * sizeof(float));
  float *lse = (float *)at;
  at += align64(DECODE_MAX_ROWS * sizeof(float));
  int64_t *last = (int64_t *)at;
  at += align64(DECODE_MAX_ROWS * sizeof(int64_t));
  void *fscratch = at;

  /* the rows, rotated once; the last key each sees (the same for every kv head) */
  const size_t qesz = hopei_dtype_size(dt);
  for (int32_t r = 0; r < nr; ++r) {
    const int32_t qi = (part_row0 + r) / group;
    last[r] = p->causal ? len - nq + qi : len - 1;
  }
  for (int32_t hh = 0; hh < nh; ++hh) {
    for (int32_t r = 0; r < nr; ++r) {
      const int32_t qi = (part_row0 + r) / group, j = (h0 + hh) * group + (part_row0 + r) % group;
      const int64_t token = (int64_t)q0 + qi;
      float row[HOPEI_ATTN_CPU_MAX_HEAD_DIM];
      hopei_cpu_rotate_row((const char *)p->q + (size_t)(token * plan->q_row_stride + (int64_t)j * d) * qesz, dt, d,
                           p->cos_q != NULL ? p->cos_q + token * half : NULL,
                           p->sin_q != NULL ? p->sin_q + token * half : NULL, p->rope_pairing, p->rotary_dim, true,
                           row);
      hopei_pack_row(row, d, dp, c->mode, qpack + (size_t)(hh * nr + r) * dp * c->esz);
    }
  }

  const block_path_t path = block_path(c, nr);
  if (path == PATH_QPANEL)
    for (int32_t hh = 0; hh < nh; ++hh)
      build_qpanel((const uint16_t *)qpack + (size_t)hh * nr * dp, nr, dp, qpanel + (size_t)hh * 16 * dp);
  hopei_flash_state_t st[DECODE_MAX_ROWS];
  for (int32_t hh = 0; hh < nh; ++hh) {
    st[hh].m = m + hh * nr;
    st[hh].l = l + hh * nr;
    st[hh].o = o + (size_t)hh * nr * dp;
    st[hh].o_ld = dp;
    hopei_flash_begin(&c->flash, &st[hh], nr);
  }
  block_rows_t rows_a, rows_b, *cur = &rows_a, *next = &rows_b;
  first_rows(c, t, start, cur);
  for (int64_t k0 = start; k0 < end; k0 += DECODE_BLOCK_KEYS) {
    if (!hopei_flash_block_visible(nr, last, k0)) break;
    /* the block to prefetch: this task's next, else the following task's first */
    const task_t *ahead = k0 + cur->n < end || following == NULL ? t : following;
    first_rows(c, ahead, ahead == t ? k0 + cur->n : ahead->start, next);
    prefetcher_t pf;
    prefetch_begin(&pf, next, (size_t)ahead->nh * c->row_bytes, block_steps(path, nh, nr, cur->n));
    if (path == PATH_ROWS || path == PATH_QPANEL)
      block_on_rows(c, st, qpack, path == PATH_QPANEL ? qpanel : NULL, nh, nr, last, k0, cur, &pf, fscratch);
    else block_on_panels(c, st, qpack, nh, nr, last, k0, cur, &pf, kp, vp, fscratch);
    block_rows_t *swap = cur;
    cur = next;
    next = swap;
  }

  for (int32_t hh = 0; hh < nh; ++hh) {
    hopei_flash_end(&c->flash, &st[hh], nr, lse + hh * nr);
    for (int32_t r = 0; r < nr; ++r) {
      const int32_t qi = (part_row0 + r) / group, j = (h0 + hh) * group + (part_row0 + r) % group;
      const int64_t token = (int64_t)q0 + qi;
      const float *orow = o + (size_t)(hh * nr + r) * dp;
      const float row_lse = lse[hh * nr + r];
      if (splits == 1) {
        hopei_store_row(p->out, dt, (token * hq + j) * d, orow, d);
        if (p->lse != NULL) p->lse[(int64_t)j * c->total_q + token] = row_lse;
      } else {
        const int64_t prow = ((int64_t)s * c->rows + (int64_t)b * p->max_seqlen_q + qi) * hq + j;
        memcpy(plan->partial_o + prow * d, orow, (size_t)d * sizeof(float));
        plan->partial_lse[prow] = row_lse;
      }
    }
  }
}

static void decode_worker(void *vctx, int64_t begin, int64_t end) {
  decode_ctx_t *c = (decode_ctx_t *)vctx;
  (void)end; /* the chunk runs serially: one scratch slot */
  char *scratch = c->scratch + (size_t)begin * c->scratch_bytes;
  int64_t t = atomic_fetch_add_explicit(&c->next, 1, memory_order_relaxed);
  while (t < c->num_tasks) {
    /* the next task is claimed now, so that its first block can be prefetched during this one's last */
    const int64_t u = atomic_fetch_add_explicit(&c->next, 1, memory_order_relaxed);
    const task_t cur = task_at(c, t), following = u < c->num_tasks ? task_at(c, u) : cur;
    decode_task(c, &cur, u < c->num_tasks ? &following : NULL, scratch);
    t = u;
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
  ctx.row_bytes = (size_t)p->cache.head_dim * hopei_dtype_size(p->cache.dtype);
  ctx.flash.kern = ctx.kern;
  ctx.flash.mode = ctx.mode;
  ctx.flash.dp = ctx.dp;
  ctx.flash.block_keys = DECODE_BLOCK_KEYS;
  ctx.flash.scale = plan->softmax_scale;
  ctx.hg = head_groups(p->num_q_heads, p->cache.num_kv_heads, p->max_seqlen_q);
  ctx.num_tasks = (int64_t)p->batch * plan->num_splits * ctx.hg.groups;
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
