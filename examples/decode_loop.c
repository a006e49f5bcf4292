/* decode_loop.c — a paged-KV decode loop with HoPE positions, checked step by step.
 *
 *  1. Prefill: a small video prompt (text, a 2x4x4 video, text) gets its (t, h, w) positions from
 *     hope_positions_build (diagonal layout, as HoPE uses) and its cos/sin from hope_rope_cos_sin. The prompt's
 *     keys and values go into a paged cache (pages in shuffled order) with hope_kv_append, which rotates the
 *     keys; the prompt's attention runs through hope_attention_forward on the CPU backend. As a first check,
 *     hope_decode_forward with the prompt's last 8 tokens as queries must reproduce those rows.
 *  2. Decode: 32 steps (--steps N). Generated token k takes position next_position + k on all three rows
 *     (hope_positions_generated); its K/V are appended, then hope_decode_forward attends over the pages.
 *     Every step is checked against a plain computation: hope_attention_forward (CPU) over the full,
 *     contiguous, unrotated K/V with every token's cos/sin. On a machine with a GPU the same steps also run
 *     on the CUDA backend (device cache, device decode) and are compared with the CPU backend.
 *
 * One line per step; the exit code is non-zero on any failure or mismatch.
 * Usage: decode_loop [--steps N] [--cpu-only] [--help]; an unknown argument is an error (exit code 2). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hope_attn.h"

/* HOPE_EXAMPLE_WITH_CUDA (examples/CMakeLists.txt): 1 when the library has its CUDA backend. Without it the loop
 * runs on the CPU backend only (hope_cuda_device_count reports 0) and needs no CUDA header. */
#ifndef HOPE_EXAMPLE_WITH_CUDA
#define HOPE_EXAMPLE_WITH_CUDA 1
#endif
#if HOPE_EXAMPLE_WITH_CUDA
#include <cuda_runtime_api.h>
#endif

enum { kHq = 8, kHk = 2, kD = 64, kHalf = kD / 2, kPageSize = 16, kMaxSteps = 200, kMaxTokens = 256, kPrefillQ = 8 };
#define kNumPages (kMaxTokens / kPageSize + 4)
static const double kTol = 1e-2;     /* relative error, bfloat16 (SPEC §6) */
static const double kLseTol = 2e-2;

#define CHECK_HOPE(expr)                                                                                   \
  do {                                                                                                   \
    hope_status_t s_ = (expr);                                                                           \
    if (s_ != HOPE_SUCCESS) {                                                                            \
      fprintf(stderr, "%s:%d: %s failed: %s: %s\n", __FILE__, __LINE__, #expr, hope_status_string(s_),     \
              hope_last_error());                                                                        \
      exit(1);                                                                                           \
    }                                                                                                    \
  } while (0)
#if HOPE_EXAMPLE_WITH_CUDA
#define CHECK_CUDA(expr)                                                                                   \
  do {                                                                                                   \
    cudaError_t e_ = (expr);                                                                             \
    if (e_ != cudaSuccess) {                                                                             \
      fprintf(stderr, "%s:%d: %s failed: %s\n", __FILE__, __LINE__, #expr, cudaGetErrorString(e_));         \
      exit(1);                                                                                           \
    }                                                                                                    \
  } while (0)
/* Replaces *p (device memory, may be NULL) by an allocation of `bytes`. */
static void device_realloc(void **p, size_t bytes) {
  if (*p != NULL) CHECK_CUDA(cudaFree(*p));
  CHECK_CUDA(cudaMalloc(p, bytes));
}
#else
/* Built without CUDA: no CUDA-backend call is ever made (hope_cuda_device_count reports 0). */
#define device_realloc(p, bytes) (fprintf(stderr, "built without CUDA: no device memory\n"), exit(1))
#endif

/* ---- bfloat16 on the host, and a small deterministic N(0,1) generator --------------------------------- */
static uint16_t to_bf16(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1u);
  return (uint16_t)(u >> 16);
}
static float from_bf16(uint16_t b) {
  uint32_t u = (uint32_t)b << 16;
  float f;
  memcpy(&f, &u, 4);
  return f;
}
static uint64_t g_rng = 0x2545F4914F6CDD1DULL;
static double uniform01(void) {
  g_rng ^= g_rng << 13;
  g_rng ^= g_rng >> 7;
  g_rng ^= g_rng << 17;
  return ((double)(g_rng >> 11) + 0.5) * (1.0 / 9007199254740992.0);
}
static float normal01(void) {
  return (float)(sqrt(-2.0 * log(uniform01())) * cos(6.283185307179586 * uniform01()));
}
static void fill_bf16(uint16_t *x, size_t n) {
  for (size_t i = 0; i < n; ++i) x[i] = to_bf16(normal01());
}

