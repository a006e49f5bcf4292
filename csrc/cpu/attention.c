/* cpu/attention.c — the CPU backend of hope_attention_forward (SPEC §4, §5).
 *
 * Receives parameters already validated and resolved by csrc/attention.c (strides non-zero, softmax_scale > 0,
 * cu_seqlens checked, total sizes known to fit). The plan:
 *  1. q and k are rotated (or only converted) into float32 scratch, packed [tokens][heads][d]; in float16 /
 *     bfloat16 mode the rotated values are rounded to the dtype (SPEC §4, as the tensor-core path does).
 *     v is converted to float32 likewise. float32 inputs that need no rotation are read in place.
 *     The rotated K goes to k_rotated as well when the caller asks for it.
 *  2. Work items (sequence, query head, block of kBlockM query rows) are taken from an atomic counter by
 *     hopei_parallel_for's threads, most expensive first (later rows of a causal sequence see more keys).
 *     Each item runs an online softmax in float32 over blocks of kBlockN keys: scores, running max, rescale,
 *     exp, then acc += p * v, with contiguous loops over head_dim.
 * Rows with no visible key (causal with Nq > Nk, or Nk = 0) get out = 0 and lse = -inf. */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "../internal.h"

enum { kBlockM = 32, kBlockN = 64 };

/* ---- step 1: rotation / conversion into float32 scratch ---------------------------------------------- */

typedef struct {
  const void *src;
  int32_t dtype;
  int64_t src_ld;    /* elements between tokens */
  int heads, d;
  const float *cos, *sin; /* [tokens][d/2] or NULL */
  int round_to_dtype;     /* round the rotated values to dtype (float16 / bfloat16 mode) */
  float *dst;             /* packed [tokens][heads][d] float32, or NULL */
  void *dst_dtype;        /* packed [tokens][heads][d] in dtype, or NULL (k_rotated) */
} convert_ctx_t;

static inline float round_trip(int32_t dtype, float x) {
  switch (dtype) {
    case HOPE_DTYPE_FLOAT16: return hopei_half_to_float(hopei_float_to_half(x));
    case HOPE_DTYPE_BFLOAT16: return hopei_bf16_to_float(hopei_float_to_bf16(x));
    default: return x;
  }
}

static void convert_range(void *vctx, int64_t begin, int64_t end) {
  const convert_ctx_t *c = (const convert_ctx_t *)vctx;
  const int d = c->d, half = d / 2;
  float row[2048]; /* head_dim <= 1024 */
  for (int64_t t = begin; t < end; ++t) {
    for (int h = 0; h < c->heads; ++h) {
      const int64_t src = t * c->src_ld + (int64_t)h * d;
      const int64_t dst = (t * c->heads + h) * (int64_t)d;
      if (c->cos != NULL) {
        const float *cs = c->cos + t * half, *sn = c->sin + t * half;
        for (int i = 0; i < half; ++i) {
          const float x0 = hopei_load(c->src, c->dtype, src + i);
          const float x1 = hopei_load(c->src, c->dtype, src + i + half);
          const float y0 = x0 * cs[i] - x1 * sn[i];
          const float y1 = x1 * cs[i] + x0 * sn[i];
          row[i] = c->round_to_dtype ? round_trip(c->dtype, y0) : y0;
          row[i + half] = c->round_to_dtype ? round_trip(c->dtype, y1) : y1;
        }
      } else {
        for (int i = 0; i < d; ++i) row[i] = hopei_load(c->src, c->dtype, src + i);
      }
      if (c->dst != NULL) memcpy(c->dst + dst, row, (size_t)d * sizeof(float));
      if (c->dst_dtype != NULL)
        for (int i = 0; i < d; ++i) hopei_store(c->dst_dtype, c->dtype, dst + i, row[i]);
    }
  }
}

