/* serving.c — validation, planning and backend dispatch for the serving path: hope_kv_append,
 * hope_decode_workspace_size, hope_decode_forward and hope_merge_states.
 *
 * One planning function (plan_decode) answers "how many splits" and "how much workspace" for both
 * hope_decode_workspace_size and hope_decode_forward, so the two can never disagree. */
#include <limits.h>
#include <stdint.h>
#include <string.h>

#include "internal.h"
#include "serving/launch.h"

#define HOPEI_SERVING_MAX_HEAD_DIM 1024
#define HOPEI_DECODE_MAX_QUERIES 8
/* Fewest keys a planned split should hold (a forced split count may go below). */
#define HOPEI_DECODE_MIN_KEYS_PER_SPLIT 256
/* CTAs per SM the CUDA planner aims at (the decode kernel fits 3 CTAs of 128 threads per SM). */
#define HOPEI_DECODE_CTAS_PER_SM 3

/* ---- shared checks -------------------------------------------------------------------------------- */

static hope_status_t check_backend(const char *fn, int32_t backend) {
  HOPEI_CHECK(backend == HOPE_BACKEND_CUDA || backend == HOPE_BACKEND_CPU,
              "%s: params->backend %d is not a hope_backend_t", fn, backend);
  if (backend == HOPE_BACKEND_CUDA) HOPEI_TRY(hopei_require_device(fn));
  return HOPE_SUCCESS;
}

/* The cache description; `need_pages`: whether the page pointers must be set. */
static hope_status_t check_cache(const char *fn, int32_t backend, const hope_paged_kv_t *c, bool need_pages) {
  HOPEI_CHECK(c->dtype == HOPE_DTYPE_FLOAT16 || c->dtype == HOPE_DTYPE_BFLOAT16 || c->dtype == HOPE_DTYPE_FLOAT32,
              "%s: params->cache.dtype %d is not a hope_dtype_t", fn, c->dtype);
  HOPEI_CHECK(c->num_pages >= 1, "%s: params->cache.num_pages is %d, must be >= 1", fn, c->num_pages);
  HOPEI_CHECK(c->page_size >= 1, "%s: params->cache.page_size is %d, must be >= 1", fn, c->page_size);
  HOPEI_CHECK(c->num_kv_heads >= 1, "%s: params->cache.num_kv_heads is %d, must be >= 1", fn, c->num_kv_heads);
  HOPEI_CHECK(c->head_dim >= 2 && c->head_dim % 2 == 0 && c->head_dim <= HOPEI_SERVING_MAX_HEAD_DIM,
              "%s: params->cache.head_dim is %d, must be even and in [2, %d]", fn, c->head_dim,
              HOPEI_SERVING_MAX_HEAD_DIM);
  int64_t slots, elems;
  HOPEI_CHECK(hopei_mul_i64(c->num_pages, c->page_size, &slots) &&
                  hopei_mul_i64(slots, (int64_t)c->num_kv_heads * c->head_dim, &elems),
              "%s: the cache (%d pages of %d tokens, %d heads of %d) has more elements than int64 holds", fn,
              c->num_pages, c->page_size, c->num_kv_heads, c->head_dim);
  if (need_pages) {
    HOPEI_CHECK(c->k_pages != NULL, "%s: params->cache.k_pages must not be NULL", fn);
    HOPEI_CHECK(c->v_pages != NULL, "%s: params->cache.v_pages must not be NULL", fn);
  }
  if (backend == HOPE_BACKEND_CUDA && c->dtype == HOPE_DTYPE_FLOAT32)
    return hopei_fail(HOPE_ERROR_NOT_SUPPORTED,
                      "%s: a float32 KV cache is supported on the CPU backend only; the CUDA backend takes "
                      "float16 or bfloat16 pages", fn);
  return HOPE_SUCCESS;
}

static hope_status_t resolve_stride(const char *fn, const char *name, int64_t *stride, int64_t min_stride) {
  if (*stride == 0) *stride = min_stride;
  HOPEI_CHECK(*stride >= min_stride,
              "%s: params->%s is %lld, but a row holds %lld elements (0 selects that)", fn, name,
              (long long)*stride, (long long)min_stride);
  return HOPE_SUCCESS;
}