/* ||a - b|| / ||b|| over n bfloat16 values, and max |a - b| of two float arrays. */
static double rel_err_bf16(const uint16_t *a, const uint16_t *b, size_t n) {
  double num = 0.0, den = 0.0;
  for (size_t i = 0; i < n; ++i) {
    const double x = from_bf16(a[i]), y = from_bf16(b[i]);
    if (!isfinite(x)) return INFINITY;
    num += (x - y) * (x - y);
    den += y * y;
  }
  return den > 0.0 ? sqrt(num / den) : sqrt(num);
}
static double max_abs_diff(const float *a, const float *b, size_t n) {
  double m = 0.0;
  for (size_t i = 0; i < n; ++i) {
    if (!isfinite(a[i]) || !isfinite(b[i])) return INFINITY;
    const double d = fabs((double)a[i] - b[i]);
    if (d > m) m = d;
  }
  return m;
}

/* ---- the state of the loop ----------------------------------------------------------------------------- */
static uint16_t g_k[kMaxTokens * kHk * kD], g_v[kMaxTokens * kHk * kD]; /* contiguous, unrotated */
static float g_cos[kMaxTokens * kHalf], g_sin[kMaxTokens * kHalf];     /* every token's cos/sin */
static uint16_t g_kp[kNumPages * kPageSize * kHk * kD], g_vp[kNumPages * kPageSize * kHk * kD];
static int32_t g_table[kNumPages];                                      /* one sequence */

static hope_paged_kv_t host_cache(void) {
  hope_paged_kv_t c;
  memset(&c, 0, sizeof(c));
  c.dtype = HOPE_DTYPE_BFLOAT16;
  c.num_pages = kNumPages;
  c.page_size = kPageSize;
  c.num_kv_heads = kHk;
  c.head_dim = kD;
  c.k_pages = g_kp;
  c.v_pages = g_vp;
  return c;
}

/* Appends tokens [first, first + n) of g_k/g_v with their cos/sin into `cache` (CPU or CUDA). */
static void append(int backend, hope_paged_kv_t cache, int first, int n, const int64_t *slots, const void *k,
                   const void *v, const float *cs, const float *sn, void *stream) {
  hope_kv_append_params_t p;
  memset(&p, 0, sizeof(p));
  p.backend = backend;
  p.cache = cache;
  p.num_tokens = n;
  p.k = k;
  p.v = v;
  p.slot_mapping = slots;
  p.cos_k = cs;
  p.sin_k = sn;
  (void)first;
  CHECK_HOPE(hope_kv_append(&p, stream));
}