static void convert(convert_ctx_t *c, int64_t tokens) {
  /* Roughly 64 Ki elements per chunk so small calls stay on one thread. */
  int64_t per_token = (int64_t)c->heads * c->d;
  int64_t min_chunk = per_token > 0 ? 65536 / per_token : 1;
  hopei_parallel_for(tokens, min_chunk < 1 ? 1 : min_chunk, convert_range, c);
}

/* ---- step 2: blocked online-softmax attention ----------------------------------------------------------- */

typedef struct {
  int32_t b, row0, rows;
} block_t;

typedef struct {
  const hope_attention_params_t *p;
  int hq, hk, d, group;
  int64_t total_q;
  const float *q, *k, *v;
  int64_t q_ld, k_ld, v_ld;
  float scale;
  const block_t *blocks;
  int64_t num_items; /* num_blocks * hq */
  atomic_llong next;
  float *scratch;
  size_t scratch_floats; /* per worker */
} attn_ctx_t;

/* The inner loops use GCC/Clang vector extensions (8 floats; two SSE registers on plain x86-64, one AVX
 * register in the x86-64-v3 clone below), so they vectorise without -ffast-math. */
typedef float v8f __attribute__((vector_size(32)));
/* v8f only travels between always-inlined helpers, so the AVX-vs-SSE calling convention never matters. */
#if defined(__clang__)
#pragma clang diagnostic ignored "-Wpsabi"
#elif defined(__GNUC__)
#pragma GCC diagnostic ignored "-Wpsabi"
#endif
#define HOPEI_INLINE static inline __attribute__((always_inline))

HOPEI_INLINE v8f ld8(const float *p) {
  v8f x;
  __builtin_memcpy(&x, p, sizeof x);
  return x;
}
HOPEI_INLINE void st8(float *p, const v8f *x) { __builtin_memcpy(p, x, sizeof *x); }
HOPEI_INLINE float hsum8(const v8f *v) {
  const v8f x = *v;
  return ((x[0] + x[1]) + (x[2] + x[3])) + ((x[4] + x[5]) + (x[6] + x[7]));
}

/* out[0..3] = q . k_{0..3}, the four keys `ld` floats apart: q is loaded once for four keys. */
HOPEI_INLINE void dot4(const float *q, const float *k, int64_t ld, int d, float *out) {
  const float *k0 = k, *k1 = k + ld, *k2 = k + 2 * ld, *k3 = k + 3 * ld;
  v8f a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0}, b0 = {0}, b1 = {0}, b2 = {0}, b3 = {0};
  int c = 0;
  for (; c + 16 <= d; c += 16) {
    const v8f x = ld8(q + c), y = ld8(q + c + 8);
    a0 += x * ld8(k0 + c), b0 += y * ld8(k0 + c + 8);
    a1 += x * ld8(k1 + c), b1 += y * ld8(k1 + c + 8);
    a2 += x * ld8(k2 + c), b2 += y * ld8(k2 + c + 8);
    a3 += x * ld8(k3 + c), b3 += y * ld8(k3 + c + 8);
  }
  float t0 = 0.f, t1 = 0.f, t2 = 0.f, t3 = 0.f;
  for (; c < d; ++c) {
    t0 += q[c] * k0[c], t1 += q[c] * k1[c], t2 += q[c] * k2[c], t3 += q[c] * k3[c];
  }
  a0 += b0, a1 += b1, a2 += b2, a3 += b3;
  out[0] = hsum8(&a0) + t0;
  out[1] = hsum8(&a1) + t1;
  out[2] = hsum8(&a2) + t2;
  out[3] = hsum8(&a3) + t3;
}

HOPEI_INLINE float dot1(const float *q, const float *k, int d) {
  v8f a = {0}, b = {0};
  int c = 0;
  for (; c + 16 <= d; c += 16) a += ld8(q + c) * ld8(k + c), b += ld8(q + c + 8) * ld8(k + c + 8);
  float t = 0.f;
  for (; c < d; ++c) t += q[c] * k[c];
  a += b;
  return hsum8(&a) + t;
}

