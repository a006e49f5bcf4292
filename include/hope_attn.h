/*
 * hope_attn.h — the whole public ABI of hope_attn.
 *
 * hope_attn applies multimodal 3-D rotary position embeddings (HoPE, VideoRoPE, M-RoPE, plain RoPE) inside
 * attention. This header is plain C99, needs no CUDA header, and compiles as C++.
 *
 * Conventions for every function below:
 *  - Every function returns hope_status_t. None aborts, prints or exits; on failure it leaves a message that
 *    hope_last_error() returns on the same thread until that thread's next failing call.
 *  - Sizes are in elements unless a name ends in _bytes. Strides are in elements.
 *  - Streams come last as `void *` (a cudaStream_t; NULL is the legacy default stream). CUDA-backend work is
 *    asynchronous: no function on the hot path (rope_apply, attention, kv_append, decode, merge) allocates,
 *    synchronises or reads device memory back, so all of them can be captured in a CUDA graph.
 *  - "host" memory is ordinary CPU memory; "device" memory is CUDA global memory (cudaMalloc or managed).
 *  - Thread safety: every function is safe to call from several threads at once, except that one object
 *    (a cache, an output buffer) must not be written by two calls at the same time.
 *  - Structs passed as a single object (the *_params_t and *_config_t structs) only ever grow at their end,
 *    and a zero in a new field means today's behaviour: zero-fill what you do not set.
 */
#ifndef HOPE_ATTN_H_
#define HOPE_ATTN_H_

#include <stddef.h>
#include <stdint.h>

#define HOPE_VERSION_MAJOR 0
#define HOPE_VERSION_MINOR 2
#define HOPE_VERSION_PATCH 0
/* major*10000 + minor*100 + patch, as hope_version() returns it. */
#define HOPE_VERSION (HOPE_VERSION_MAJOR * 10000 + HOPE_VERSION_MINOR * 100 + HOPE_VERSION_PATCH)

#if defined(_WIN32)
#define HOPE_API
#elif defined(__GNUC__)
#define HOPE_API __attribute__((visibility("default")))
#else
#define HOPE_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------------------------------------ */
/* Status, errors, version                                                                                */
/* ------------------------------------------------------------------------------------------------------ */

typedef enum {
  HOPE_SUCCESS = 0,
  HOPE_ERROR_INVALID_VALUE = 1, /* an argument breaks the contract; the message names it */
  HOPE_ERROR_NOT_SUPPORTED = 2, /* valid, but this build or backend does not do it (e.g. head_dim 96 fused) */
  HOPE_ERROR_OUT_OF_MEMORY = 3, /* an allocation failed, or a caller's workspace is too small */
  HOPE_ERROR_CUDA = 4,          /* the CUDA runtime or cuBLAS reported an error; the message has its text */
  HOPE_ERROR_NO_DEVICE = 5,     /* a CUDA-backend call on a machine with no usable GPU */
  HOPE_ERROR_INTERNAL = 6       /* a bug in hope_attn: please report it with the message */
} hope_status_t;

/* A static English name for a status ("HOPE_ERROR_INVALID_VALUE"); never NULL, also for unknown values. */
HOPE_API const char *hope_status_string(hope_status_t status);

/* The calling thread's message from its last failing call ("" if none). The pointer stays valid until the
 * thread's next hope_* call. Thread-safe: each thread has its own message. */
HOPE_API const char *hope_last_error(void);

/* The library's run-time version, major*10000 + minor*100 + patch (compare with HOPE_VERSION). */
HOPE_API int hope_version(void);

/* The number of usable CUDA devices, 0 on a machine with no GPU or no driver (that is not an error).
 * Never fails except for a NULL argument. */
HOPE_API hope_status_t hope_cuda_device_count(int32_t *count);