/* Plain attention (CPU) of nq queries over the first n tokens' contiguous K/V. */
static void plain_attention(int n, int nq, const uint16_t *q, const float *cos_q, const float *sin_q, uint16_t *out,
                            float *lse) {
  int32_t cu_q[2] = {0, nq}, cu_k[2] = {0, n};
  hope_attention_params_t a;
  memset(&a, 0, sizeof(a));
  a.backend = HOPE_BACKEND_CPU;
  a.dtype = HOPE_DTYPE_BFLOAT16;
  a.batch = 1;
  a.num_q_heads = kHq;
  a.num_kv_heads = kHk;
  a.head_dim = kD;
  a.cu_seqlens_q = cu_q;
  a.cu_seqlens_k = cu_k;
  a.max_seqlen_q = nq;
  a.max_seqlen_k = n;
  a.q = q;
  a.k = g_k;
  a.v = g_v;
  a.out = out;
  a.lse = lse;
  a.cos_q = cos_q;
  a.sin_q = sin_q;
  a.cos_k = g_cos;
  a.sin_k = g_sin;
  a.causal = 1;
  CHECK_HOPE(hope_attention_forward(&a, NULL));
}

/* Decode of nq queries over the first n tokens of the one paged sequence. */
static void decode(int backend, hope_paged_kv_t cache, int n, int nq, const void *q, const float *cos_q,
                   const float *sin_q, void *out, float *lse, const int32_t *cu_q, const int32_t *seq_len,
                   const int32_t *table, void **workspace, size_t *workspace_cap, void *stream, size_t *used) {
  hope_decode_params_t p;
  memset(&p, 0, sizeof(p));
  p.backend = backend;
  p.cache = cache;
  p.batch = 1;
  p.num_q_heads = kHq;
  p.cu_seqlens_q = cu_q;
  p.max_seqlen_q = nq;
  p.seq_lens = seq_len;
  p.max_seqlen_k = n;
  p.page_table = table;
  p.max_pages_per_seq = kNumPages;
  p.q = q;
  p.out = out;
  p.lse = lse;
  p.cos_q = cos_q;
  p.sin_q = sin_q;
  p.causal = 1;
  size_t need = 0;
  CHECK_HOPE(hope_decode_workspace_size(&p, &need));
  if (need > *workspace_cap) { /* grows rarely: sized by the planner for this context length */
    if (backend == HOPE_BACKEND_CUDA) {
      device_realloc(workspace, need);
    } else {
      free(*workspace);
      *workspace = malloc(need);
      if (*workspace == NULL) {
        fprintf(stderr, "out of host memory\n");
        exit(1);
      }
    }
    *workspace_cap = need;
  }
  *used = need;
  CHECK_HOPE(hope_decode_forward(&p, *workspace, *workspace_cap, stream));
}

/* ---- the GPU mirror: the same cache and steps on the CUDA backend, compared with the CPU ----------------- */

typedef struct {
  hope_paged_kv_t cache; /* device pages, same table and slots as the host cache */
  void *k, *v, *q, *out, *ws;
  float *cos, *sin, *lse;
  int64_t *slots;
  int32_t *meta; /* [0..1]: cu_seqlens_q, [2]: seq_len, [3..]: page table */
  size_t ws_cap;
} gpu_mirror_t;

#if HOPE_EXAMPLE_WITH_CUDA
static void gpu_setup(gpu_mirror_t *g, hope_paged_kv_t host, const int64_t *slots, size_t slots_bytes) {
  memset(g, 0, sizeof(*g));
  g->cache = host;
  CHECK_CUDA(cudaMalloc(&g->cache.k_pages, sizeof(g_kp)));
  CHECK_CUDA(cudaMalloc(&g->cache.v_pages, sizeof(g_vp)));
  CHECK_CUDA(cudaMemset(g->cache.k_pages, 0xff, sizeof(g_kp)));
  CHECK_CUDA(cudaMemset(g->cache.v_pages, 0xff, sizeof(g_vp)));
  CHECK_CUDA(cudaMalloc(&g->k, sizeof(g_k)));
  CHECK_CUDA(cudaMalloc(&g->v, sizeof(g_v)));
  CHECK_CUDA(cudaMalloc((void **)&g->cos, sizeof(g_cos)));
  CHECK_CUDA(cudaMalloc((void **)&g->sin, sizeof(g_sin)));
  CHECK_CUDA(cudaMalloc((void **)&g->slots, slots_bytes));
  CHECK_CUDA(cudaMalloc(&g->q, (size_t)kPrefillQ * kHq * kD * 2));
  CHECK_CUDA(cudaMalloc(&g->out, (size_t)kPrefillQ * kHq * kD * 2));
  CHECK_CUDA(cudaMalloc((void **)&g->lse, (size_t)kPrefillQ * kHq * 4));
  CHECK_CUDA(cudaMalloc((void **)&g->meta, (3 + kNumPages) * sizeof(int32_t)));
  CHECK_CUDA(cudaMemcpy(g->slots, slots, slots_bytes, cudaMemcpyHostToDevice));
  CHECK_CUDA(cudaMemcpy(g->meta + 3, g_table, sizeof(g_table), cudaMemcpyHostToDevice));
}