static hope_status_t check_extent(const char *fn, const char *name, int64_t rows, int64_t stride, int64_t width) {
  if (rows == 0) return HOPE_SUCCESS;
  int64_t last;
  HOPEI_CHECK(hopei_mul_i64(rows - 1, stride, &last) && hopei_add_i64(last, width, &last),
              "%s: %s (%lld rows %lld elements apart) has more elements than int64 holds", fn, name,
              (long long)rows, (long long)stride);
  return HOPE_SUCCESS;
}

/* ---- hope_kv_append -------------------------------------------------------------------------------- */

hope_status_t hope_kv_append(const hope_kv_append_params_t *params, void *stream) {
  HOPEI_NVTX_SCOPE(HOPEI_RANGE_KV_APPEND);
  static const char fn[] = "hope_kv_append";
  HOPEI_CHECK_NOT_NULL(fn, params);
  hope_kv_append_params_t r = *params;
  HOPEI_TRY(check_backend(fn, r.backend));
  HOPEI_TRY(check_cache(fn, r.backend, &r.cache, true));
  HOPEI_TRY(hopei_rotary_resolve(fn, "params->", "rope_pairing", r.rope_pairing, r.rotary_dim, r.cache.head_dim,
                                 &r.rotary_dim));
  HOPEI_CHECK(r.num_tokens >= 0, "%s: params->num_tokens is %lld, must be >= 0", fn, (long long)r.num_tokens);
  const int64_t width = (int64_t)r.cache.num_kv_heads * r.cache.head_dim;
  HOPEI_TRY(resolve_stride(fn, "k_row_stride", &r.k_row_stride, width));
  HOPEI_TRY(resolve_stride(fn, "v_row_stride", &r.v_row_stride, width));
  HOPEI_CHECK((r.cos_k == NULL) == (r.sin_k == NULL),
              "%s: params->cos_k and params->sin_k must be both set or both NULL", fn);
  if (r.num_tokens == 0) return HOPE_SUCCESS;
  HOPEI_CHECK(r.k != NULL, "%s: params->k must not be NULL", fn);
  HOPEI_CHECK(r.v != NULL, "%s: params->v must not be NULL", fn);
  HOPEI_CHECK(r.slot_mapping != NULL, "%s: params->slot_mapping must not be NULL", fn);
  HOPEI_TRY(check_extent(fn, "params->k", r.num_tokens, r.k_row_stride, width));
  HOPEI_TRY(check_extent(fn, "params->v", r.num_tokens, r.v_row_stride, width));
  const int64_t num_slots = (int64_t)r.cache.num_pages * r.cache.page_size;
  if (r.backend == HOPE_BACKEND_CPU) {
    for (int64_t t = 0; t < r.num_tokens; ++t)
      HOPEI_CHECK(r.slot_mapping[t] < num_slots,
                  "%s: params->slot_mapping[%lld] is %lld, but the cache has %lld slots (num_pages * page_size)",
                  fn, (long long)t, (long long)r.slot_mapping[t], (long long)num_slots);
    return hopei_kv_append_cpu(&r);
  }
  return hopei_kv_append_cuda(&r, stream);
}

/* ---- decode ---------------------------------------------------------------------------------------- */