/* How this library was built and what it finds on this machine, for bug reports and bindings: *info gets a
 * static string of "key=value" lines, each ending in '\n', valid for the life of the library (computed at the
 * first call). Parse it by key: keys keep their meaning, new ones may appear anywhere. Keys today:
 *   version             "major.minor.patch" of the library
 *   cuda                "on": the CUDA backend is built in; "off": built without CUDA, every CUDA-backend
 *                       call returns HOPE_ERROR_NOT_SUPPORTED (the CPU backend is complete either way)
 *   cuda_version        the CUDA toolkit version built against ("" when cuda=off)
 *   cuda_architectures  the CUDA architectures compiled, as CMake's CUDA_ARCHITECTURES, followed by those of
 *                       the sm90 kernel family when it is built ("" when cuda=off)
 *   cuda_devices        usable CUDA devices, as hope_cuda_device_count reports them
 *   attention_families  the fused-attention kernel families built in, comma-separated: "sm80" (mma.sync,
 *                       compute capability 8.0 on) and "sm90" (wgmma + TMA, 9.x); "" when cuda=off
 *   nvtx                "on" when every entry point opens an NVTX range (domain "hope_attn"), else "off"
 *   cpu_isa_paths       the CPU kernel paths compiled in, comma-separated ("generic": portable C)
 *   cpu_isa_selected    the path the CPU backend runs on this machine
 *   cpu_features        ISA extensions this CPU offers, comma-separated (x86: avx2, fma, avx512f, ...;
 *                       arm64: asimd, sve, ...)
 *   compiler, build_type, system   the C compiler, CMake build type and target system of the build
 * Never fails except for a NULL argument. */
HOPE_API hope_status_t hope_build_info(const char **info);

/* ------------------------------------------------------------------------------------------------------ */
/* Positions (SPEC §1)                                                                                    */
/* ------------------------------------------------------------------------------------------------------ */

typedef enum {
  HOPE_LAYOUT_SEQUENTIAL = 0, /* plain 1-D RoPE: token k gets (k, k, k) */
  HOPE_LAYOUT_MROPE = 1,      /* Qwen2-VL M-RoPE: (base + f, base + y, base + x) */
  HOPE_LAYOUT_DIAGONAL = 2,   /* VideoRoPE / HoPE: centred h, w on the diagonal, t = base + f * scale */
  HOPE_LAYOUT_MROPE_TIMED = 3 /* Qwen2.5-VL / Qwen2.5-Omni time-aligned M-RoPE (SPEC §8): t = base +
                                 trunc(float32(float32(f * g) * r)); needs hope_positions_build_ex */
} hope_layout_t;
typedef enum { HOPE_SEGMENT_TEXT = 0, HOPE_SEGMENT_IMAGE = 1, HOPE_SEGMENT_VIDEO = 2 } hope_segment_kind_t;

/* One piece of a multimodal sequence. Travels in arrays, so this struct never changes. */
typedef struct {
  int32_t kind;                   /* hope_segment_kind_t */
  int32_t length;                 /* text: token count (>= 0); vision: ignored */
  int32_t grid_t, grid_h, grid_w; /* vision: grid in LLM tokens (after spatial merge); image: grid_t == 1 */
  float temporal_scale;           /* vision: this item's scale; <= 0: the call's default */
} hope_segment_t;

/* Total token count of a segment list. Errors: NULL pointers (segments may be NULL when num_segments is 0),
 * num_segments < 0, a malformed segment (the message names its index), more than 2^31 - 1 tokens. */
HOPE_API hope_status_t hope_positions_count(const hope_segment_t *segments, int32_t num_segments,
                                            int64_t *num_tokens);

/* Builds the (t, h, w) rows of SPEC §1 on the host.
 * positions: host float32 [3][num_tokens] (row t, then row h, then row w); num_tokens must equal
 * hope_positions_count's answer. next_position (may be NULL): the position of the first generated token.
 * default_temporal_scale: finite, > 0; used by vision segments whose own scale is <= 0 (diagonal only).
 * HOPE_LAYOUT_MROPE_TIMED needs per-video timing and is INVALID_VALUE here: use hope_positions_build_ex. */
HOPE_API hope_status_t hope_positions_build(const hope_segment_t *segments, int32_t num_segments,
                                            hope_layout_t layout, float default_temporal_scale, float start,
                                            float *positions, int64_t num_tokens, float *next_position);

/* Everything hope_positions_build_ex needs besides the segments (added in 0.2). Like the other params structs it
 * grows only at its end, and a zero in a field added later means today's behaviour: zero-fill it first. */