/* The prompt's P tokens into the device cache. */
static void gpu_prefill(gpu_mirror_t *g, int P) {
  CHECK_CUDA(cudaMemcpy(g->k, g_k, (size_t)P * kHk * kD * 2, cudaMemcpyHostToDevice));
  CHECK_CUDA(cudaMemcpy(g->v, g_v, (size_t)P * kHk * kD * 2, cudaMemcpyHostToDevice));
  CHECK_CUDA(cudaMemcpy(g->cos, g_cos, (size_t)P * kHalf * 4, cudaMemcpyHostToDevice));
  CHECK_CUDA(cudaMemcpy(g->sin, g_sin, (size_t)P * kHalf * 4, cudaMemcpyHostToDevice));
  append(HOPE_BACKEND_CUDA, g->cache, 0, P, g->slots, g->k, g->v, g->cos, g->sin, NULL);
  CHECK_CUDA(cudaDeviceSynchronize());
}

/* Step for token n: append it on the device, decode q over the n + 1 keys, and bring out / lse back. */
static void gpu_step(gpu_mirror_t *g, int n, const uint16_t *q, const int32_t cu_q[2], int32_t seq_len,
                     uint16_t *out, float *lse, size_t *used) {
  const size_t row = (size_t)kHk * kD * 2;
  CHECK_CUDA(cudaMemcpy((char *)g->k + n * row, g_k + (size_t)n * kHk * kD, row, cudaMemcpyHostToDevice));
  CHECK_CUDA(cudaMemcpy((char *)g->v + n * row, g_v + (size_t)n * kHk * kD, row, cudaMemcpyHostToDevice));
  CHECK_CUDA(cudaMemcpy(g->cos + (size_t)n * kHalf, g_cos + (size_t)n * kHalf, kHalf * 4, cudaMemcpyHostToDevice));
  CHECK_CUDA(cudaMemcpy(g->sin + (size_t)n * kHalf, g_sin + (size_t)n * kHalf, kHalf * 4, cudaMemcpyHostToDevice));
  CHECK_CUDA(cudaMemcpy(g->q, q, (size_t)kHq * kD * 2, cudaMemcpyHostToDevice));
  CHECK_CUDA(cudaMemcpy(g->meta, cu_q, 2 * sizeof(int32_t), cudaMemcpyHostToDevice));
  CHECK_CUDA(cudaMemcpy(g->meta + 2, &seq_len, sizeof(seq_len), cudaMemcpyHostToDevice));
  append(HOPE_BACKEND_CUDA, g->cache, n, 1, g->slots + n, (char *)g->k + n * row, (char *)g->v + n * row,
         g->cos + (size_t)n * kHalf, g->sin + (size_t)n * kHalf, NULL);
  decode(HOPE_BACKEND_CUDA, g->cache, n + 1, 1, g->q, g->cos + (size_t)n * kHalf, g->sin + (size_t)n * kHalf, g->out,
         g->lse, g->meta, g->meta + 2, g->meta + 3, &g->ws, &g->ws_cap, NULL, used);
  CHECK_CUDA(cudaMemcpy(out, g->out, (size_t)kHq * kD * 2, cudaMemcpyDeviceToHost));
  CHECK_CUDA(cudaMemcpy(lse, g->lse, (size_t)kHq * 4, cudaMemcpyDeviceToHost));
}