/* Checks the shape part of the params (everything the plan depends on) and resolves stride and scale. */
static hope_status_t check_decode_shape(const char *fn, const hope_decode_params_t *p, hope_decode_params_t *r,
                                        hopei_decode_plan_t *plan) {
  HOPEI_CHECK_NOT_NULL(fn, p);
  *r = *p;
  memset(plan, 0, sizeof(*plan));
  HOPEI_TRY(check_backend(fn, r->backend));
  HOPEI_TRY(check_cache(fn, r->backend, &r->cache, false));
  const hope_paged_kv_t *c = &r->cache;
  HOPEI_CHECK(r->batch >= 0, "%s: params->batch is %d, must be >= 0", fn, r->batch);
  HOPEI_CHECK(r->num_q_heads >= 1, "%s: params->num_q_heads is %d, must be >= 1", fn, r->num_q_heads);
  HOPEI_CHECK(r->num_q_heads % c->num_kv_heads == 0,
              "%s: params->num_q_heads (%d) must be a multiple of params->cache.num_kv_heads (%d)", fn,
              r->num_q_heads, c->num_kv_heads);
  HOPEI_CHECK(r->max_seqlen_q >= 0 && r->max_seqlen_q <= HOPEI_DECODE_MAX_QUERIES,
              "%s: params->max_seqlen_q is %d, must be in [1, %d] (decode takes 1 to %d new tokens per sequence)",
              fn, r->max_seqlen_q, HOPEI_DECODE_MAX_QUERIES, HOPEI_DECODE_MAX_QUERIES);
  HOPEI_CHECK(r->max_seqlen_q >= 1 || r->batch == 0,
              "%s: params->max_seqlen_q is 0 with batch %d; it must be in [1, %d]", fn, r->batch,
              HOPEI_DECODE_MAX_QUERIES);
  HOPEI_CHECK(r->max_seqlen_k >= 0, "%s: params->max_seqlen_k is %d, must be >= 0", fn, r->max_seqlen_k);
  HOPEI_CHECK(r->max_pages_per_seq >= 0, "%s: params->max_pages_per_seq is %d, must be >= 0", fn,
              r->max_pages_per_seq);
  HOPEI_CHECK(r->num_splits >= 0 && r->num_splits <= HOPEI_DECODE_MAX_SPLITS,
              "%s: params->num_splits is %d, must be in [0, %d] (0: planned)", fn, r->num_splits,
              HOPEI_DECODE_MAX_SPLITS);
  HOPEI_TRY(hopei_rotary_resolve(fn, "params->", "rope_pairing", r->rope_pairing, r->rotary_dim, c->head_dim,
                                 &r->rotary_dim));
  HOPEI_CHECK(isfinite(r->softmax_scale), "%s: params->softmax_scale is not finite", fn);
  if (r->softmax_scale <= 0.f) r->softmax_scale = (float)(1.0 / sqrt((double)c->head_dim));
  const int64_t q_width = (int64_t)r->num_q_heads * c->head_dim;
  HOPEI_TRY(resolve_stride(fn, "q_row_stride", &r->q_row_stride, q_width));
  if (r->backend == HOPE_BACKEND_CUDA) {
    if (!hopei_decode_cuda_supported(c->dtype, c->head_dim))
      return hopei_fail(HOPE_ERROR_NOT_SUPPORTED,
                        "%s: the CUDA decode kernel supports head_dim 64, 128 and 256 (float16, bfloat16), not "
                        "head_dim %d in %s; use the CPU backend", fn, c->head_dim, hopei_dtype_name(c->dtype));
    /* the kernel forms element offsets within a page table row and a q row in int64, but grid sizes in int32 */
    int64_t ctas;
    HOPEI_CHECK(hopei_mul_i64(r->batch, c->num_kv_heads, &ctas) && ctas <= INT32_MAX,
                "%s: batch * num_kv_heads (%d * %d) exceeds the CUDA grid", fn, r->batch, c->num_kv_heads);
  }
  return HOPE_SUCCESS;
}

/* THE plan: split count and workspace layout. Depends only on the shape part of the params and on the
 * machine (SM count for CUDA, thread count for CPU), so workspace_size and forward agree. */