typedef struct {
  int32_t layout;                /* hope_layout_t, any of the four */
  float default_temporal_scale;  /* diagonal: the scale of vision segments whose own scale is <= 0;
                                    0: 1.0; otherwise finite and > 0 */
  float start;                   /* every row starts here (0 for a new sequence); finite */
  /* Timed M-RoPE (HOPE_LAYOUT_MROPE_TIMED, SPEC §8); ignored by the other layouts: */
  const float *seconds_per_grid; /* host [num_segments], parallel to the segments: the seconds one temporal grid
                                    step of that video spans (Qwen2.5-VL's second_per_grid_ts: temporal_patch_size
                                    / fps), finite and >= 0. Entries of text and image segments are ignored (an
                                    image is a block with T = 1, so t = base). Required when the list holds a
                                    video (pass 1.0 per video for transformers' default when the processor gives
                                    none). */
  float tokens_per_second;       /* finite, > 0: 2 for Qwen2.5-VL, 25 for Qwen2.5-Omni */
} hope_positions_params_t;

/* hope_positions_build with every layout, the timed one included. Frame f of a video block in the timed
 * layout takes t = base + trunc(float32(float32(f * g) * r)), exactly `(torch.arange(T) * g * r).long()` in
 * float32 (g = seconds_per_grid[i], r = tokens_per_second), h = base + y, w = base + x, and the text after the
 * block resumes at 1 + the largest value of any of its three rows, as in the released Qwen2.5-VL code.
 * Temporal scales (hope_temporal_scales_select) do not apply to this layout. Errors: as hope_positions_build,
 * plus a NULL params, an unknown layout, and (timed) a NULL seconds_per_grid with a video in the list, a
 * negative or non-finite interval (the message names the segment) or tokens_per_second <= 0. */
HOPE_API hope_status_t hope_positions_build_ex(const hope_positions_params_t *params, const hope_segment_t *segments,
                                               int32_t num_segments, float *positions, int64_t num_tokens,
                                               float *next_position);

/* Positions of generated tokens: token k (k counted from 0 at the first generated token) has position
 * next_position + k on all three rows. Writes tokens [first, first + n) into host positions [3][n]. */
HOPE_API hope_status_t hope_positions_generated(float next_position, int64_t first, int64_t n, float *positions);

/* Turns a vision encoder's raw patch grid (grid_thw as Qwen2-VL's processor reports it) into an LLM-token
 * segment: grid_h and grid_w are divided by spatial_merge_size (an error when it does not divide them).
 * kind: HOPE_SEGMENT_IMAGE (grid_t must be 1) or HOPE_SEGMENT_VIDEO. temporal_scale is copied. */
HOPE_API hope_status_t hope_segment_from_vision_grid(int32_t kind, int32_t grid_t, int32_t grid_h, int32_t grid_w,
                                                     int32_t spatial_merge_size, float temporal_scale,
                                                     hope_segment_t *segment);

/* hope_segment_from_vision_grid with a temporal merge as well (SPEC §8; ERNIE-4.5-VL merges 2 frames): a video's
 * grid_t is divided by temporal_merge_size (>= 1; an error when it does not divide grid_t). An image keeps
 * grid_t == 1 and ignores temporal_merge_size (no model merges an image's single frame). */
HOPE_API hope_status_t hope_segment_from_vision_grid_ex(int32_t kind, int32_t grid_t, int32_t grid_h, int32_t grid_w,
                                                        int32_t spatial_merge_size, int32_t temporal_merge_size,
                                                        float temporal_scale, hope_segment_t *segment);

/* ------------------------------------------------------------------------------------------------------ */
/* Temporal scale selection (SPEC §2)                                                                     */
/* ------------------------------------------------------------------------------------------------------ */

typedef enum {
  HOPE_SCALE_FIXED = 0,  /* fixed_scale for every vision segment */
  HOPE_SCALE_RANDOM = 1, /* an independent draw from the candidates per vision segment, from seed */
  HOPE_SCALE_FIT = 2     /* the largest candidate whose diagonal next_position <= position_budget, else the
                            smallest candidate; only candidates hope_positions_build accepts (every position a
                            finite float32) take part, and INVALID_VALUE when there is none */
} hope_scale_policy_t;

/* The HoPE training set {0.5, 0.75, 1.0, 1.25, 1.5}, used when num_candidates is 0. */
#define HOPE_DEFAULT_SCALE_CANDIDATES {0.5f, 0.75f, 1.0f, 1.25f, 1.5f}