/* acc += p[0] v_0 + p[1] v_1 + p[2] v_2 + p[3] v_3 (rows `ld` floats apart): one pass over acc per 4 keys. */
HOPEI_INLINE void axpy4(float *acc, const float *p, const float *v, int64_t ld, int d) {
  const float *v0 = v, *v1 = v + ld, *v2 = v + 2 * ld, *v3 = v + 3 * ld;
  const float p0 = p[0], p1 = p[1], p2 = p[2], p3 = p[3];
  int c = 0;
  for (; c + 8 <= d; c += 8) {
    const v8f y = ld8(acc + c) + ((p0 * ld8(v0 + c) + p1 * ld8(v1 + c)) + (p2 * ld8(v2 + c) + p3 * ld8(v3 + c)));
    st8(acc + c, &y);
  }
  for (; c < d; ++c) acc[c] += (p0 * v0[c] + p1 * v1[c]) + (p2 * v2[c] + p3 * v3[c]);
}

HOPEI_INLINE void axpy1(float *acc, float p, const float *v, int d) {
  int c = 0;
  for (; c + 8 <= d; c += 8) {
    const v8f y = ld8(acc + c) + p * ld8(v + c);
    st8(acc + c, &y);
  }
  for (; c < d; ++c) acc[c] += p * v[c];
}

/* On x86-64 the hot function is also built for x86-64-v3 (AVX2, FMA) and picked at load time. Sanitizer
 * builds keep one plain version (ifunc resolvers run before the sanitizer runtime is ready). */
#if defined(__x86_64__) && defined(__has_attribute) && !defined(__SANITIZE_ADDRESS__) && \
    !defined(__SANITIZE_THREAD__) && !defined(HOPE_NO_TARGET_CLONES)
#if __has_attribute(target_clones)
#define HOPEI_HOT_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#endif
#endif
#ifndef HOPEI_HOT_CLONES
#define HOPEI_HOT_CLONES
#endif