static hope_status_t plan_decode(const char *fn, const hope_decode_params_t *r, hopei_decode_plan_t *plan) {
  const int32_t group = r->num_q_heads / r->cache.num_kv_heads;
  const int64_t rows_per_kv_head = (int64_t)r->max_seqlen_q * group;
  plan->row_blocks = (int32_t)((rows_per_kv_head + HOPEI_DECODE_ROWS_PER_CTA - 1) / HOPEI_DECODE_ROWS_PER_CTA);
  plan->softmax_scale = r->softmax_scale;
  plan->q_row_stride = r->q_row_stride;
  int32_t splits = r->num_splits;
  if (splits == 0) {
    splits = 1;
    int64_t units, base;
    if (r->backend == HOPE_BACKEND_CUDA) {
      int sm = hopei_device_sm_count();
      if (sm <= 0) sm = 108;
      units = (int64_t)sm * HOPEI_DECODE_CTAS_PER_SM;
      base = (int64_t)r->batch * r->cache.num_kv_heads * (plan->row_blocks > 0 ? plan->row_blocks : 1);
    } else {
      /* a CPU task is (sequence, split, head group): the group's kv heads share each read of a page slot */
      units = hopei_num_threads();
      base = (int64_t)r->batch *
             hopei_decode_cpu_tasks_per_split(r->num_q_heads, r->cache.num_kv_heads, r->max_seqlen_q);
    }
    int64_t max_splits =
        ((int64_t)r->max_seqlen_k + HOPEI_DECODE_MIN_KEYS_PER_SPLIT - 1) / HOPEI_DECODE_MIN_KEYS_PER_SPLIT;
    if (max_splits > HOPEI_DECODE_MAX_SPLITS) max_splits = HOPEI_DECODE_MAX_SPLITS;
    if (base > 0 && units > 0 && max_splits > 1) {
      if (r->backend == HOPE_BACKEND_CUDA) {
        /* With four waves or more without splitting, the tail is small and uneven finishing smooths it. */
        if (base >= 4 * units) max_splits = 1;
        /* Equal-work CTAs run in waves of `units`: pick the split count whose last wave is fullest
         * (occupancy = CTAs / (waves * units)), taking a larger count only for a clear (> 2%) gain. */
        double best = (double)base / (double)(((base + units - 1) / units) * units);
        for (int64_t s = 2; s <= max_splits; ++s) {
          const int64_t ctas = base * s;
          const double occ = (double)ctas / (double)(((ctas + units - 1) / units) * units);
          if (occ > best + 0.02) {
            best = occ;
            splits = (int32_t)s;
          }
        }
      } else if (base < 2 * units) {
        /* CPU: at least two tasks per thread, so the atomic task queue can even out uneven progress */
        int64_t want = (2 * units + base - 1) / base;
        if (want > max_splits) want = max_splits;
        splits = want < 1 ? 1 : (int32_t)want;
      }
    }
  }
  plan->num_splits = splits;
  plan->workspace_bytes = 0;
  if (splits > 1 && r->batch > 0) {
    int64_t rows, o_elems, lse_elems;
    const bool ok = hopei_mul_i64((int64_t)r->batch * r->max_seqlen_q, r->num_q_heads, &rows) &&
                    hopei_mul_i64(rows, splits, &lse_elems) &&
                    hopei_mul_i64(lse_elems, r->cache.head_dim, &o_elems) &&
                    o_elems <= (INT64_MAX / 8) && lse_elems <= (INT64_MAX / 8) &&
                    (uint64_t)o_elems * 4u + (uint64_t)lse_elems * 4u + 512u <= (uint64_t)SIZE_MAX;
    HOPEI_CHECK(ok, "%s: the split-KV workspace (%d splits) would exceed the address space", fn, splits);
    plan->partial_o_offset = 0;
    plan->partial_lse_offset = (((size_t)o_elems * 4u) + 255u) & ~(size_t)255u;
    plan->workspace_bytes = plan->partial_lse_offset + (size_t)lse_elems * 4u;
  }
  return HOPE_SUCCESS;
}

hope_status_t hope_decode_workspace_size(const hope_decode_params_t *params, size_t *workspace_bytes) {
  HOPEI_NVTX_SCOPE(HOPEI_RANGE_DECODE_WORKSPACE);
  static const char fn[] = "hope_decode_workspace_size";
  HOPEI_CHECK_NOT_NULL(fn, workspace_bytes);
  hope_decode_params_t r;
  hopei_decode_plan_t plan;
  HOPEI_TRY(check_decode_shape(fn, params, &r, &plan));
  HOPEI_TRY(plan_decode(fn, &r, &plan));
  *workspace_bytes = plan.workspace_bytes;
  return HOPE_SUCCESS;
}