static void gpu_free(gpu_mirror_t *g) {
  void *ptrs[] = {g->cache.k_pages, g->cache.v_pages, g->k, g->v, g->cos, g->sin, g->slots, g->q, g->out, g->lse,
                  g->meta, g->ws};
  for (size_t i = 0; i < sizeof(ptrs) / sizeof(ptrs[0]); ++i)
    if (ptrs[i] != NULL) CHECK_CUDA(cudaFree(ptrs[i]));
}
#else
/* Built without CUDA: hope_cuda_device_count reports 0, so main never mirrors the loop on a GPU. */
#define gpu_unavailable() (fprintf(stderr, "built without CUDA: no GPU mirror\n"), exit(1))
#define gpu_setup(g, host, slots, slots_bytes) gpu_unavailable()
#define gpu_prefill(g, P) gpu_unavailable()
#define gpu_step(g, n, q, cu_q, seq_len, out, lse, used) gpu_unavailable()
#define gpu_free(g) gpu_unavailable()
#endif

/* ---- command line -------------------------------------------------------------------------------------- */
typedef struct {
  int steps;    /* decode steps after the prefill */
  int cpu_only; /* skip the CUDA backend even when a GPU is present */
} options_t;

static void usage(FILE *f) {
  fprintf(f,
          "usage: decode_loop [--steps N] [--cpu-only] [--help]\n"
          "  A paged-KV decode loop with HoPE positions (CPU backend, and the CUDA backend when a GPU is present),\n"
          "  each step checked against plain attention over the whole sequence.\n"
          "  --steps N    decode steps after the 44-token prompt, 1..%d (default 32)\n"
          "  --cpu-only   run the CPU backend only, even with a GPU\n"
          "  --help, -h   this text\n",
          kMaxSteps);
}

static void bad_arg(const char *arg, const char *why) {
  fprintf(stderr, "decode_loop: %s '%s' (try --help)\n", why, arg);
  exit(2);
}

static options_t parse_args(int argc, char **argv) {
  options_t o = {32, 0};
  for (int i = 1; i < argc; ++i) {
    const char *a = argv[i];
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      usage(stdout);
      exit(0);
    } else if (strcmp(a, "--cpu-only") == 0) {
      o.cpu_only = 1;
    } else if (strcmp(a, "--steps") == 0) {
      if (i + 1 >= argc) bad_arg(a, "missing the number after");
      char *end = NULL;
      const long v = strtol(argv[++i], &end, 10);
      if (end == argv[i] || *end != '\0' || v < 1 || v > kMaxSteps) bad_arg(argv[i], "--steps: expected 1..200, got");
      o.steps = (int)v;
    } else {
      bad_arg(a, "unknown argument");
    }
  }
  return o;
}

