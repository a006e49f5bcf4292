/*
 * hope_attn_demo — one multimodal prefill through hope_attn, checked.
 *
 * Builds the (t, h, w) positions of a mixed text + video + image prompt, chooses the video's temporal scale,
 * fills a cos/sin cache (on the GPU when there is one), runs causal attention with the rotary embedding fused
 * in (GPU if present, else the CPU backend), and checks a sample of rows against a float64 computation done
 * here from scratch (positions -> angles -> rotation -> softmax), and, with a GPU, against the CPU backend.
 * Exit status: 0 PASS, 1 FAIL or a library error, 2 bad arguments.
 *
 *   hope_attn_demo                                  # system text 24 + video 8x18x32 + question text 40
 *   hope_attn_demo --text 32 --video 16x18x32 --image 18x32 --text 64 --scale fit:8192 --heads 28:4
 */
#define _POSIX_C_SOURCE 200809L /* clock_gettime, strtok_r */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "hope_attn.h"

/* HOPE_EXAMPLE_WITH_CUDA (examples/CMakeLists.txt): 1 when the library has its CUDA backend. Without it the demo
 * runs on the CPU backend only (hope_cuda_device_count reports 0) and needs no CUDA header. */
#ifndef HOPE_EXAMPLE_WITH_CUDA
#define HOPE_EXAMPLE_WITH_CUDA 1
#endif
#if HOPE_EXAMPLE_WITH_CUDA
#include <cuda_runtime_api.h>
#endif

/* ---------------------------------------------------------------------------------------------------------- */
/* Errors                                                                                                      */
/* ---------------------------------------------------------------------------------------------------------- */

#define HOPE_DEMO_CHECK(call)                                                                              \
  do {                                                                                                     \
    hope_status_t s_ = (call);                                                                             \
    if (s_ != HOPE_SUCCESS) {                                                                              \
      fprintf(stderr, "hope_attn_demo: %s failed: %s: %s\n", #call, hope_status_string(s_),                \
              hope_last_error());                                                                          \
      exit(1);                                                                                             \
    }                                                                                                      \
  } while (0)

static void *xmalloc(size_t bytes) {
  void *p = malloc(bytes ? bytes : 1);
  if (p == NULL) {
    fprintf(stderr, "hope_attn_demo: out of host memory (%zu bytes)\n", bytes);
    exit(1);
  }
  return p;
}

/* ---------------------------------------------------------------------------------------------------------- */
/* Arguments                                                                                                   */
/* ---------------------------------------------------------------------------------------------------------- */

#define MAX_SEGMENTS 256

typedef struct {
  hope_segment_t segments[MAX_SEGMENTS];
  int num_segments;
  int rope_kind;
  int layout; /* -1: the rope kind's natural layout */
  int scale_policy;
  double scale_value; /* fit: budget; fixed: scale */
  uint64_t scale_seed;
  int num_q_heads, num_kv_heads; /* 0: by backend */
  int head_dim;
  int sections[3];
  int have_sections;
  double theta;
  int dtype;
  int backend; /* -1 auto */
  int check_rows;
  uint64_t seed;
  float start;
} options_t;

static const char *const kRopeNames[] = {"vanilla", "mrope", "mrope_interleaved", "videorope", "hope"};
static const char *const kLayoutNames[] = {"sequential", "mrope", "diagonal"};
static const char *const kDtypeNames[] = {"fp16", "bf16", "fp32"};

static void usage(FILE *f) {
  fprintf(f,
          "usage: hope_attn_demo [segments...] [options]\n"
          "\n"
          "One causal multimodal prefill through hope_attn, checked against float64 (and the CPU backend when a\n"
          "GPU is used). Without segments: --text 24 --video 8x18x32 --text 40 (a system prompt, 8 frames of\n"
          "18x32 merged patches, a question; about 4.7k tokens).\n"
          "\n"
          "segments (in prompt order, repeatable):\n"
          "  --text N               N text tokens\n"
          "  --video TxHxW          a video: T frames of HxW LLM tokens (after the spatial merge)\n"
          "  --image HxW            an image of HxW LLM tokens\n"
          "options:\n"
          "  --rope KIND            vanilla | mrope | mrope_interleaved | videorope | hope (default hope)\n"
          "  --layout L             sequential | mrope | diagonal (default: diagonal for hope/videorope,\n"
          "                         mrope for the mrope kinds, sequential for vanilla)\n"
          "  --scale POLICY         fit:BUDGET | fixed:S | random:SEED  temporal scale of the videos\n"
          "                         (default fit:32768: the largest of {0.5,0.75,1,1.25,1.5} that keeps\n"
          "                         next_position <= BUDGET)\n"
          "  --heads Q:KV           query and key/value heads (default 28:4 on a GPU, 4:1 on the CPU)\n"
          "  --head-dim D           head dimension (default 128)\n"
          "  --sections T,H,W       rotary pairs per component (default: Qwen2-VL's 1/4, 3/8, 3/8)\n"
          "  --theta X              RoPE base (default 1e6)\n"
          "  --dtype T              bf16 | fp16 | fp32 (default bf16)\n"
          "  --backend B            auto | cpu | cuda (default auto: cuda when a GPU is present)\n"
          "  --check-rows N         query rows checked against float64 (default 64; 0 skips the check)\n"
          "  --start P              position of the first token (default 0)\n"
          "  --seed N               seed of the random q, k, v (default 1)\n"
          "  --help                 this text\n");
}

static void bad_arg(const char *what, const char *value, const char *expect) {
  fprintf(stderr, "hope_attn_demo: bad %s '%s': %s\n", what, value ? value : "(missing)", expect);
  fprintf(stderr, "run 'hope_attn_demo --help' for the usage\n");
  exit(2);
}