typedef struct {
  int32_t policy;            /* hope_scale_policy_t */
  int32_t num_candidates;    /* 0: the HoPE default set */
  const float *candidates;   /* host [num_candidates]; each finite and > 0 */
  float fixed_scale;         /* FIXED: finite, > 0 */
  uint64_t seed;             /* RANDOM: the splitmix64 seed (see below) */
  double position_budget;    /* FIT: the largest allowed next_position */
  float start;               /* FIT: the start offset the positions will be built with */
} hope_scale_params_t;

/* Writes the chosen scale into temporal_scale of every vision segment (text segments are left alone).
 * RANDOM uses splitmix64: state = seed; for each vision segment in order: state += 0x9E3779B97F4A7C15,
 * z = state; z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9; z = (z ^ (z >> 27)) * 0x94D049BB133111EB;
 * z ^= z >> 31; the draw is candidates[z % num_candidates]. Same seed, same draws on every platform.
 * chosen (may be NULL): FIXED and FIT: the one scale chosen; RANDOM: the first vision segment's draw
 * (0 if there is none). */
HOPE_API hope_status_t hope_temporal_scales_select(const hope_scale_params_t *params, hope_segment_t *segments,
                                                   int32_t num_segments, float *chosen);

/* ------------------------------------------------------------------------------------------------------ */
/* Frequencies and cos/sin (SPEC §3)                                                                      */
/* ------------------------------------------------------------------------------------------------------ */

typedef enum {
  HOPE_ROPE_VANILLA = 0,
  HOPE_ROPE_MROPE = 1,
  HOPE_ROPE_MROPE_INTERLEAVED = 2,
  HOPE_ROPE_VIDEOROPE = 3,
  HOPE_ROPE_HOPE = 4
} hope_rope_kind_t;

/* How the dims of a head form rotary pairs (SPEC §8). Independent of the frequency allocation: "mrope_interleaved"
 * (Qwen3-VL) names which position drives pair i, this names which two dims pair i rotates. */
typedef enum {
  HOPE_PAIRING_ROTATE_HALF = 0, /* pair i rotates dims (i, i + r/2): Qwen2-VL, Qwen2.5-VL, Qwen3-VL, HoPE */
  HOPE_PAIRING_INTERLEAVED = 1  /* pair i rotates dims (2i, 2i + 1) (GPT-J style): GLM-4.xV, ERNIE-4.5-VL */
} hope_rope_pairing_t;

typedef struct {
  int32_t kind;        /* hope_rope_kind_t */
  int32_t head_dim;    /* even, 2..1024 */
  int32_t sections[3]; /* (st, sh, sw) pairs; sum == rotary_dim / 2 (ignored for vanilla) */
  double theta;        /* base, e.g. 1e6 for Qwen2-VL; finite, > 1 */
  /* --- added in 0.2; zero means the default --- */
  int32_t pairing;           /* hope_rope_pairing_t the tables are meant for: 0 or 1 (cos/sin do not depend on
                                it; pass the same value as rope_pairing to the calls that rotate) */
  int32_t rotary_dim;        /* r: even, 2..head_dim; 0: head_dim. The pairs, frequencies inv_i = theta^(-2i/r)
                                and sections cover dims 0..r-1 only; tables are [n][r/2]; dims r.. pass through */
  int32_t model_exact_freqs; /* 1: inv_i = float32(1 / float32(float32(theta) ** float32(2i / r))), the float32
                                inverse frequencies PyTorch model code trains with (pow correctly rounded), while
                                the angle pos * inv_i and its cos/sin are still computed in double, so the tables
                                match the model's frequencies without its float32 angle error. (PyTorch's own
                                float32 pow, Sleef on the CPU and powf on CUDA, is not always correctly rounded: for
                                some i its value may be one float32 ulp away from this one.)
                                0: inv_i = theta^(-2i/r) in double. Other values are INVALID_VALUE */
} hope_rope_config_t;