/* CPU backend only: the host arrays are read and checked in full. */
static hope_status_t check_decode_host_arrays(const char *fn, const hope_decode_params_t *r) {
  const int32_t *cu = r->cu_seqlens_q;
  HOPEI_CHECK(cu[0] == 0, "%s: params->cu_seqlens_q[0] is %d, must be 0", fn, cu[0]);
  const int64_t cap = (int64_t)r->max_pages_per_seq * r->cache.page_size;
  for (int32_t b = 0; b < r->batch; ++b) {
    const int64_t nq = (int64_t)cu[b + 1] - cu[b];
    HOPEI_CHECK(nq >= 0, "%s: params->cu_seqlens_q decreases at sequence %d (%d then %d)", fn, b, cu[b],
                cu[b + 1]);
    HOPEI_CHECK(nq <= r->max_seqlen_q, "%s: sequence %d has %lld query tokens, above params->max_seqlen_q = %d",
                fn, b, (long long)nq, r->max_seqlen_q);
    const int32_t len = r->seq_lens[b];
    HOPEI_CHECK(len >= 0, "%s: params->seq_lens[%d] is %d, must be >= 0", fn, b, len);
    HOPEI_CHECK(len <= r->max_seqlen_k, "%s: params->seq_lens[%d] is %d, above params->max_seqlen_k = %d", fn, b,
                len, r->max_seqlen_k);
    HOPEI_CHECK(len <= cap,
                "%s: params->seq_lens[%d] is %d, above max_pages_per_seq * page_size = %lld", fn, b, len,
                (long long)cap);
    HOPEI_CHECK(len >= nq, "%s: params->seq_lens[%d] is %d, below the sequence's %lld query tokens (seq_lens "
                "counts the new tokens too)", fn, b, len, (long long)nq);
    const int32_t pages = (int32_t)(((int64_t)len + r->cache.page_size - 1) / r->cache.page_size);
    if (pages == 0) continue; /* the page table may be NULL when no sequence has pages */
    const int32_t *row = r->page_table + (int64_t)b * r->max_pages_per_seq;
    for (int32_t i = 0; i < pages; ++i)
      HOPEI_CHECK(row[i] >= 0 && row[i] < r->cache.num_pages,
                  "%s: params->page_table[%d][%d] is %d, outside [0, %d) (cache.num_pages)", fn, b, i, row[i],
                  r->cache.num_pages);
  }
  return HOPE_SUCCESS;
}

hope_status_t hope_decode_forward(const hope_decode_params_t *params, void *workspace, size_t workspace_bytes,
                                  void *stream) {
  HOPEI_NVTX_SCOPE(HOPEI_RANGE_DECODE_FORWARD);
  static const char fn[] = "hope_decode_forward";
  hope_decode_params_t r;
  hopei_decode_plan_t plan;
  HOPEI_TRY(check_decode_shape(fn, params, &r, &plan));
  HOPEI_CHECK((r.cos_q == NULL) == (r.sin_q == NULL),
              "%s: params->cos_q and params->sin_q must be both set or both NULL", fn);
  if (r.batch == 0) return HOPE_SUCCESS;
  HOPEI_CHECK(r.cache.k_pages != NULL, "%s: params->cache.k_pages must not be NULL", fn);
  HOPEI_CHECK(r.cache.v_pages != NULL, "%s: params->cache.v_pages must not be NULL", fn);
  HOPEI_CHECK(r.cu_seqlens_q != NULL, "%s: params->cu_seqlens_q must not be NULL", fn);
  HOPEI_CHECK(r.seq_lens != NULL, "%s: params->seq_lens must not be NULL", fn);
  HOPEI_CHECK(r.q != NULL, "%s: params->q must not be NULL", fn);
  HOPEI_CHECK(r.out != NULL, "%s: params->out must not be NULL", fn);
  HOPEI_CHECK(r.max_pages_per_seq == 0 || r.page_table != NULL, "%s: params->page_table must not be NULL", fn);
  int64_t table_elems;
  HOPEI_CHECK(hopei_mul_i64(r.batch, r.max_pages_per_seq, &table_elems),
              "%s: the page table (batch %d x %d) is too large", fn, r.batch, r.max_pages_per_seq);
  HOPEI_TRY(check_extent(fn, "params->q", (int64_t)r.batch * r.max_seqlen_q, r.q_row_stride,
                         (int64_t)r.num_q_heads * r.cache.head_dim));
  if (r.backend == HOPE_BACKEND_CPU) {
    HOPEI_TRY(check_decode_host_arrays(fn, &r));
  } else {
    if (((uintptr_t)r.cache.k_pages & 15u) != 0 || ((uintptr_t)r.cache.v_pages & 15u) != 0)
      return hopei_fail(HOPE_ERROR_NOT_SUPPORTED,
                        "%s: the CUDA decode kernel needs 16-byte aligned params->cache.k_pages and v_pages", fn);
  }
  HOPEI_TRY(plan_decode(fn, &r, &plan));
  if (plan.workspace_bytes > 0) {
    if (workspace == NULL || workspace_bytes < plan.workspace_bytes)
      return hopei_fail(HOPE_ERROR_OUT_OF_MEMORY,
                        "%s: the workspace holds %zu bytes (%s), but this call needs %zu bytes for %d splits; size "
                        "it with hope_decode_workspace_size", fn, workspace == NULL ? (size_t)0 : workspace_bytes,
                        workspace == NULL ? "NULL" : "too small", plan.workspace_bytes, plan.num_splits);
    HOPEI_CHECK(((uintptr_t)workspace & 15u) == 0, "%s: the workspace must be 16-byte aligned", fn);
    plan.partial_o = (float *)((char *)workspace + plan.partial_o_offset);
    plan.partial_lse = (float *)((char *)workspace + plan.partial_lse_offset);
  }
  if (r.backend == HOPE_BACKEND_CPU) return hopei_decode_cpu(&r, &plan);
  return hopei_decode_cuda(&r, &plan, stream);
}