static long parse_long(const char *s, const char *what, long lo, long hi, const char *expect) {
  char *end = NULL;
  errno = 0;
  long v = (s != NULL) ? strtol(s, &end, 10) : 0;
  if (s == NULL || *s == '\0' || end == s || *end != '\0' || errno != 0 || v < lo || v > hi)
    bad_arg(what, s, expect);
  return v;
}

static double parse_double(const char *s, const char *what, const char *expect) {
  char *end = NULL;
  errno = 0;
  double v = (s != NULL) ? strtod(s, &end) : 0.0;
  if (s == NULL || *s == '\0' || end == s || *end != '\0' || errno != 0 || !isfinite(v)) bad_arg(what, s, expect);
  return v;
}

/* Parses "AxBxC" (n = 3) or "AxB" (n = 2) of positive integers. */
static void parse_grid(const char *s, int n, int32_t *out, const char *what, const char *expect) {
  if (s == NULL) bad_arg(what, s, expect);
  const char *p = s;
  for (int i = 0; i < n; ++i) {
    if (!isdigit((unsigned char)*p)) bad_arg(what, s, expect);
    char *end = NULL;
    errno = 0;
    long v = strtol(p, &end, 10);
    if (errno != 0 || v < 1 || v > 100000) bad_arg(what, s, expect);
    out[i] = (int32_t)v;
    p = end;
    if (i + 1 < n) {
      if (*p != 'x' && *p != 'X') bad_arg(what, s, expect);
      ++p;
    }
  }
  if (*p != '\0') bad_arg(what, s, expect);
}

static int lookup(const char *s, const char *const *names, int count, const char *what, const char *expect) {
  for (int i = 0; s != NULL && i < count; ++i)
    if (strcmp(s, names[i]) == 0) return i;
  bad_arg(what, s, expect);
  return -1;
}

static void add_segment(options_t *o, hope_segment_t seg) {
  if (o->num_segments >= MAX_SEGMENTS) {
    fprintf(stderr, "hope_attn_demo: at most %d segments\n", MAX_SEGMENTS);
    exit(2);
  }
  o->segments[o->num_segments++] = seg;
}