/* Settings that reproduce the models (positions layout; kind; sections (st, sh, sw); pairing; rotary_dim):
 *   Qwen2-VL          MROPE;       MROPE;             (16, 24, 24); rotate-half; head_dim
 *   Qwen2.5-VL        MROPE_TIMED (tokens_per_second 2, seconds_per_grid = second_per_grid_ts);
 *                                  MROPE;             (16, 24, 24); rotate-half; head_dim
 *   Qwen2.5-Omni      MROPE_TIMED (tokens_per_second 25); otherwise as Qwen2.5-VL
 *   Qwen3-VL          MROPE, a video as per-frame T = 1 blocks after their timestamp text;
 *                                  MROPE_INTERLEAVED; (24, 20, 20); rotate-half; head_dim
 *   GLM-4.1V/4.5V/4.6V MROPE, video per frame as Qwen3-VL;
 *                                  MROPE;             (8, 12, 12);  interleaved; head_dim / 2 (64 of 128)
 *   ERNIE-4.5-VL      MROPE, video grids with temporal merge 2 (hope_segment_from_vision_grid_ex);
 *                                  VIDEOROPE;         (20, 22, 22) (its mrope_section [22, 22, 20] lists (h, w, t));
 *                                  interleaved; head_dim
 *   HoPE              DIAGONAL with a temporal scale; HOPE; the model's sections; rotate-half; head_dim
 * theta is the model's rope_theta. Text after a vision block resumes at 1 + the block's largest position, as in the
 * released Qwen2-VL code (transformers 5.24's Qwen2-VL get_rope_index resumes at base + max(H, W), which differs
 * when T > max(H, W)). */

/* Which position row drives each pair: HOPE_COMPONENT_T/H/W, or HOPE_COMPONENT_NONE (zero frequency). */
enum { HOPE_COMPONENT_NONE = -1, HOPE_COMPONENT_T = 0, HOPE_COMPONENT_H = 1, HOPE_COMPONENT_W = 2 };

/* Checks a config; on success writes c(i) for i < rotary_dim/2 into components (host, may be NULL). */
HOPE_API hope_status_t hope_rope_components(const hope_rope_config_t *config, int32_t *components);

/* Host reference of §3. positions: host [3][n] as built above; cos_out and sin_out: host float32
 * [n][rotary_dim/2] (rotary_dim resolved: head_dim when the config says 0). Angles are computed in double.
 * A non-finite position on a row that some pair reads is INVALID_VALUE (nothing is written). */
HOPE_API hope_status_t hope_rope_cos_sin(const hope_rope_config_t *config, const float *positions, int64_t n,
                                         float *cos_out, float *sin_out);

typedef enum { HOPE_MEMORY_HOST = 0, HOPE_MEMORY_DEVICE = 1 } hope_memory_t;

/* A cos/sin cache: per-token tables cos[capacity][rotary_dim/2] and sin[capacity][rotary_dim/2] (float32) that
 * it owns, on the host or on the current CUDA device. It carries no temporal-scale state (the scale lives in
 * the positions), so several streams may fill disjoint rows of one cache at once. */
typedef struct hope_rope_cache_s *hope_rope_cache_t;

/* Allocates a cache for `capacity` tokens (>= 1) in `memory`. Errors: INVALID_VALUE for a bad config or
 * capacity, OUT_OF_MEMORY, NO_DEVICE for a device cache without a GPU. On failure *cache is set to NULL. */
HOPE_API hope_status_t hope_rope_cache_create(const hope_rope_config_t *config, int64_t capacity,
                                              hope_memory_t memory, hope_rope_cache_t *cache);

/* Fills rows [offset, offset + n) from positions [3][n] whose rows are positions_ld floats apart
 * (0: n), living in positions_memory. A host cache computes in double on the host (device positions are
 * copied back first, synchronously). A device cache runs a kernel on `stream` (host positions are first
 * copied into the cache's own staging rows [offset, offset + n), so the host array may be reused on return).
 * offset + n > capacity is INVALID_VALUE; nothing is written then. n == 0 is a no-op. */
HOPE_API hope_status_t hope_rope_cache_fill(hope_rope_cache_t cache, int64_t offset, const float *positions,
                                            int64_t n, int64_t positions_ld, hope_memory_t positions_memory,
                                            void *stream);

/* The tables (row k of cos at cos + k * rotary_dim/2), the capacity and where they live. Any output may be NULL. */
HOPE_API hope_status_t hope_rope_cache_get(hope_rope_cache_t cache, const float **cos, const float **sin,
                                           int64_t *capacity, hope_memory_t *memory);

