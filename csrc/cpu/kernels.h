/* cpu/kernels.h — the CPU backend's compute layer, shared by its drivers (attention.c, serving.c).
 *
 * Data formats. Attention runs in one of two compute modes:
 *  - HOPEI_MODE_F32: q, k, v and the probabilities P in float32 (float32 and float16 tensors; bfloat16 tensors
 *    on an ISA without a bfloat16 dot product, where the bf16 -> f32 conversion is exact);
 *  - HOPEI_MODE_BF16: q, k, v and P in bfloat16, products accumulated in float32 by `vdpbf16ps`
 *    (bfloat16 tensors on AVX512_BF16). A product of two bfloat16 values is exact in float32.
 * Scores S, the running max / sum and the output accumulator O are float32 in both.
 * Every row is padded to dp = hopei_cpu_padded_dim(head_dim) elements with zeros (a zero changes no dot
 * product), so the micro-kernels never see a ragged head_dim.
 *
 * Packed layouts (elements of the mode's type; "chunk" = HOPEI_KEY_CHUNK keys):
 *  - Q rows: [rows][dp], row-major, any row stride;
 *  - K panel of one chunk: F32 [dp][16] (key fastest), BF16 [dp/2][16][2] (a bf16 pair of one key fastest);
 *    a block of keys is its chunks back to back (16 * dp elements each);
 *  - V panel of one chunk: F32 [16][dp] (row-major), BF16 [8][dp][2] (two keys interleaved per column);
 *  - P: [rows][keys] (float32 in F32 mode, bfloat16 in BF16 mode), keys a multiple of 16.
 * Keys past the end of a chunk are zero in K and V; the driver gives them P = 0. */
#ifndef HOPE_CPU_KERNELS_H_
#define HOPE_CPU_KERNELS_H_

#include <stddef.h>
#include <stdint.h>

#include "../internal.h"