int main(int argc, char **argv) {
  const options_t opt = parse_args(argc, argv);
  const int steps = opt.steps;
  int failures = 0;

  /* ---- positions and cos/sin of the prompt ---- */
  hope_segment_t segs[3];
  memset(segs, 0, sizeof(segs));
  segs[0].kind = HOPE_SEGMENT_TEXT;
  segs[0].length = 5;
  segs[1].kind = HOPE_SEGMENT_VIDEO;
  segs[1].grid_t = 2;
  segs[1].grid_h = 4;
  segs[1].grid_w = 4;
  segs[1].temporal_scale = 0.75f;
  segs[2].kind = HOPE_SEGMENT_TEXT;
  segs[2].length = 7;
  int64_t prompt = 0;
  CHECK_HOPE(hope_positions_count(segs, 3, &prompt));
  if (prompt + steps > kMaxTokens || prompt < kPrefillQ) {
    fprintf(stderr, "prompt of %lld tokens does not fit\n", (long long)prompt);
    return 1;
  }
  float positions[3 * kMaxTokens], next_position = 0.f;
  CHECK_HOPE(hope_positions_build(segs, 3, HOPE_LAYOUT_DIAGONAL, 1.0f, 0.0f, positions, prompt, &next_position));
  hope_rope_config_t rope;
  memset(&rope, 0, sizeof(rope));
  rope.kind = HOPE_ROPE_HOPE;
  rope.head_dim = kD;
  rope.sections[0] = 8;  /* st: zero frequency in HoPE */
  rope.sections[1] = 12; /* sh */
  rope.sections[2] = 12; /* sw */
  rope.theta = 1e6;
  CHECK_HOPE(hope_rope_cos_sin(&rope, positions, prompt, g_cos, g_sin));

  /* ---- the paged cache: one sequence, pages in shuffled order ---- */
  for (int i = 0; i < kNumPages; ++i) g_table[i] = i;
  for (int i = kNumPages - 1; i > 0; --i) {
    const int j = (int)(uniform01() * (i + 1));
    const int32_t t = g_table[i];
    g_table[i] = g_table[j];
    g_table[j] = t;
  }
  int64_t slots[kMaxTokens];
  for (int n = 0; n < kMaxTokens; ++n) slots[n] = (int64_t)g_table[n / kPageSize] * kPageSize + n % kPageSize;
  memset(g_kp, 0xff, sizeof(g_kp)); /* NaN poison: a read of an unwritten slot would show */
  memset(g_vp, 0xff, sizeof(g_vp));
  const hope_paged_kv_t hc = host_cache();

  /* GPU, if any: a device copy of the cache and of the per-step inputs. */
  int32_t devices = 0;
  CHECK_HOPE(hope_cuda_device_count(&devices));
  if (opt.cpu_only) devices = 0;
  gpu_mirror_t gpu;
  memset(&gpu, 0, sizeof(gpu));
  if (devices > 0) {
    gpu_setup(&gpu, hc, slots, sizeof(slots));
    printf("GPU present: the decode steps also run on the CUDA backend\n");
  } else {
    printf("no GPU: CPU backend only\n");
  }

  /* ---- prefill ---- */
  const int P = (int)prompt;
  static uint16_t q_prompt[kMaxTokens * kHq * kD], out_prompt[kMaxTokens * kHq * kD];
  static float lse_prompt[kHq * kMaxTokens];
  fill_bf16(q_prompt, (size_t)P * kHq * kD);
  fill_bf16(g_k, (size_t)P * kHk * kD);
  fill_bf16(g_v, (size_t)P * kHk * kD);
  append(HOPE_BACKEND_CPU, hc, 0, P, slots, g_k, g_v, g_cos, g_sin, NULL);
  plain_attention(P, P, q_prompt, g_cos, g_sin, out_prompt, lse_prompt);
  {
    /* decode of the last kPrefillQ prompt tokens over the pages must match those rows of the prefill */
    const int q0 = P - kPrefillQ;
    int32_t cu_q[2] = {0, kPrefillQ}, seq_len = P;
    uint16_t out[kPrefillQ * kHq * kD], want[kPrefillQ * kHq * kD];
    float lse[kHq * kPrefillQ], want_lse[kHq * kPrefillQ];
    void *ws = NULL;
    size_t cap = 0, used = 0;
    decode(HOPE_BACKEND_CPU, hc, P, kPrefillQ, q_prompt + (size_t)q0 * kHq * kD, g_cos + (size_t)q0 * kHalf,
           g_sin + (size_t)q0 * kHalf, out, lse, cu_q, &seq_len, g_table, &ws, &cap, NULL, &used);
    memcpy(want, out_prompt + (size_t)q0 * kHq * kD, sizeof(want));
    for (int h = 0; h < kHq; ++h)
      for (int i = 0; i < kPrefillQ; ++i) want_lse[h * kPrefillQ + i] = lse_prompt[h * P + q0 + i];
    const double rel = rel_err_bf16(out, want, sizeof(out) / 2), dl = max_abs_diff(lse, want_lse, kHq * kPrefillQ);
    const int ok = rel <= kTol && dl <= kLseTol;
    failures += !ok;
    printf("prefill: %d prompt tokens (text 5, video 2x4x4 at scale 0.75, text 7), next_position %.2f; decode of "
           "the last %d tokens vs prefill rows: rel %.2e, lse %.2e %s\n",
           P, next_position, kPrefillQ, rel, dl, ok ? "ok" : "MISMATCH");
    free(ws);
  }
  if (devices > 0) gpu_prefill(&gpu, P);

  /* ---- decode steps ---- */
  void *ws = NULL;
  size_t ws_cap = 0;
  for (int step = 0; step < steps; ++step) {
    const int n = P + step; /* index of the new token; the sequence then holds n + 1 keys */
    float pos[3];
    CHECK_HOPE(hope_positions_generated(next_position, step, 1, pos));
    CHECK_HOPE(hope_rope_cos_sin(&rope, pos, 1, g_cos + (size_t)n * kHalf, g_sin + (size_t)n * kHalf));
    uint16_t q[kHq * kD], out[kHq * kD], ref[kHq * kD], gout[kHq * kD];
    float lse[kHq], ref_lse[kHq], glse[kHq];
    fill_bf16(q, kHq * kD);
    fill_bf16(g_k + (size_t)n * kHk * kD, kHk * kD);
    fill_bf16(g_v + (size_t)n * kHk * kD, kHk * kD);
    append(HOPE_BACKEND_CPU, hc, n, 1, slots + n, g_k + (size_t)n * kHk * kD, g_v + (size_t)n * kHk * kD,
           g_cos + (size_t)n * kHalf, g_sin + (size_t)n * kHalf, NULL);
    int32_t cu_q[2] = {0, 1}, seq_len = n + 1;
    size_t used = 0;
    decode(HOPE_BACKEND_CPU, hc, n + 1, 1, q, g_cos + (size_t)n * kHalf, g_sin + (size_t)n * kHalf, out, lse, cu_q,
           &seq_len, g_table, &ws, &ws_cap, NULL, &used);
    plain_attention(n + 1, 1, q, g_cos + (size_t)n * kHalf, g_sin + (size_t)n * kHalf, ref, ref_lse);
    const double rel = rel_err_bf16(out, ref, kHq * kD), dl = max_abs_diff(lse, ref_lse, kHq);
    int ok = rel <= kTol && dl <= kLseTol;
    char gpu_note[96] = "";
    if (devices > 0) {
      size_t gused = 0;
      gpu_step(&gpu, n, q, cu_q, seq_len, gout, glse, &gused);
      const double grel = rel_err_bf16(gout, out, kHq * kD), gdl = max_abs_diff(glse, lse, kHq);
      const int gok = grel <= 2 * kTol && gdl <= 2 * kLseTol;
      ok = ok && gok;
      snprintf(gpu_note, sizeof(gpu_note), "  gpu vs cpu: rel %.2e lse %.2e (workspace %zu B)", grel, gdl, gused);
    }
    failures += !ok;
    printf("step %2d  position %8.2f  keys %3d  cpu vs plain: rel %.2e lse %.2e (workspace %zu B)%s  %s\n", step,
           pos[0], n + 1, rel, dl, used, gpu_note, ok ? "ok" : "MISMATCH");
  }
  free(ws);
  if (devices > 0) gpu_free(&gpu);
  printf("%s: %d mismatch(es)\n", failures ? "FAILED" : "passed", failures);
  return failures ? 1 : 0;
}