/* ---- hope_merge_states ----------------------------------------------------------------------------- */

hope_status_t hope_merge_states(const hope_merge_params_t *params, void *stream) {
  HOPEI_NVTX_SCOPE(HOPEI_RANGE_MERGE_STATES);
  static const char fn[] = "hope_merge_states";
  HOPEI_CHECK_NOT_NULL(fn, params);
  const hope_merge_params_t r = *params;
  HOPEI_TRY(check_backend(fn, r.backend));
  HOPEI_CHECK(hopei_dtype_size(r.dtype) != 0, "%s: params->dtype %d is not a hope_dtype_t", fn, r.dtype);
  HOPEI_CHECK(r.num_tokens >= 0, "%s: params->num_tokens is %lld, must be >= 0", fn, (long long)r.num_tokens);
  HOPEI_CHECK(r.num_heads >= 1, "%s: params->num_heads is %d, must be >= 1", fn, r.num_heads);
  HOPEI_CHECK(r.head_dim >= 1, "%s: params->head_dim is %d, must be >= 1", fn, r.head_dim);
  int64_t elems;
  HOPEI_CHECK(hopei_mul_i64(r.num_tokens, (int64_t)r.num_heads * r.head_dim, &elems),
              "%s: num_tokens * num_heads * head_dim exceeds int64", fn);
  if (r.num_tokens == 0) return HOPE_SUCCESS;
  HOPEI_CHECK(r.o_a != NULL, "%s: params->o_a must not be NULL", fn);
  HOPEI_CHECK(r.o_b != NULL, "%s: params->o_b must not be NULL", fn);
  HOPEI_CHECK(r.lse_a != NULL, "%s: params->lse_a must not be NULL", fn);
  HOPEI_CHECK(r.lse_b != NULL, "%s: params->lse_b must not be NULL", fn);
  HOPEI_CHECK(r.out != NULL, "%s: params->out must not be NULL", fn);
  HOPEI_CHECK(elems <= INT64_MAX / 4, "%s: num_tokens * num_heads * head_dim (%lld) is too large", fn,
              (long long)elems);
  /* In place means the very same array: out may be o_a or o_b, lse_out lse_a or lse_b; no other overlap. */
  const uint64_t ob = (uint64_t)elems * hopei_dtype_size(r.dtype), lb = (uint64_t)r.num_tokens * r.num_heads * 4u;
  HOPEI_TRY(hopei_check_alias(fn, "params->out", r.out, ob, "params->o_a", r.o_a, ob, true));
  HOPEI_TRY(hopei_check_alias(fn, "params->out", r.out, ob, "params->o_b", r.o_b, ob, true));
  HOPEI_TRY(hopei_check_alias(fn, "params->out", r.out, ob, "params->lse_a", r.lse_a, lb, false));
  HOPEI_TRY(hopei_check_alias(fn, "params->out", r.out, ob, "params->lse_b", r.lse_b, lb, false));
  if (r.lse_out != NULL) {
    HOPEI_TRY(hopei_check_alias(fn, "params->lse_out", r.lse_out, lb, "params->lse_a", r.lse_a, lb, true));
    HOPEI_TRY(hopei_check_alias(fn, "params->lse_out", r.lse_out, lb, "params->lse_b", r.lse_b, lb, true));
    HOPEI_TRY(hopei_check_alias(fn, "params->lse_out", r.lse_out, lb, "params->out", r.out, ob, false));
    HOPEI_TRY(hopei_check_alias(fn, "params->lse_out", r.lse_out, lb, "params->o_a", r.o_a, ob, false));
    HOPEI_TRY(hopei_check_alias(fn, "params->lse_out", r.lse_out, lb, "params->o_b", r.o_b, ob, false));
  }
  if (r.backend == HOPE_BACKEND_CPU) return hopei_merge_states_cpu(&r);
  return hopei_merge_states_cuda(&r, stream);
}