static void parse_args(int argc, char **argv, options_t *o) {
  memset(o, 0, sizeof *o);
  o->rope_kind = HOPE_ROPE_HOPE;
  o->layout = -1;
  o->scale_policy = HOPE_SCALE_FIT;
  o->scale_value = 32768.0;
  o->head_dim = 128;
  o->theta = 1e6;
  o->dtype = HOPE_DTYPE_BFLOAT16;
  o->backend = -1;
  o->check_rows = 64;
  o->seed = 1;
  for (int i = 1; i < argc; ++i) {
    const char *a = argv[i];
    const char *v = (i + 1 < argc) ? argv[i + 1] : NULL;
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      usage(stdout);
      exit(0);
    } else if (strcmp(a, "--text") == 0) {
      hope_segment_t s = {HOPE_SEGMENT_TEXT, 0, 0, 0, 0, 0.0f};
      s.length = (int32_t)parse_long(v, "--text", 0, 100000000, "expected a token count >= 0");
      add_segment(o, s);
      ++i;
    } else if (strcmp(a, "--video") == 0) {
      int32_t g[3];
      parse_grid(v, 3, g, "--video", "expected TxHxW, e.g. 16x18x32 (each >= 1)");
      hope_segment_t s = {HOPE_SEGMENT_VIDEO, 0, g[0], g[1], g[2], 0.0f};
      add_segment(o, s);
      ++i;
    } else if (strcmp(a, "--image") == 0) {
      int32_t g[2];
      parse_grid(v, 2, g, "--image", "expected HxW, e.g. 18x32 (each >= 1)");
      hope_segment_t s = {HOPE_SEGMENT_IMAGE, 0, 1, g[0], g[1], 0.0f};
      add_segment(o, s);
      ++i;
    } else if (strcmp(a, "--rope") == 0) {
      o->rope_kind = lookup(v, kRopeNames, 5, "--rope", "expected vanilla, mrope, mrope_interleaved, videorope or hope");
      ++i;
    } else if (strcmp(a, "--layout") == 0) {
      o->layout = lookup(v, kLayoutNames, 3, "--layout", "expected sequential, mrope or diagonal");
      ++i;
    } else if (strcmp(a, "--scale") == 0) {
      const char *expect = "expected fit:BUDGET, fixed:SCALE or random:SEED";
      const char *colon = v ? strchr(v, ':') : NULL;
      if (colon == NULL) bad_arg("--scale", v, expect);
      size_t n = (size_t)(colon - v);
      if (n == 3 && strncmp(v, "fit", 3) == 0) {
        o->scale_policy = HOPE_SCALE_FIT;
        o->scale_value = parse_double(colon + 1, "--scale fit budget", "expected a number");
      } else if (n == 5 && strncmp(v, "fixed", 5) == 0) {
        o->scale_policy = HOPE_SCALE_FIXED;
        o->scale_value = parse_double(colon + 1, "--scale fixed scale", "expected a number > 0");
        if (!(o->scale_value > 0.0)) bad_arg("--scale fixed scale", colon + 1, "expected a number > 0");
      } else if (n == 6 && strncmp(v, "random", 6) == 0) {
        char *end = NULL;
        errno = 0;
        o->scale_seed = strtoull(colon + 1, &end, 10);
        if (colon[1] == '\0' || *end != '\0' || errno != 0 || colon[1] == '-')
          bad_arg("--scale random seed", colon + 1, "expected an unsigned integer");
        o->scale_policy = HOPE_SCALE_RANDOM;
      } else {
        bad_arg("--scale", v, expect);
      }
      ++i;
    } else if (strcmp(a, "--heads") == 0) {
      const char *expect = "expected Q:KV with Q a multiple of KV, e.g. 28:4";
      const char *colon = v ? strchr(v, ':') : NULL;
      if (colon == NULL) bad_arg("--heads", v, expect);
      char q[32];
      size_t n = (size_t)(colon - v);
      if (n == 0 || n >= sizeof q) bad_arg("--heads", v, expect);
      memcpy(q, v, n);
      q[n] = '\0';
      o->num_q_heads = (int)parse_long(q, "--heads", 1, 1024, expect);
      o->num_kv_heads = (int)parse_long(colon + 1, "--heads", 1, 1024, expect);
      if (o->num_q_heads % o->num_kv_heads != 0) bad_arg("--heads", v, expect);
      ++i;
    } else if (strcmp(a, "--head-dim") == 0) {
      o->head_dim = (int)parse_long(v, "--head-dim", 2, 1024, "expected an even number in 2..1024");
      if (o->head_dim % 2 != 0) bad_arg("--head-dim", v, "expected an even number in 2..1024");
      ++i;
    } else if (strcmp(a, "--sections") == 0) {
      char buf[64];
      const char *expect = "expected T,H,W pair counts, e.g. 16,24,24";
      if (v == NULL || strlen(v) >= sizeof buf) bad_arg("--sections", v, expect);
      strcpy(buf, v);
      char *parts[3];
      char *save = NULL;
      int count = 0;
      for (char *t = strtok_r(buf, ",", &save); t != NULL; t = strtok_r(NULL, ",", &save)) {
        if (count == 3) bad_arg("--sections", v, expect);
        parts[count++] = t;
      }
      if (count != 3) bad_arg("--sections", v, expect);
      for (int k = 0; k < 3; ++k) o->sections[k] = (int)parse_long(parts[k], "--sections", 0, 512, expect);
      o->have_sections = 1;
      ++i;
    } else if (strcmp(a, "--theta") == 0) {
      o->theta = parse_double(v, "--theta", "expected a number > 1");
      if (!(o->theta > 1.0)) bad_arg("--theta", v, "expected a number > 1");
      ++i;
    } else if (strcmp(a, "--dtype") == 0) {
      if (v != NULL && strcmp(v, "bfloat16") == 0) o->dtype = HOPE_DTYPE_BFLOAT16;
      else if (v != NULL && strcmp(v, "float16") == 0) o->dtype = HOPE_DTYPE_FLOAT16;
      else if (v != NULL && strcmp(v, "float32") == 0) o->dtype = HOPE_DTYPE_FLOAT32;
      else o->dtype = lookup(v, kDtypeNames, 3, "--dtype", "expected bf16, fp16 or fp32");
      ++i;
    } else if (strcmp(a, "--backend") == 0) {
      if (v != NULL && strcmp(v, "auto") == 0) o->backend = -1;
      else if (v != NULL && strcmp(v, "cpu") == 0) o->backend = HOPE_BACKEND_CPU;
      else if (v != NULL && strcmp(v, "cuda") == 0) o->backend = HOPE_BACKEND_CUDA;
      else bad_arg("--backend", v, "expected auto, cpu or cuda");
      ++i;
    } else if (strcmp(a, "--check-rows") == 0) {
      o->check_rows = (int)parse_long(v, "--check-rows", 0, 1000000, "expected a row count >= 0");
      ++i;
    } else if (strcmp(a, "--start") == 0) {
      o->start = (float)parse_double(v, "--start", "expected a number");
      ++i;
    } else if (strcmp(a, "--seed") == 0) {
      char *end = NULL;
      errno = 0;
      if (v == NULL || *v == '\0' || *v == '-') bad_arg("--seed", v, "expected an unsigned integer");
      o->seed = strtoull(v, &end, 10);
      if (*end != '\0' || errno != 0) bad_arg("--seed", v, "expected an unsigned integer");
      ++i;
    } else {
      fprintf(stderr, "hope_attn_demo: unknown argument '%s'\n", a);
      usage(stderr);
      exit(2);
    }
  }
  if (o->num_segments == 0) { /* the default prompt: system text, 8 frames of 18x32, a question */
    hope_segment_t sys = {HOPE_SEGMENT_TEXT, 24, 0, 0, 0, 0.0f};
    hope_segment_t vid = {HOPE_SEGMENT_VIDEO, 0, 8, 18, 32, 0.0f};
    hope_segment_t question = {HOPE_SEGMENT_TEXT, 40, 0, 0, 0, 0.0f};
    add_segment(o, sys);
    add_segment(o, vid);
    add_segment(o, question);
  }
  if (o->layout < 0) {
    switch (o->rope_kind) {
      case HOPE_ROPE_VANILLA: o->layout = HOPE_LAYOUT_SEQUENTIAL; break;
      case HOPE_ROPE_MROPE:
      case HOPE_ROPE_MROPE_INTERLEAVED: o->layout = HOPE_LAYOUT_MROPE; break;
      default: o->layout = HOPE_LAYOUT_DIAGONAL; break;
    }
  }
  const int half = o->head_dim / 2;
  if (!o->have_sections) { /* Qwen2-VL's (16, 24, 24) of 64 pairs, generalised */
    o->sections[1] = o->sections[2] = (3 * half) / 8;
    o->sections[0] = half - 2 * o->sections[1];
  } else if (o->rope_kind != HOPE_ROPE_VANILLA && o->sections[0] + o->sections[1] + o->sections[2] != half) {
    char buf[64];
    snprintf(buf, sizeof buf, "%d,%d,%d", o->sections[0], o->sections[1], o->sections[2]);
    char expect[96];
    snprintf(expect, sizeof expect, "the three must add up to head_dim / 2 = %d", half);
    bad_arg("--sections", buf, expect);
  }
}