HOPEI_HOT_CLONES static void process_item(attn_ctx_t *c, int64_t item, float *scratch) {
  const hope_attention_params_t *p = c->p;
  const block_t blk = c->blocks[item / c->hq];
  const int j = (int)(item % c->hq), kvh = j / c->group, d = c->d;
  const int64_t q0 = p->cu_seqlens_q[blk.b], k0 = p->cu_seqlens_k[blk.b];
  const int64_t nq = p->cu_seqlens_q[blk.b + 1] - q0, nk = p->cu_seqlens_k[blk.b + 1] - k0;
  const int rows = blk.rows;

  float *acc = scratch;              /* [kBlockM][d] */
  float *s = acc + kBlockM * d;      /* [kBlockN] */
  float *m = s + kBlockN;            /* [kBlockM] */
  float *l = m + kBlockM;            /* [kBlockM] */
  int64_t last[kBlockM];             /* last visible key per row, -1 when none */
  int64_t kend = 0;
  for (int r = 0; r < rows; ++r) {
    int64_t lr = nk - 1;
    if (p->causal) {
      const int64_t lim = blk.row0 + r + nk - nq;
      if (lim < lr) lr = lim;
    }
    last[r] = lr < -1 ? -1 : lr;
    if (last[r] + 1 > kend) kend = last[r] + 1;
    m[r] = -INFINITY;
    l[r] = 0.f;
  }
  memset(acc, 0, (size_t)rows * d * sizeof(float));

  const float scale = c->scale;
  for (int64_t n0 = 0; n0 < kend; n0 += kBlockN) {
    const int64_t nb = kend - n0 < kBlockN ? kend - n0 : kBlockN;
    /* Formed only for keys that exist (k0 + n0 < total_k), so the offsets stay within the validated extent. */
    const float *kb = c->k + (k0 + n0) * c->k_ld + (int64_t)kvh * d;
    const float *vb = c->v + (k0 + n0) * c->v_ld + (int64_t)kvh * d;
    for (int r = 0; r < rows; ++r) {
      int64_t cnt64 = last[r] + 1 - n0;
      if (cnt64 > nb) cnt64 = nb;
      if (cnt64 <= 0) continue;
      const int cnt = (int)cnt64;
      const float *qr = c->q + (q0 + blk.row0 + r) * c->q_ld + (int64_t)j * d;
      int n = 0;
      for (; n + 4 <= cnt; n += 4) dot4(qr, kb + n * c->k_ld, c->k_ld, d, s + n);
      for (; n < cnt; ++n) s[n] = dot1(qr, kb + n * c->k_ld, d);
      float mx = m[r];
      for (n = 0; n < cnt; ++n) {
        s[n] *= scale;
        if (s[n] > mx) mx = s[n];
      }
      /* mx is finite here: every score is finite for finite inputs. */
      const float alpha = expf(m[r] - mx); /* 0 on the first block (m = -inf) */
      float sum = 0.f;
      for (n = 0; n < cnt; ++n) {
        s[n] = expf(s[n] - mx);
        sum += s[n];
      }
      l[r] = l[r] * alpha + sum;
      m[r] = mx;
      float *ar = acc + (int64_t)r * d;
      if (alpha != 1.f)
        for (int i = 0; i < d; ++i) ar[i] *= alpha;
      for (n = 0; n + 4 <= cnt; n += 4) axpy4(ar, s + n, vb + n * c->v_ld, c->v_ld, d);
      for (; n < cnt; ++n) axpy1(ar, s[n], vb + n * c->v_ld, d);
    }
  }

  const int64_t hd = (int64_t)c->hq * d;
  for (int r = 0; r < rows; ++r) {
    const int64_t tok = q0 + blk.row0 + r;
    const int64_t o = tok * hd + (int64_t)j * d;
    if (last[r] < 0) {
      for (int i = 0; i < d; ++i) hopei_store(p->out, p->dtype, o + i, 0.f);
      if (p->lse != NULL) p->lse[(int64_t)j * c->total_q + tok] = -INFINITY;
      continue;
    }
    const float inv = 1.f / l[r];
    const float *ar = acc + (int64_t)r * d;
    for (int i = 0; i < d; ++i) hopei_store(p->out, p->dtype, o + i, ar[i] * inv);
    if (p->lse != NULL) p->lse[(int64_t)j * c->total_q + tok] = m[r] + logf(l[r]);
  }
}

static void attn_worker(void *vctx, int64_t begin, int64_t end) {
  attn_ctx_t *c = (attn_ctx_t *)vctx;
  (void)end; /* the chunk runs serially, so one scratch slot serves all its ids */
  float *scratch = c->scratch + (size_t)begin * c->scratch_floats;
  for (;;) {
    const int64_t i = atomic_fetch_add_explicit(&c->next, 1, memory_order_relaxed);
    if (i >= c->num_items) break;
    process_item(c, c->num_items - 1 - i, scratch); /* last blocks (most keys when causal) first */
  }
}

/* ---- entry ---------------------------------------------------------------------------------------------- */

static void *alloc_floats(int64_t n) { return malloc((size_t)(n > 0 ? n : 1) * sizeof(float)); }