/* Frees everything the cache owns (after synchronising the device). NULL is a no-op. */
HOPE_API hope_status_t hope_rope_cache_destroy(hope_rope_cache_t cache);

/* ------------------------------------------------------------------------------------------------------ */
/* Rotation (SPEC §4)                                                                                     */
/* ------------------------------------------------------------------------------------------------------ */

typedef enum { HOPE_DTYPE_FLOAT16 = 0, HOPE_DTYPE_BFLOAT16 = 1, HOPE_DTYPE_FLOAT32 = 2 } hope_dtype_t;
typedef enum { HOPE_BACKEND_CUDA = 0, HOPE_BACKEND_CPU = 1 } hope_backend_t;

/* Rotates x[token][head][0:rotary_dim] by its token's (cos, sin) into out, in float32 registers, with the pairs
 * of rope_pairing (SPEC §4 and §8): rotate-half pairs dims (i, i + rotary_dim/2), interleaved pairs (2i, 2i + 1).
 * Dims rotary_dim..head_dim-1 are copied unchanged.
 * Heads of one token are contiguous (head stride head_dim); tokens are x_row_stride elements apart, so a
 * slice of a fused QKV buffer [tokens][(Hq + 2 Hk) * d] can be rotated in one call (num_heads = Hq + Hk).
 * out may equal x (in place; with more than one token the two row strides must then be equal); otherwise the
 * two must not overlap (INVALID_VALUE). */
typedef struct {
  int32_t backend;            /* hope_backend_t: CUDA takes device pointers, CPU host pointers */
  int32_t dtype;              /* hope_dtype_t of x and out */
  int64_t num_tokens;
  int32_t num_heads, head_dim;
  const void *x;
  int64_t x_row_stride;       /* elements between tokens; 0: num_heads * head_dim */
  void *out;
  int64_t out_row_stride;     /* 0: num_heads * head_dim */
  const float *cos, *sin;     /* [num_tokens][rotary_dim/2], same memory space as x */
  /* --- added in 0.2; zero means the default --- */
  int32_t rope_pairing;       /* hope_rope_pairing_t: 0 rotate-half, 1 interleaved; else INVALID_VALUE */
  int32_t rotary_dim;         /* even, 2..head_dim; 0: head_dim (odd, out of range: INVALID_VALUE). Dims
                                 rotary_dim.. are copied unchanged */
} hope_rope_apply_params_t;

HOPE_API hope_status_t hope_rope_apply(const hope_rope_apply_params_t *params, void *stream);

/* ------------------------------------------------------------------------------------------------------ */
/* Attention (SPEC §5)                                                                                    */
/* ------------------------------------------------------------------------------------------------------ */

typedef struct {
  int32_t backend;              /* hope_backend_t: CUDA takes device pointers, CPU host pointers */
  int32_t dtype;                /* hope_dtype_t of q, k, v, out */
  int32_t batch, num_q_heads, num_kv_heads, head_dim;
  const int32_t *cu_seqlens_q;  /* [batch + 1] */
  const int32_t *cu_seqlens_k;  /* [batch + 1] */
  int32_t max_seqlen_q, max_seqlen_k;
  const void *q, *k, *v;        /* [tokens][heads][head_dim], rows packed (see the strides below) */
  void *out;                    /* [total_q][num_q_heads][head_dim] */
  float *lse;                   /* optional [num_q_heads][total_q], NULL to skip; natural log */
  const float *cos_q, *sin_q;   /* [total_q][rotary_dim/2]; NULL: q is used as given */
  const float *cos_k, *sin_k;   /* [total_k][rotary_dim/2]; NULL: k is used as given */
  float softmax_scale;          /* <= 0: 1/sqrt(head_dim); NaN/inf: INVALID_VALUE. As in any float32 attention,
                                   scores must stay finite: |scale * q.k| beyond 3.4e38 gives NaN */
  int32_t causal;               /* bottom-right aligned: key n is masked for query i when n > i + Nk - Nq */
  /* --- added in 0.1; zero means the default --- */
  int64_t q_row_stride;         /* elements between q tokens; 0: num_q_heads * head_dim */
  int64_t k_row_stride;         /* 0: num_kv_heads * head_dim */
  int64_t v_row_stride;         /* 0: num_kv_heads * head_dim */
  void *k_rotated;              /* optional [total_k][num_kv_heads][head_dim] in dtype: receives the rotated K
                                   (written once per key token), e.g. to store in a KV cache; NULL: skip */
  /* --- added in 0.2; zero means the default --- */
  int32_t rope_pairing;         /* hope_rope_pairing_t of q and k */
  int32_t rotary_dim;           /* even, 2..head_dim; 0: head_dim. cos/sin are then [tokens][rotary_dim/2] */
} hope_attention_params_t;