/* ---------------------------------------------------------------------------------------------------------- */
/* Numbers: random inputs, half-precision conversions, the float64 reference                                  */
/* ---------------------------------------------------------------------------------------------------------- */

static uint64_t splitmix64(uint64_t *state) {
  uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

static double uniform01(uint64_t *state) { return ((double)(splitmix64(state) >> 11) + 0.5) * 0x1.0p-53; }

static float normal(uint64_t *state) { /* Box-Muller */
  const double u = uniform01(state), v = uniform01(state);
  return (float)(sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v));
}

static uint32_t f32_bits(float f) {
  uint32_t x;
  memcpy(&x, &f, sizeof x);
  return x;
}

static float bits_f32(uint32_t x) {
  float f;
  memcpy(&f, &x, sizeof f);
  return f;
}

static uint16_t float_to_bf16(float f) {
  uint32_t x = f32_bits(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40); /* quiet NaN */
  return (uint16_t)((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

static float bf16_to_float(uint16_t b) { return bits_f32((uint32_t)b << 16); }

static uint16_t float_to_half(float f) {
  const uint32_t x = f32_bits(f);
  const uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
  const uint32_t ax = x & 0x7fffffffu;
  if (ax > 0x7f800000u) return sign | 0x7e00u;              /* NaN */
  if (ax >= 0x477ff000u) return sign | 0x7c00u;             /* rounds to infinity (>= 65520) */
  if (ax < 0x38800000u) {                                   /* below 2^-14: a subnormal half */
    return sign | (uint16_t)lrintf(bits_f32(ax) * 16777216.0f); /* exact product, round to nearest even */
  }
  uint32_t e = ax - 0x38000000u; /* rebias the exponent from 127 to 15 */
  uint32_t m = e >> 13, rem = e & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (m & 1u))) ++m;
  return (uint16_t)(sign | m);
}

static float half_to_float(uint16_t h) {
  const uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
  if (e == 0) {
    const float v = ldexpf((float)m, -24);
    return sign ? -v : v;
  }
  if (e == 31) return bits_f32(sign | 0x7f800000u | (m << 13));
  return bits_f32(sign | ((e + 112u) << 23) | (m << 13));
}

static size_t dtype_size(int dtype) { return dtype == HOPE_DTYPE_FLOAT32 ? 4 : 2; }

/* Stores x into element i of a buffer of `dtype`; returns the value as stored. */
static double store(void *buf, int dtype, size_t i, float x) {
  switch (dtype) {
    case HOPE_DTYPE_FLOAT16: ((uint16_t *)buf)[i] = float_to_half(x); return half_to_float(((uint16_t *)buf)[i]);
    case HOPE_DTYPE_BFLOAT16: ((uint16_t *)buf)[i] = float_to_bf16(x); return bf16_to_float(((uint16_t *)buf)[i]);
    default: ((float *)buf)[i] = x; return x;
  }
}

static double load(const void *buf, int dtype, size_t i) {
  switch (dtype) {
    case HOPE_DTYPE_FLOAT16: return half_to_float(((const uint16_t *)buf)[i]);
    case HOPE_DTYPE_BFLOAT16: return bf16_to_float(((const uint16_t *)buf)[i]);
    default: return ((const float *)buf)[i];
  }
}

/* A value as the kernels hold it after rotation: rounded to the tensor dtype (float32 keeps it). */
static double round_to_dtype(double x, int dtype) {
  switch (dtype) {
    case HOPE_DTYPE_FLOAT16: return half_to_float(float_to_half((float)x));
    case HOPE_DTYPE_BFLOAT16: return bf16_to_float(float_to_bf16((float)x));
    default: return x;
  }
}

/* SPEC §3, written out here independently of the library: which position row drives rotary pair i. */
static int component(int kind, int i, const int sections[3]) {
  const int st = sections[0], sh = sections[1], sw = sections[2];
  switch (kind) {
    case HOPE_ROPE_VANILLA: return 0;
    case HOPE_ROPE_MROPE: return i < st ? 0 : (i < st + sh ? 1 : 2);
    case HOPE_ROPE_MROPE_INTERLEAVED:
      if (i % 3 == 1 && i < 3 * sh) return 1;
      if (i % 3 == 2 && i < 3 * sw) return 2;
      return 0;
    case HOPE_ROPE_VIDEOROPE: return i < sh + sw ? (i % 2 == 0 ? 1 : 2) : 0;
    default: return i < sh + sw ? (i % 2 == 0 ? 1 : 2) : -1; /* HoPE: the lowest frequencies are set to zero */
  }
}

/* Rotates row x[0:d] (dtype-rounded inputs, double) of a token with position (t, h, w) into y, in double,
 * then rounds it to dtype as the kernel does before its matrix products. */
static void rotate_row(const double *x, double *y, int d, const float *pos3, const options_t *o) {
  const int half = d / 2;
  for (int i = 0; i < half; ++i) {
    const int c = component(o->rope_kind, i, o->sections);
    const double angle = c < 0 ? 0.0 : (double)pos3[c] * pow(o->theta, -2.0 * i / d);
    const double cs = cos(angle), sn = sin(angle);
    y[i] = round_to_dtype(x[i] * cs - x[i + half] * sn, o->dtype);
    y[i + half] = round_to_dtype(x[i + half] * cs + x[i] * sn, o->dtype);
  }
}

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

/* ---------------------------------------------------------------------------------------------------------- */
/* The GPU run                                                                                                 */
/* ---------------------------------------------------------------------------------------------------------- */

/* Device copies of q, k, v, out, lse, cu_seqlens and the unfused path's workspace, and what ran. */
typedef struct {
  void *q, *k, *v, *out, *ws;
  float *lse;
  int32_t *cu;
  size_t ws_bytes;
  const char *path; /* "fused" or "unfused" */
  char device_name[256];
} gpu_run_t;

#if HOPE_EXAMPLE_WITH_CUDA
#define CUDA_DEMO_CHECK(call)                                                                              \
  do {                                                                                                     \
    cudaError_t e_ = (call);                                                                               \
    if (e_ != cudaSuccess) {                                                                               \
      fprintf(stderr, "hope_attn_demo: %s failed: %s\n", #call, cudaGetErrorString(e_));                   \
      exit(1);                                                                                             \
    }                                                                                                      \
  } while (0)

/* Uploads the host q, k, v and cu_seqlens, runs `p` (shape and cos/sin set by the caller, cos/sin on the device)
 * once as a warm-up and 10 times timed with CUDA events, and downloads out and lse. The fused kernel covers
 * float16/bfloat16 and head_dim 64/128/256; anything else falls back to the unfused cuBLAS path, which takes every
 * dtype and even head_dim. Returns the mean time in ms. */
static double attention_gpu(hope_attention_params_t *p, gpu_run_t *g, const void *q, const void *k, const void *v,
                            size_t q_bytes, size_t kv_bytes, const int32_t cu_host[2], void *out, float *lse,
                            size_t lse_bytes) {
  struct cudaDeviceProp prop;
  int dev = 0;
  CUDA_DEMO_CHECK(cudaGetDevice(&dev));
  CUDA_DEMO_CHECK(cudaGetDeviceProperties(&prop, dev));
  snprintf(g->device_name, sizeof g->device_name, "%s", prop.name);
  CUDA_DEMO_CHECK(cudaMalloc(&g->q, q_bytes));
  CUDA_DEMO_CHECK(cudaMalloc(&g->k, kv_bytes));
  CUDA_DEMO_CHECK(cudaMalloc(&g->v, kv_bytes));
  CUDA_DEMO_CHECK(cudaMalloc(&g->out, q_bytes));
  CUDA_DEMO_CHECK(cudaMalloc((void **)&g->lse, lse_bytes));
  CUDA_DEMO_CHECK(cudaMalloc((void **)&g->cu, 2 * sizeof(int32_t)));
  CUDA_DEMO_CHECK(cudaMemcpy(g->q, q, q_bytes, cudaMemcpyHostToDevice));
  CUDA_DEMO_CHECK(cudaMemcpy(g->k, k, kv_bytes, cudaMemcpyHostToDevice));
  CUDA_DEMO_CHECK(cudaMemcpy(g->v, v, kv_bytes, cudaMemcpyHostToDevice));
  CUDA_DEMO_CHECK(cudaMemcpy(g->cu, cu_host, 2 * sizeof(int32_t), cudaMemcpyHostToDevice));
  p->q = g->q;
  p->k = g->k;
  p->v = g->v;
  p->out = g->out;
  p->lse = g->lse;
  p->cu_seqlens_q = p->cu_seqlens_k = g->cu;
  g->path = "fused";
  hope_status_t st = hope_attention_forward(p, NULL);
  if (st == HOPE_ERROR_NOT_SUPPORTED) {
    printf("  note       : fused kernel: %s; using the unfused GPU path\n", hope_last_error());
    g->path = "unfused";
    HOPE_DEMO_CHECK(hope_attention_unfused_workspace_size(p, &g->ws_bytes));
    CUDA_DEMO_CHECK(cudaMalloc(&g->ws, g->ws_bytes ? g->ws_bytes : 1));
    st = hope_attention_forward_unfused(p, g->ws, g->ws_bytes, NULL);
  }
  HOPE_DEMO_CHECK(st); /* the warm-up run */
  CUDA_DEMO_CHECK(cudaDeviceSynchronize());
  cudaEvent_t e0, e1;
  CUDA_DEMO_CHECK(cudaEventCreate(&e0));
  CUDA_DEMO_CHECK(cudaEventCreate(&e1));
  const int iters = 10;
  CUDA_DEMO_CHECK(cudaEventRecord(e0, NULL));
  for (int it = 0; it < iters; ++it) {
    if (g->ws != NULL) HOPE_DEMO_CHECK(hope_attention_forward_unfused(p, g->ws, g->ws_bytes, NULL));
    else HOPE_DEMO_CHECK(hope_attention_forward(p, NULL));
  }
  CUDA_DEMO_CHECK(cudaEventRecord(e1, NULL));
  CUDA_DEMO_CHECK(cudaEventSynchronize(e1));
  float total = 0.0f;
  CUDA_DEMO_CHECK(cudaEventElapsedTime(&total, e0, e1));
  CUDA_DEMO_CHECK(cudaEventDestroy(e0));
  CUDA_DEMO_CHECK(cudaEventDestroy(e1));
  CUDA_DEMO_CHECK(cudaMemcpy(out, g->out, q_bytes, cudaMemcpyDeviceToHost));
  CUDA_DEMO_CHECK(cudaMemcpy(lse, g->lse, lse_bytes, cudaMemcpyDeviceToHost));
  return total / iters;
}

static void gpu_free(gpu_run_t *g) {
  CUDA_DEMO_CHECK(cudaFree(g->q));
  CUDA_DEMO_CHECK(cudaFree(g->k));
  CUDA_DEMO_CHECK(cudaFree(g->v));
  CUDA_DEMO_CHECK(cudaFree(g->out));
  CUDA_DEMO_CHECK(cudaFree(g->lse));
  CUDA_DEMO_CHECK(cudaFree(g->cu));
  if (g->ws != NULL) CUDA_DEMO_CHECK(cudaFree(g->ws));
}
#else
/* Built without CUDA: hope_cuda_device_count reports 0 and main refuses --backend cuda, so there is no GPU run. */
#define attention_gpu(...) (fprintf(stderr, "hope_attn_demo: built without CUDA: no GPU run\n"), exit(1), 0.0)
#define gpu_free(g) ((void)(g))
#endif

/* ---------------------------------------------------------------------------------------------------------- */
/* The demo                                                                                                    */
/* ---------------------------------------------------------------------------------------------------------- */

static void describe_sequence(const options_t *o, int64_t n) {
  printf("  sequence   :");
  for (int i = 0; i < o->num_segments; ++i) {
    const hope_segment_t *s = &o->segments[i];
    if (i) printf(" +");
    if (s->kind == HOPE_SEGMENT_TEXT) printf(" text %d", s->length);
    else if (s->kind == HOPE_SEGMENT_IMAGE) printf(" image %dx%d", s->grid_h, s->grid_w);
    else printf(" video %dx%dx%d", s->grid_t, s->grid_h, s->grid_w);
  }
  printf(" = %lld tokens\n", (long long)n);
}

typedef struct {
  double max_abs, rel, lse_max;
  int lse_nonfinite_mismatch, nonfinite;
} check_t;

int main(int argc, char **argv) {
  options_t o;
  parse_args(argc, argv, &o);

  int32_t devices = 0;
  HOPE_DEMO_CHECK(hope_cuda_device_count(&devices));
  int backend = o.backend;
  if (backend < 0) backend = devices > 0 ? HOPE_BACKEND_CUDA : HOPE_BACKEND_CPU;
  if (backend == HOPE_BACKEND_CUDA && devices == 0) {
    fprintf(stderr, "hope_attn_demo: --backend cuda, but %s\n",
            HOPE_EXAMPLE_WITH_CUDA ? "no usable CUDA device was found" : "this hope_attn was built without CUDA");
    return 1;
  }
  const int on_gpu = backend == HOPE_BACKEND_CUDA;
  if (o.num_q_heads == 0) {
    o.num_q_heads = on_gpu ? 28 : 4; /* Qwen2-VL-7B's 28:4 on a GPU; a lighter 4:1 keeps the CPU run short */
    o.num_kv_heads = on_gpu ? 4 : 1;
  }
  const int d = o.head_dim, hq = o.num_q_heads, hk = o.num_kv_heads;

  /* 1. Temporal scale, then positions (SPEC §1-2). */
  float chosen = 0.0f;
  hope_scale_params_t sp;
  memset(&sp, 0, sizeof sp);
  sp.policy = o.scale_policy;
  sp.fixed_scale = (float)o.scale_value;
  sp.position_budget = o.scale_value;
  sp.seed = o.scale_seed;
  sp.start = o.start;
  HOPE_DEMO_CHECK(hope_temporal_scales_select(&sp, o.segments, o.num_segments, &chosen));
  int64_t n = 0;
  HOPE_DEMO_CHECK(hope_positions_count(o.segments, o.num_segments, &n));
  if (n == 0) {
    fprintf(stderr, "hope_attn_demo: the prompt has no tokens\n");
    return 2;
  }
  if (n > INT32_MAX / 2) {
    fprintf(stderr, "hope_attn_demo: %lld tokens is more than this demo handles\n", (long long)n);
    return 2;
  }
  float *positions = (float *)xmalloc(sizeof(float) * 3 * (size_t)n);
  float next_position = 0.0f;
  HOPE_DEMO_CHECK(hope_positions_build(o.segments, o.num_segments, (hope_layout_t)o.layout, 1.0f, o.start,
                                       positions, n, &next_position));

  /* 2. Random q, k, v in the chosen dtype; doubles of the values as stored. */
  const size_t nq_el = (size_t)n * hq * d, nk_el = (size_t)n * hk * d, es = dtype_size(o.dtype);
  void *q = xmalloc(nq_el * es), *k = xmalloc(nk_el * es), *v = xmalloc(nk_el * es);
  void *out = xmalloc(nq_el * es);
  float *lse = (float *)xmalloc(sizeof(float) * (size_t)hq * (size_t)n);
  uint64_t rng = o.seed;
  for (size_t i = 0; i < nq_el; ++i) store(q, o.dtype, i, normal(&rng));
  for (size_t i = 0; i < nk_el; ++i) store(k, o.dtype, i, normal(&rng));
  for (size_t i = 0; i < nk_el; ++i) store(v, o.dtype, i, normal(&rng));

  /* 3. The cos/sin cache, where the attention runs. */
  hope_rope_config_t rc;
  memset(&rc, 0, sizeof rc);
  rc.kind = o.rope_kind;
  rc.head_dim = d;
  memcpy(rc.sections, o.sections, sizeof rc.sections);
  rc.theta = o.theta;
  hope_rope_cache_t cache = NULL;
  HOPE_DEMO_CHECK(hope_rope_cache_create(&rc, n, on_gpu ? HOPE_MEMORY_DEVICE : HOPE_MEMORY_HOST, &cache));
  HOPE_DEMO_CHECK(hope_rope_cache_fill(cache, 0, positions, n, 0, HOPE_MEMORY_HOST, NULL));
  const float *cos_tab = NULL, *sin_tab = NULL;
  HOPE_DEMO_CHECK(hope_rope_cache_get(cache, &cos_tab, &sin_tab, NULL, NULL));

  /* 4. Report the set-up. */
  const int major = hope_version() / 10000, minor = hope_version() / 100 % 100, patch = hope_version() % 100;
  printf("hope_attn demo (library %d.%d.%d)\n", major, minor, patch);
  describe_sequence(&o, n);
  printf("  rope       : %s, head_dim %d, sections (%d,%d,%d), theta %g; layout %s\n", kRopeNames[o.rope_kind],
         d, o.sections[0], o.sections[1], o.sections[2], o.theta, kLayoutNames[o.layout]);
  int num_vision = 0;
  for (int i = 0; i < o.num_segments; ++i) num_vision += o.segments[i].kind != HOPE_SEGMENT_TEXT;
  printf("  scale      : ");
  if (o.scale_policy == HOPE_SCALE_FIT) printf("fit:%g -> %g", o.scale_value, chosen);
  else if (o.scale_policy == HOPE_SCALE_FIXED) printf("fixed -> %g", chosen);
  else {
    printf("random:%llu ->", (unsigned long long)o.scale_seed);
    for (int i = 0, first = 1; i < o.num_segments; ++i)
      if (o.segments[i].kind != HOPE_SEGMENT_TEXT) {
        printf("%s%g", first ? " " : ", ", o.segments[i].temporal_scale);
        first = 0;
      }
  }
  if (num_vision == 0) printf(" (no vision segment)");
  else if (o.layout != HOPE_LAYOUT_DIAGONAL) printf(" (unused by the %s layout)", kLayoutNames[o.layout]);
  printf("; next position %g\n", next_position);
  /* 5. Attention. */
  int32_t cu_host[2] = {0, (int32_t)n};
  hope_attention_params_t p;
  memset(&p, 0, sizeof p);
  p.backend = backend;
  p.dtype = o.dtype;
  p.batch = 1;
  p.num_q_heads = hq;
  p.num_kv_heads = hk;
  p.head_dim = d;
  p.max_seqlen_q = p.max_seqlen_k = (int32_t)n;
  p.cos_q = p.cos_k = cos_tab;
  p.sin_q = p.sin_k = sin_tab;
  p.causal = 1;
  double ms = 0.0;
  gpu_run_t gpu;
  memset(&gpu, 0, sizeof gpu);
  if (on_gpu) {
    ms = attention_gpu(&p, &gpu, q, k, v, nq_el * es, nk_el * es, cu_host, out, lse,
                       sizeof(float) * (size_t)hq * (size_t)n);
  } else {
    p.q = q;
    p.k = k;
    p.v = v;
    p.out = out;
    p.lse = lse;
    p.cu_seqlens_q = p.cu_seqlens_k = cu_host;
    const double t0 = now_ms();
    HOPE_DEMO_CHECK(hope_attention_forward(&p, NULL));
    ms = now_ms() - t0;
  }

  if (on_gpu)
    printf("  attention  : causal, heads %d q / %d kv, %s, backend cuda (%s, %s kernel)\n", hq, hk,
           kDtypeNames[o.dtype], gpu.device_name, gpu.path);
  else
    printf("  attention  : causal, heads %d q / %d kv, %s, backend cpu%s\n", hq, hk, kDtypeNames[o.dtype],
           !HOPE_EXAMPLE_WITH_CUDA ? " (built without CUDA)" : devices == 0 ? " (no GPU found)" : "");
  printf("  time       : %.3f ms%s\n", ms, on_gpu ? " (mean of 10, CUDA events)" : "");

  /* 6. Check sample rows against float64, computed here from the positions. */
  int pass = 1;
  for (size_t i = 0; i < nq_el; ++i)
    if (!isfinite(load(out, o.dtype, i))) {
      printf("  check      : NaN/Inf in the output at element %zu\n", i);
      pass = 0;
      break;
    }
  const double tol_rel = o.dtype == HOPE_DTYPE_FLOAT32 ? 1e-5 : (o.dtype == HOPE_DTYPE_FLOAT16 ? 2e-3 : 1e-2);
  const double tol_lse = o.dtype == HOPE_DTYPE_FLOAT32 ? 1e-4 : (o.dtype == HOPE_DTYPE_FLOAT16 ? 5e-3 : 2e-2);
  const int rows = o.check_rows < n ? o.check_rows : (int)n;
  if (rows > 0) {
    const double t0 = now_ms();
    /* Rotated keys of every token, in double (rounded to dtype as the kernel holds them). */
    double *krot = (double *)xmalloc(sizeof(double) * nk_el), *vd = (double *)xmalloc(sizeof(double) * nk_el);
    for (size_t e = 0; e < nk_el; ++e) vd[e] = load(v, o.dtype, e);
    double *x = (double *)xmalloc(sizeof(double) * d), *qr = (double *)xmalloc(sizeof(double) * d);
    double *acc = (double *)xmalloc(sizeof(double) * d), *s = (double *)xmalloc(sizeof(double) * (size_t)n);
    for (int64_t t = 0; t < n; ++t) {
      const float pos3[3] = {positions[t], positions[n + t], positions[2 * n + t]};
      for (int h = 0; h < hk; ++h) {
        const size_t base = ((size_t)t * hk + h) * d;
        for (int j = 0; j < d; ++j) x[j] = load(k, o.dtype, base + j);
        rotate_row(x, krot + base, d, pos3, &o);
      }
    }
    const double scale = 1.0 / sqrt((double)d);
    double err2 = 0.0, ref2 = 0.0, max_abs = 0.0, lse_max = 0.0;
    for (int r = 0; r < rows; ++r) {
      const int64_t i = rows == 1 ? n - 1 : (int64_t)((double)r * (double)(n - 1) / (rows - 1)); /* 0 .. n-1 */
      const float pos3[3] = {positions[i], positions[n + i], positions[2 * n + i]};
      for (int h = 0; h < hq; ++h) {
        const int kvh = h / (hq / hk);
        const size_t qbase = ((size_t)i * hq + h) * d;
        for (int j = 0; j < d; ++j) x[j] = load(q, o.dtype, qbase + j);
        rotate_row(x, qr, d, pos3, &o);
        double m = -INFINITY;
        for (int64_t t = 0; t <= i; ++t) { /* causal, Nq == Nk */
          const double *kr = krot + ((size_t)t * hk + kvh) * d;
          double dot = 0.0;
          for (int j = 0; j < d; ++j) dot += qr[j] * kr[j];
          s[t] = scale * dot;
          if (s[t] > m) m = s[t];
        }
        double z = 0.0;
        for (int j = 0; j < d; ++j) acc[j] = 0.0;
        for (int64_t t = 0; t <= i; ++t) {
          const double w = exp(s[t] - m);
          z += w;
          const double *vr = vd + ((size_t)t * hk + kvh) * d;
          for (int j = 0; j < d; ++j) acc[j] += w * vr[j];
        }
        for (int j = 0; j < d; ++j) {
          const double ref = acc[j] / z, got = load(out, o.dtype, qbase + j), e = fabs(got - ref);
          err2 += e * e;
          ref2 += ref * ref;
          if (!(e <= max_abs)) max_abs = e; /* NaN propagates */
        }
        const double lse_err = fabs((double)lse[(size_t)h * n + i] - (m + log(z)));
        if (!(lse_err <= lse_max)) lse_max = lse_err;
      }
    }
    const double rel = sqrt(err2) / (ref2 > 0.0 ? sqrt(ref2) : 1.0);
    const int ok = rel <= tol_rel && lse_max <= tol_lse;
    printf("  vs float64 : %d rows x %d heads: max abs err %.3g, rel err %.3g (tol %.0e), lse err %.3g (tol %.0e)"
           " %s [%.0f ms]\n", rows, hq, max_abs, rel, tol_rel, lse_max, tol_lse, ok ? "ok" : "TOO LARGE",
           now_ms() - t0);
    pass = pass && ok;
    free(krot);
    free(vd);
    free(x);
    free(qr);
    free(acc);
    free(s);
  }

  /* 7. With a GPU: the CPU backend on a prefix (causal rows depend only on earlier keys, so the first m rows of
   *    a prefix equal those of the whole prompt). */
  if (on_gpu) {
    const int64_t m = n < 1024 ? n : 1024;
    hope_rope_cache_t host_cache = NULL;
    HOPE_DEMO_CHECK(hope_rope_cache_create(&rc, m, HOPE_MEMORY_HOST, &host_cache));
    HOPE_DEMO_CHECK(hope_rope_cache_fill(host_cache, 0, positions, m, n, HOPE_MEMORY_HOST, NULL));
    const float *hc = NULL, *hs = NULL;
    HOPE_DEMO_CHECK(hope_rope_cache_get(host_cache, &hc, &hs, NULL, NULL));
    void *cpu_out = xmalloc((size_t)m * hq * d * es);
    float *cpu_lse = (float *)xmalloc(sizeof(float) * (size_t)hq * (size_t)m);
    int32_t cu_m[2] = {0, (int32_t)m};
    hope_attention_params_t c = p;
    c.backend = HOPE_BACKEND_CPU;
    c.cu_seqlens_q = c.cu_seqlens_k = cu_m;
    c.max_seqlen_q = c.max_seqlen_k = (int32_t)m;
    c.q = q;
    c.k = k;
    c.v = v;
    c.out = cpu_out;
    c.lse = cpu_lse;
    c.cos_q = c.cos_k = hc;
    c.sin_q = c.sin_k = hs;
    const double t0 = now_ms();
    HOPE_DEMO_CHECK(hope_attention_forward(&c, NULL));
    const double cpu_ms = now_ms() - t0;
    double err2 = 0.0, ref2 = 0.0, max_abs = 0.0, lse_max = 0.0;
    for (size_t i = 0; i < (size_t)m * hq * d; ++i) {
      const double a = load(out, o.dtype, i), b = load(cpu_out, o.dtype, i), e = fabs(a - b);
      err2 += e * e;
      ref2 += b * b;
      if (!(e <= max_abs)) max_abs = e;
    }
    for (int h = 0; h < hq; ++h)
      for (int64_t i = 0; i < m; ++i) {
        const double e = fabs((double)lse[(size_t)h * n + i] - (double)cpu_lse[(size_t)h * m + i]);
        if (!(e <= lse_max)) lse_max = e;
      }
    const double rel = sqrt(err2) / (ref2 > 0.0 ? sqrt(ref2) : 1.0);
    /* Two implementations, each within tol of float64: they may differ by up to twice that. */
    const int ok = rel <= 2 * tol_rel && lse_max <= 2 * tol_lse;
    printf("  vs cpu     : first %lld rows, all heads: max abs diff %.3g, rel diff %.3g (tol %.0e), lse diff %.3g"
           " %s [cpu %.0f ms]\n", (long long)m, max_abs, rel, 2 * tol_rel, lse_max, ok ? "ok" : "TOO LARGE", cpu_ms);
    pass = pass && ok;
    free(cpu_out);
    free(cpu_lse);
    HOPE_DEMO_CHECK(hope_rope_cache_destroy(host_cache));
    gpu_free(&gpu);
  }

  printf("  result     : %s\n", pass ? "PASS" : "FAIL");
  HOPE_DEMO_CHECK(hope_rope_cache_destroy(cache));
  free(positions);
  free(q);
  free(k);
  free(v);
  free(out);
  free(lse);
  return pass ? 0 : 1;
}