hope_status_t hopei_attention_cpu(const hope_attention_params_t *p) {
  static const char *fn = "hope_attention_forward";
  const int hq = p->num_q_heads, hk = p->num_kv_heads, d = p->head_dim;
  const int64_t total_q = p->cu_seqlens_q[p->batch], total_k = p->cu_seqlens_k[p->batch];
  const int is_f32 = p->dtype == HOPE_DTYPE_FLOAT32;
  const int rotate_q = p->cos_q != NULL, rotate_k = p->cos_k != NULL;
  hope_status_t status = HOPE_SUCCESS;

  float *qs = NULL, *ks = NULL, *vs = NULL, *scratch = NULL;
  block_t *blocks = NULL;

  /* Number of row blocks. */
  int64_t num_blocks = 0;
  for (int32_t b = 0; b < p->batch; ++b) {
    const int64_t nq = (int64_t)p->cu_seqlens_q[b + 1] - p->cu_seqlens_q[b];
    num_blocks += (nq + kBlockM - 1) / kBlockM;
  }
  const int64_t num_items = num_blocks * hq;
  int64_t workers = hopei_num_threads();
  if (workers > num_items) workers = num_items;
  if (workers < 1) workers = 1;
  const size_t scratch_floats = (size_t)kBlockM * d + kBlockN + 2 * kBlockM;

  const int need_q = !is_f32 || rotate_q;
  const int need_k = !is_f32 || rotate_k;
  const int need_v = !is_f32;
  if (need_q) qs = alloc_floats(total_q * hq * d);
  if (need_k) ks = alloc_floats(total_k * hk * d);
  if (need_v) vs = alloc_floats(total_k * hk * d);
  blocks = (block_t *)malloc((size_t)(num_blocks > 0 ? num_blocks : 1) * sizeof(block_t));
  scratch = (float *)malloc((size_t)workers * scratch_floats * sizeof(float));
  if ((need_q && qs == NULL) || (need_k && ks == NULL) || (need_v && vs == NULL) || blocks == NULL ||
      scratch == NULL) {
    status = hopei_fail(HOPE_ERROR_OUT_OF_MEMORY,
                        "%s: could not allocate the CPU backend's float32 scratch (%lld query and %lld key "
                        "tokens, head_dim %d)", fn, (long long)total_q, (long long)total_k, d);
    goto done;
  }

  /* Step 1: rotated / converted q, k, v. */
  {
    convert_ctx_t cq = {p->q, p->dtype, p->q_row_stride, hq, d, p->cos_q, p->sin_q, !is_f32, qs, NULL};
    if (need_q) convert(&cq, total_q);
    convert_ctx_t ck = {p->k, p->dtype, p->k_row_stride, hk, d, p->cos_k, p->sin_k, !is_f32, ks, p->k_rotated};
    if (need_k || p->k_rotated != NULL) convert(&ck, total_k);
    convert_ctx_t cv = {p->v, p->dtype, p->v_row_stride, hk, d, NULL, NULL, 0, vs, NULL};
    if (need_v) convert(&cv, total_k);
  }

  /* Step 2: attention. */
  {
    int64_t nb = 0;
    for (int32_t b = 0; b < p->batch; ++b) {
      const int32_t nq = p->cu_seqlens_q[b + 1] - p->cu_seqlens_q[b];
      for (int32_t r0 = 0; r0 < nq; r0 += kBlockM) {
        blocks[nb].b = b;
        blocks[nb].row0 = r0;
        blocks[nb].rows = nq - r0 < kBlockM ? nq - r0 : kBlockM;
        ++nb;
      }
    }
    attn_ctx_t c;
    c.p = p;
    c.hq = hq;
    c.hk = hk;
    c.d = d;
    c.group = hq / hk;
    c.total_q = total_q;
    c.q = need_q ? qs : (const float *)p->q;
    c.q_ld = need_q ? (int64_t)hq * d : p->q_row_stride;
    c.k = need_k ? ks : (const float *)p->k;
    c.k_ld = need_k ? (int64_t)hk * d : p->k_row_stride;
    c.v = need_v ? vs : (const float *)p->v;
    c.v_ld = need_v ? (int64_t)hk * d : p->v_row_stride;
    c.scale = p->softmax_scale;
    c.blocks = blocks;
    c.num_items = num_items;
    atomic_init(&c.next, 0);
    c.scratch = scratch;
    c.scratch_floats = scratch_floats;
    if (num_items > 0) hopei_parallel_for(workers, 1, attn_worker, &c);
  }

done:
  free(qs);
  free(ks);
  free(vs);
  free(blocks);
  free(scratch);
  return status;
}