/* softmax(scale * rot(q) rot(k)^T + mask) v per sequence and head, float32 accumulation.
 * CPU backend: every check of SPEC §5, including cu_seqlens and max_seqlen_* (which must bound the true
 * lengths); all three dtypes, any even head_dim up to 1024.
 * CUDA backend: a fused FlashAttention-style kernel of one of two architecture families: compute
 * capability 9.x (H100, H200) runs the warp-specialised wgmma + TMA kernel (sm90 family), every other device
 * from 8.0 on the FlashAttention-2-style mma.sync kernel (sm80 family); the environment variable
 * HOPE_ATTN_KERNEL_FAMILY=sm80 or sm90 forces one (NOT_SUPPORTED where it cannot run). float16/bfloat16 and
 * head_dim 64, 128, 256 (anything else is NOT_SUPPORTED with a message: use the CPU backend or
 * hope_attention_forward_unfused); q/k/v pointers and row strides 16-byte aligned. cu_seqlens live in device
 * memory and are the caller's promise. When k_rotated is given, K is rotated once into it by a memory-bound
 * pre-pass and the attention kernel reads it; otherwise K tiles are rotated in shared memory. No allocation
 * or synchronisation: the call can be captured in a CUDA graph.
 * SPEC §8 (rope_pairing, rotary_dim): every path of both backends takes them (the CPU attention and decode,
 * the fused kernel of both families, the unfused path, hope_rope_apply, hope_kv_append, hope_decode_forward),
 * except that the fused CUDA kernel rotates whole 16-byte chunks, so when it rotates it takes rotary_dim
 * multiples of 16 only (NOT_SUPPORTED otherwise, the message naming the unfused path, which takes any even
 * rotary_dim). */
HOPE_API hope_status_t hope_attention_forward(const hope_attention_params_t *params, void *stream);

/* The unfused GPU reference: rotation, then cuBLAS Q.K^T, a float32 masked softmax that writes LSE, then
 * cuBLAS P.V. Needs a device workspace of O(num_q_heads * batch * max_seqlen_q * max_seqlen_k) floats, sized
 * by hope_attention_unfused_workspace_size; a smaller one gives HOPE_ERROR_OUT_OF_MEMORY and writes nothing.
 * CUDA backend only; all three dtypes; any even head_dim up to 1024. The first call on a device creates its
 * cuBLAS handle (which allocates): make one call before capturing a CUDA graph. */
HOPE_API hope_status_t hope_attention_unfused_workspace_size(const hope_attention_params_t *params,
                                                             size_t *workspace_bytes);
HOPE_API hope_status_t hope_attention_forward_unfused(const hope_attention_params_t *params, void *workspace,
                                                      size_t workspace_bytes, void *stream);

/* ------------------------------------------------------------------------------------------------------ */
/* Serving: paged KV cache, decode, state merging                                                         */
/* ------------------------------------------------------------------------------------------------------ */

/* A paged KV cache the caller owns (vLLM / FlashInfer convention):
 * k_pages and v_pages are [num_pages][page_size][num_kv_heads][head_dim] in dtype; slot s is token
 * s % page_size of page s / page_size. */
typedef struct {
  int32_t dtype;                /* hope_dtype_t: float16 or bfloat16 (float32 too on the CPU backend) */
  int32_t num_pages, page_size, num_kv_heads, head_dim;
  void *k_pages, *v_pages;
} hope_paged_kv_t;