#ifdef __cplusplus
extern "C" {
#endif

#define HOPEI_KEY_CHUNK 16
/* Largest head_dim of the CPU backend (csrc/attention.c and csrc/serving.c check it). */
#define HOPEI_ATTN_CPU_MAX_HEAD_DIM 1024
/* head_dim is padded to a multiple of this (the widest vector of bf16 pairs, 32 values). */
#define HOPEI_DIM_ALIGN 32

static inline int hopei_cpu_padded_dim(int d) { return (d + HOPEI_DIM_ALIGN - 1) / HOPEI_DIM_ALIGN * HOPEI_DIM_ALIGN; }

typedef enum { HOPEI_MODE_F32 = 0, HOPEI_MODE_BF16 = 1 } hopei_mode_t;

/* The instruction-set paths, best last. HOPE_CPU_ISA=portable|avx2|avx512|avx512bf16 forces one. */
typedef enum {
  HOPEI_ISA_PORTABLE = 0,   /* plain C (the compiler's baseline vectors) */
  HOPEI_ISA_AVX2 = 1,       /* AVX2 + FMA, 8-wide float32 */
  HOPEI_ISA_AVX512 = 2,     /* AVX-512F/BW/VL/DQ, 16-wide float32 */
  HOPEI_ISA_AVX512BF16 = 3  /* AVX-512 plus AVX512_BF16: bfloat16 tensors in BF16 mode */
} hopei_isa_t;

/* One ISA's micro-kernels. All pointers are non-NULL except the BF16 ones, which only AVX512_BF16 has.
 * `keys` is always a multiple of HOPEI_KEY_CHUNK and `dp` of HOPEI_DIM_ALIGN; every row loop runs in a fixed
 * order, so a result never depends on which thread computes it. */
typedef struct {
  const char *name;
  hopei_isa_t isa;
  /* S[rows][keys] (row stride s_ld) = Q[rows][dp] . Kpanel^T: raw dot products, no scale. */
  void (*qk_f32)(const float *q, int64_t q_ld, int rows, const float *k, int keys, int dp, float *s, int64_t s_ld);
  /* O[rows][dp] (row stride o_ld) += P[rows][keys] . Vpanel. */
  void (*pv_f32)(const float *p, int64_t p_ld, int rows, const float *v, int keys, int dp, float *o, int64_t o_ld);
  void (*qk_bf16)(const uint16_t *q, int64_t q_ld, int rows, const uint16_t *k, int keys, int dp, float *s,
                  int64_t s_ld);
  void (*pv_bf16)(const uint16_t *p, int64_t p_ld, int rows, const uint16_t *v, int keys, int dp, float *o,
                  int64_t o_ld);
  /* max of x[0..n), n >= 1 */
  float (*row_max)(const float *x, int n);
  /* p[i] = 2^(x[i] * mul - sub) for i < n (0 where x[i] is -inf), p[n..n_pad) = 0; returns the float32 sum of
   * p[0..n) (before the bf16 variant rounds p to bfloat16). x and p may be the same array (f32). */
  float (*exp_f32)(const float *x, float *p, int n, int n_pad, float mul, float sub);
  float (*exp_bf16)(const float *x, uint16_t *p, int n, int n_pad, float mul, float sub);
  /* x[0..n) *= a */
  void (*scale)(float *x, int n, float a);
  /* Packs keys [0, n) of one chunk (n <= 16; rows[i] points at key i's head_dim values in `dtype`) into a
   * K or V panel of the mode (pack_*_bf16 only for BF16 mode, source dtype bfloat16). Missing keys and the
   * columns d..dp are zero. */
  void (*pack_k_f32)(const void *const *rows, int n, int32_t dtype, int d, int dp, float *dst);
  void (*pack_v_f32)(const void *const *rows, int n, int32_t dtype, int d, int dp, float *dst);
  void (*pack_k_bf16)(const void *const *rows, int n, int d, int dp, uint16_t *dst);
  void (*pack_v_bf16)(const void *const *rows, int n, int d, int dp, uint16_t *dst);
  /* Decode straight on cache rows, without packing (BF16 mode, bfloat16 cache; NULL where the ISA has none, then
   * the decode driver packs panels): key i's d values are at krows[i] / vrows[i]; `keys` is a multiple of 16,
   * the pointers past the real keys point at zeros. S[rows][keys] (row stride s_ld) = Q[rows][dp] . K^T (raw);
   * O[rows][dp] (row stride o_ld) += P[rows][keys] . V. */
  void (*qk_rows_bf16)(const uint16_t *q, int64_t q_ld, int rows, const void *const *krows, int keys, int d, int dp,
                       float *s, int64_t s_ld);
  void (*pv_rows_bf16)(const uint16_t *p, int64_t p_ld, int rows, const void *const *vrows, int keys, int d, int dp,
                       float *o, int64_t o_ld);
  /* Q.K^T straight on cache rows for up to 16 query rows (BF16 mode, bfloat16 cache; NULL where the ISA has
   * none), the rows given as a Q panel [dp/2][16][2]: lane i of vector c holds the pair (q[2c], q[2c + 1]) of row
   * i (zeros for rows past `rows`). S[rows][keys] (row stride s_ld) as qk_rows_bf16 gives it; `keys` a multiple
   * of 16, the pointers past the real keys point at zeros; d even (the API refuses an odd head_dim). */
  void (*qk_qpanel_bf16)(const uint16_t *qp, int rows, const void *const *krows, int keys, int d, int dp, float *s,
                         int64_t s_ld);
} hopei_cpu_kernels_t;

/* The kernels for this call into *out: HOPE_CPU_ISA if set, else the best path the CPU supports. A value
 * that names no path is INVALID_VALUE, a path this CPU cannot run NOT_SUPPORTED (messages name `fn`). */
hope_status_t hopei_cpu_kernels(const char *fn, const hopei_cpu_kernels_t **out);
/* Whether this CPU can run `isa`. */
bool hopei_cpu_isa_supported(hopei_isa_t isa);

/* The tables (kernels_*.c); NULL where the compiler or architecture cannot build that path. */
const hopei_cpu_kernels_t *hopei_cpu_kernels_portable(void);
const hopei_cpu_kernels_t *hopei_cpu_kernels_avx2(void);
const hopei_cpu_kernels_t *hopei_cpu_kernels_avx512(void);
const hopei_cpu_kernels_t *hopei_cpu_kernels_avx512bf16(void);

/* Portable packers (pack.c): the fallbacks every table may use. */
void hopei_pack_k_f32_generic(const void *const *rows, int n, int32_t dtype, int d, int dp, float *dst);
void hopei_pack_v_f32_generic(const void *const *rows, int n, int32_t dtype, int d, int dp, float *dst);
void hopei_pack_k_bf16_generic(const void *const *rows, int n, int d, int dp, uint16_t *dst);
void hopei_pack_v_bf16_generic(const void *const *rows, int n, int d, int dp, uint16_t *dst);
/* One float32 row (d values) into a packed row of the mode (dp values, zero padded). In BF16 mode the values
 * must be bfloat16 values already (as hopei_cpu_rotate_row rounds them): their top halves are kept. */
void hopei_pack_row(const float *src, int d, int dp, hopei_mode_t mode, void *dst);

/* ---- rotation (rotate.c): THE q/k rotation of the CPU backend (SPEC §4, §8) ---------------------------- */

/* dst[0..d) = the row src (head_dim d values in `dtype`) rotated in float32 by cos/sin ([rotary_dim/2]
 * values of this token; NULL: no rotation, a plain conversion). pairing: hope_rope_pairing_t (rotate-half
 * pairs (i, i + r/2), interleaved pairs (2i, 2i + 1)); rotary_dim 0 means d; dims rotary_dim..d pass through.
 * round_to_dtype: round each result to `dtype` (the value a float16/bfloat16 attention multiplies). */
void hopei_cpu_rotate_row(const void *src, int32_t dtype, int d, const float *cos, const float *sin,
                          int32_t pairing, int32_t rotary_dim, bool round_to_dtype, float *dst);
/* The value x takes once stored in `dtype` and read back. */
float hopei_round_to_dtype(float x, int32_t dtype);
/* dst[at .. at + n) (elements of `dtype`) = x rounded to the dtype (nearest even). */
void hopei_store_row(void *dst, int32_t dtype, int64_t at, const float *x, int n);

/* ---- the online-softmax block (flash.c), shared by prefill and decode ------------------------------- */

/* K/V of keys [key0, key0 + n) (n <= the block size) as panels: `k` and `v` point at the block's first chunk.
 * Prefill returns pointers into panels packed beforehand. */
typedef void (*hopei_kv_block_fn)(void *ctx, int64_t key0, int n, const void **k, const void **v);

typedef struct {
  const hopei_cpu_kernels_t *kern;
  hopei_mode_t mode;
  int dp;            /* padded head_dim */
  int block_keys;    /* keys per K/V block: a multiple of 16, fixed per call (never by thread count) */
  float scale;       /* softmax scale, > 0 */
} hopei_flash_cfg_t;

/* The running state of a set of query rows: m, l [rows] (running max of the raw scores, running sum), o the
 * [rows][dp] float32 accumulator at row stride o_ld. */
typedef struct {
  float *m, *l, *o;
  int64_t o_ld;
} hopei_flash_state_t;

/* Per-thread scratch of hopei_flash_block (S and P of one block) and of hopei_flash_rows (that plus m and l)
 * for up to `rows` rows, in bytes; 64-byte aligned scratch. */
size_t hopei_flash_block_scratch_bytes(const hopei_flash_cfg_t *cfg, int rows);
size_t hopei_flash_scratch_bytes(const hopei_flash_cfg_t *cfg, int rows);

/* The attention state of `rows` query rows (packed Q rows q, row stride q_ld) over keys [key_begin, key_end):
 * row r sees the keys n < last[r] + 1 (and n >= key_begin); last[r] < key_begin means none.
 * On return o[r][0..dp) holds the normalised output (0 when no key was visible), lse_out[r] the lse in natural
 * log (-inf when none). The blocks of keys are [key_begin + j * block_keys, key_begin + (j + 1) * block_keys)
 * clipped to key_end, and a row's result depends only on its own q, its keys and that block structure, never
 * on which rows share the call or which thread runs it. */
void hopei_flash_rows(const hopei_flash_cfg_t *cfg, const void *q, int64_t q_ld, int rows, const int64_t *last,
                      int64_t key_begin, int64_t key_end, hopei_kv_block_fn kv, void *kv_ctx, void *scratch,
                      float *o, int64_t o_ld, float *lse_out);

/* hopei_flash_rows in its three steps: begin (m = -inf, l = 0, o = 0), one block of keys [k0, k0 + n) given as
 * panels (n <= block_keys; rows that see none of them are left unchanged), end (o normalised, lse). A driver
 * calling them must give the same block structure as hopei_flash_rows would for the same result. */
void hopei_flash_begin(const hopei_flash_cfg_t *cfg, const hopei_flash_state_t *st, int rows);
void hopei_flash_block(const hopei_flash_cfg_t *cfg, const hopei_flash_state_t *st, const void *q, int64_t q_ld,
                       int rows, const int64_t *last, int64_t k0, int n, const void *kp, const void *vp,
                       void *scratch);
void hopei_flash_end(const hopei_flash_cfg_t *cfg, const hopei_flash_state_t *st, int rows, float *lse_out);
/* The block's two steps around the matrix products, for a driver with its own Q.K^T and P.V (decode on cache
 * rows): the S [rows][block_keys] float32 buffer the scores go to and the P buffer (bfloat16 in BF16 mode, the
 * same float32 array as S in F32 mode) in the scratch; the softmax (S -> P, m, l updated, o rescaled; P is 0
 * for keys a row does not see and for the padding up to a multiple of 16 keys). */
void hopei_flash_block_buffers(const hopei_flash_cfg_t *cfg, int rows, void *scratch, float **s, void **p);
void hopei_flash_softmax(const hopei_flash_cfg_t *cfg, const hopei_flash_state_t *st, int rows, const int64_t *last,
                         int64_t k0, int n, void *scratch);
/* Whether any of the rows sees key key0 or a later one. */
bool hopei_flash_block_visible(int rows, const int64_t *last, int64_t key0);

#ifdef __cplusplus
}
#endif

#endif /* HOPE_CPU_KERNELS_H_ */