/* Rotates new keys with their cos/sin and writes keys and values into their slots. */
typedef struct {
  int32_t backend;              /* hope_backend_t */
  hope_paged_kv_t cache;
  int64_t num_tokens;
  const void *k, *v;            /* [num_tokens][num_kv_heads][head_dim] in cache.dtype */
  int64_t k_row_stride, v_row_stride; /* 0: num_kv_heads * head_dim */
  const int64_t *slot_mapping;  /* [num_tokens]; a negative slot skips the token; otherwise < num_pages*page_size */
  const float *cos_k, *sin_k;   /* [num_tokens][rotary_dim/2]; NULL: k is stored as given */
  /* --- added in 0.2; zero means the default --- */
  int32_t rope_pairing;         /* hope_rope_pairing_t */
  int32_t rotary_dim;           /* even, 2..head_dim; 0: head_dim */
} hope_kv_append_params_t;

HOPE_API hope_status_t hope_kv_append(const hope_kv_append_params_t *params, void *stream);

/* Attention of a few new query tokens per sequence (1 to 8: decode and speculative decoding) over that
 * sequence's pages. Keys in the cache are already rotated; queries are rotated from cos_q/sin_q. */
typedef struct {
  int32_t backend;              /* hope_backend_t */
  hope_paged_kv_t cache;
  int32_t batch, num_q_heads;   /* num_q_heads % cache.num_kv_heads == 0 */
  const int32_t *cu_seqlens_q;  /* [batch + 1]; each sequence has 0..8 query tokens */
  int32_t max_seqlen_q;         /* 1..8 (when batch > 0): bounds every sequence's query count */
  const int32_t *seq_lens;      /* [batch] keys per sequence, the new tokens included */
  int32_t max_seqlen_k;         /* >= every seq_lens entry (plans the split) */
  const int32_t *page_table;    /* [batch][max_pages_per_seq] page indices */
  int32_t max_pages_per_seq;
  const void *q;                /* [total_q][num_q_heads][head_dim] */
  int64_t q_row_stride;         /* 0: num_q_heads * head_dim */
  void *out;                    /* [total_q][num_q_heads][head_dim] */
  float *lse;                   /* optional [num_q_heads][total_q] */
  const float *cos_q, *sin_q;   /* [total_q][rotary_dim/2]; NULL: q used as given */
  float softmax_scale;          /* <= 0: 1/sqrt(head_dim) */
  int32_t causal;               /* among the new tokens: query i of Nq sees keys < seq_len - Nq + i + 1 */
  int32_t num_splits;           /* 0: the planner chooses from the SM count and max_seqlen_k; else forced */
  /* --- added in 0.2; zero means the default --- */
  int32_t rope_pairing;         /* hope_rope_pairing_t of q (the cache holds keys rotated the same way) */
  int32_t rotary_dim;           /* even, 2..head_dim; 0: head_dim. cos_q/sin_q are [total_q][rotary_dim/2] */
} hope_decode_params_t;

/* Workspace (device for CUDA, host for CPU) for the split-KV partials; 0 when no split is planned. */
HOPE_API hope_status_t hope_decode_workspace_size(const hope_decode_params_t *params, size_t *workspace_bytes);
HOPE_API hope_status_t hope_decode_forward(const hope_decode_params_t *params, void *workspace,
                                           size_t workspace_bytes, void *stream);

/* Merges two partial attention states over disjoint key sets into the softmax over their union:
 * lse = log(exp(lse_a) + exp(lse_b)), out = (exp(lse_a - lse) o_a + exp(lse_b - lse) o_b).
 * A side with lse = -inf contributes nothing (its o is not read); both -inf gives out = 0, lse = -inf. A NaN or
 * +inf lse on either side (no softmax state has one) gives out = NaN and lse = NaN for that row, whichever side
 * holds it. out may be o_a or o_b itself, and lse_out lse_a or lse_b itself (an in-place merge); any other
 * overlap between an output and an argument is INVALID_VALUE. */
typedef struct {
  int32_t backend;              /* hope_backend_t */
  int32_t dtype;                /* hope_dtype_t of o_a, o_b, out */
  int64_t num_tokens;
  int32_t num_heads, head_dim;
  const void *o_a, *o_b;        /* [num_tokens][num_heads][head_dim] */
  const float *lse_a, *lse_b;   /* [num_heads][num_tokens] */
  void *out;                    /* [num_tokens][num_heads][head_dim] */
  float *lse_out;               /* optional [num_heads][num_tokens] */
} hope_merge_params_t;

HOPE_API hope_status_t hope_merge_states(const hope_merge_params_t *params, void *stream);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* HOPE_ATTN_H_ */
