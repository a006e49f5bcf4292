/* positions.c — segments -> (t, h, w) position rows (SPEC §1), positions of generated tokens, and the
 * vision-grid helper.
 *
 * Every value is computed as an offset from `start` in double and rounded to float32 once, as
 * (float)(start + offset). Offsets are sums of integers, frame * scale products and (timed M-RoPE) truncated
 * float32 products, which are exact in double for any realistic sequence, so each stored value is the float32
 * rounding of the exact math.
 *
 * Two helpers are shared with scales.c (declared in internal.h):
 *   hopei_segments_check          validation and token count of a segment list;
 *   hopei_positions_check_range   the build's range check and next_position, optionally with one forced scale. */
#include <math.h>

#include "internal.h"

/* ---- validation ---------------------------------------------------------------------------------------- */

static const char *kind_name(int32_t kind) {
  switch (kind) {
    case HOPE_SEGMENT_TEXT: return "text";
    case HOPE_SEGMENT_IMAGE: return "image";
    case HOPE_SEGMENT_VIDEO: return "video";
  }
  return "unknown";
}

/* Checks every segment (SPEC §1 "Valid input") and sums the token count (<= 2^31 - 1). */
hope_status_t hopei_segments_check(const char *fn, const hope_segment_t *segments, int32_t num_segments,
                                   int64_t *num_tokens) {
  HOPEI_CHECK(num_segments >= 0, "%s: num_segments must be >= 0 (got %d)", fn, (int)num_segments);
  HOPEI_CHECK(segments != NULL || num_segments == 0,
              "%s: segments must not be NULL when num_segments is %d", fn, (int)num_segments);
  int64_t total = 0;
  for (int32_t i = 0; i < num_segments; ++i) {
    const hope_segment_t *s = &segments[i];
    int64_t n = 0;
    switch (s->kind) {
      case HOPE_SEGMENT_TEXT:
        HOPEI_CHECK(s->length >= 0, "%s: segments[%d] (text) has length %d; must be >= 0", fn, (int)i,
                    (int)s->length);
        n = s->length;
        break;
      case HOPE_SEGMENT_IMAGE:
      case HOPE_SEGMENT_VIDEO:
        HOPEI_CHECK(s->grid_t >= 1 && s->grid_h >= 1 && s->grid_w >= 1,
                    "%s: segments[%d] (%s) has grid %d x %d x %d; grid_t, grid_h and grid_w must be >= 1", fn,
                    (int)i, kind_name(s->kind), (int)s->grid_t, (int)s->grid_h, (int)s->grid_w);
        HOPEI_CHECK(s->kind != HOPE_SEGMENT_IMAGE || s->grid_t == 1,
                    "%s: segments[%d] is an image with grid_t = %d; an image has grid_t == 1", fn, (int)i,
                    (int)s->grid_t);
        HOPEI_CHECK(isfinite(s->temporal_scale), "%s: segments[%d] (%s) has temporal_scale %g; must be finite",
                    fn, (int)i, kind_name(s->kind), (double)s->temporal_scale);
        if (!hopei_mul_i64(s->grid_t, s->grid_h, &n) || !hopei_mul_i64(n, s->grid_w, &n)) n = INT64_MAX;
        break;
      default:
        return hopei_fail(HOPE_ERROR_INVALID_VALUE,
                          "%s: segments[%d] has unknown kind %d (expected HOPE_SEGMENT_TEXT, _IMAGE or _VIDEO)", fn,
                          (int)i, (int)s->kind);
    }
    HOPEI_CHECK(n <= INT32_MAX && hopei_add_i64(total, n, &total) && total <= INT32_MAX,
                "%s: the sequence has more than 2^31 - 1 tokens (limit passed at segments[%d], a %s segment)", fn,
                (int)i, kind_name(s->kind));
  }
  if (num_tokens != NULL) *num_tokens = total;
  return HOPE_SUCCESS;
}

static bool layout_valid(int32_t layout) {
  return layout == HOPE_LAYOUT_SEQUENTIAL || layout == HOPE_LAYOUT_MROPE || layout == HOPE_LAYOUT_DIAGONAL ||
         layout == HOPE_LAYOUT_MROPE_TIMED;
}

/* ---- the layout rules ---------------------------------------------------------------------------------- */

/* Everything a layout rule needs besides the segment itself. */
typedef struct {
  hope_layout_t layout;
  double default_scale;          /* diagonal */
  double forced_scale;           /* diagonal: > 0 overrides every segment's own scale */
  const float *seconds_per_grid; /* timed: [num_segments] (NULL only when the list holds no video) */
  float tokens_per_second;       /* timed */
} layout_ctx_t;

static int64_t vision_tokens(const hope_segment_t *s) {
  return (int64_t)s->grid_t * s->grid_h * s->grid_w; /* validated: <= 2^31 - 1 */
}

/* The diagonal scale of a vision segment: forced_scale when > 0, else its own when > 0, else the default. */
static double segment_scale(const layout_ctx_t *c, const hope_segment_t *s) {
  if (c->forced_scale > 0.0) return c->forced_scale;
  return s->temporal_scale > 0.0f ? (double)s->temporal_scale : c->default_scale;
}

/* Timed M-RoPE (SPEC §8): the t offset of frame f, trunc(float32(float32(f * g) * r)) as PyTorch evaluates
 * `(torch.arange(T) * g * r).long()` in float32. Each assignment to a float rounds to float32 (C11 5.2.4.2.2:
 * casts and assignments drop any excess precision), so this is the float32 product on every platform. */
static double timed_offset(int32_t f, float g, float r) {
  const float fg = (float)f * g;
  const float fgr = fg * r;
  return (double)truncf(fgr);
}

/* The seconds per grid of segment i in the timed layout (images: 0, their only frame is f = 0). */
static float segment_interval(const layout_ctx_t *c, const hope_segment_t *s, int32_t i) {
  return s->kind == HOPE_SEGMENT_VIDEO ? c->seconds_per_grid[i] : 0.0f;
}

/* Largest offset above `base` that any row of vision segment i takes in the M-RoPE layouts. */
static double mrope_block_top(const layout_ctx_t *c, const hope_segment_t *s, int32_t i) {
  double top = (double)(s->grid_h > s->grid_w ? s->grid_h : s->grid_w) - 1.0;
  /* t is non-decreasing in f (rounding and truncation are monotonic), so the last frame has the largest t. */
  const double t_top = c->layout == HOPE_LAYOUT_MROPE_TIMED
                           ? timed_offset(s->grid_t - 1, segment_interval(c, s, i), c->tokens_per_second)
                           : (double)(s->grid_t - 1);
  return t_top > top ? t_top : top;
}

/* Offset at which the text after segment i resumes, given the offset `base` at which it starts. */
static double segment_end(const layout_ctx_t *c, const hope_segment_t *s, int32_t i, double base) {
  if (s->kind == HOPE_SEGMENT_TEXT) return base + (double)s->length;
  switch (c->layout) {
    case HOPE_LAYOUT_SEQUENTIAL: return base + (double)vision_tokens(s);
    case HOPE_LAYOUT_MROPE:
    case HOPE_LAYOUT_MROPE_TIMED: return base + mrope_block_top(c, s, i) + 1.0; /* 1 + the largest value */
    case HOPE_LAYOUT_DIAGONAL: return base + (double)(s->grid_t - 1) * segment_scale(c, s) + 1.0;
  }
  return base;
}

/* Smallest and largest offset any row takes inside segment i (non-empty). */
static void segment_extremes(const layout_ctx_t *c, const hope_segment_t *s, int32_t i, double base, double *lo,
                             double *hi) {
  if (s->kind == HOPE_SEGMENT_TEXT) {
    *lo = base;
    *hi = base + (double)(s->length - 1);
    return;
  }
  switch (c->layout) {
    case HOPE_LAYOUT_SEQUENTIAL:
      *lo = base;
      *hi = base + (double)(vision_tokens(s) - 1);
      return;
    case HOPE_LAYOUT_MROPE:
    case HOPE_LAYOUT_MROPE_TIMED:
      *lo = base;
      *hi = base + mrope_block_top(c, s, i);
      return;
    case HOPE_LAYOUT_DIAGONAL: {
      const int32_t ch = (s->grid_h - 1) / 2, cw = (s->grid_w - 1) / 2;
      const int32_t below = ch > cw ? ch : cw;
      const int32_t above_h = s->grid_h - 1 - ch, above_w = s->grid_w - 1 - cw;
      const double t_max = base + (double)(s->grid_t - 1) * segment_scale(c, s);
      *lo = base - (double)below;
      *hi = t_max + (double)(above_h > above_w ? above_h : above_w);
      return;
    }
  }
  *lo = *hi = base;
}

static inline float round_position(double start, double offset) { return (float)(start + offset); }

/* Writes the rows of vision segment i (M-RoPE layouts) from offset `base` at token k; returns the next k. */
static int64_t write_mrope_block(const layout_ctx_t *c, const hope_segment_t *s, int32_t i, double dstart,
                                 double base, float *row_t, float *row_h, float *row_w, int64_t k) {
  const float g = c->layout == HOPE_LAYOUT_MROPE_TIMED ? segment_interval(c, s, i) : 0.0f;
  for (int32_t f = 0; f < s->grid_t; ++f) {
    const double t_off = c->layout == HOPE_LAYOUT_MROPE_TIMED ? timed_offset(f, g, c->tokens_per_second) : f;
    const float t = round_position(dstart, base + t_off);
    for (int32_t y = 0; y < s->grid_h; ++y) {
      const float h = round_position(dstart, base + (double)y);
      for (int32_t x = 0; x < s->grid_w; ++x, ++k) {
        row_t[k] = t;
        row_h[k] = h;
        row_w[k] = round_position(dstart, base + (double)x);
      }
    }
  }
  return k;
}

/* Every value the segments take in the layout of `c` from `start`, and next_position (into *next), must be a finite
 * float32 (e.g. start near FLT_MAX, or huge scales or intervals): INVALID_VALUE naming the segment otherwise. */
static hope_status_t check_range(const char *fn, const layout_ctx_t *c, const hope_segment_t *segments,
                                 int32_t num_segments, float start, float *next) {
  const double dstart = (double)start;
  double base = 0.0;
  for (int32_t i = 0; i < num_segments; ++i) {
    const hope_segment_t *s = &segments[i];
    if (s->kind != HOPE_SEGMENT_TEXT || s->length > 0) {
      double lo, hi;
      segment_extremes(c, s, i, base, &lo, &hi);
      HOPEI_CHECK(isfinite(round_position(dstart, lo)) && isfinite(round_position(dstart, hi)),
                  "%s: segments[%d] (%s) takes positions beyond the float32 range (start %g)", fn, (int)i,
                  kind_name(s->kind), (double)start);
    }
    base = segment_end(c, s, i, base);
  }
  *next = round_position(dstart, base);
  HOPEI_CHECK(isfinite(*next), "%s: next_position overflows float32 (start %g)", fn, (double)start);
  return HOPE_SUCCESS;
}

hope_status_t hopei_positions_check_range(const char *fn, const hope_segment_t *segments, int32_t num_segments,
                                          hope_layout_t layout, double default_scale, double forced_scale,
                                          float start, float *next_position) {
  const layout_ctx_t c = {layout, default_scale, forced_scale, NULL, 0.0f};
  return check_range(fn, &c, segments, num_segments, start, next_position);
}

/* Builds validated segments (count tokens) in the layout of `c` from `start`. */
static hope_status_t build_rows(const char *fn, const layout_ctx_t *c, const hope_segment_t *segments,
                                int32_t num_segments, float start, float *positions, int64_t count,
                                float *next_position) {
  const double dstart = (double)start;
  float next = 0.0f;
  HOPEI_TRY(check_range(fn, c, segments, num_segments, start, &next));  /* first pass: nothing written yet */

  if (count == 0) { /* positions may be NULL: no pointer arithmetic on it */
    if (next_position != NULL) *next_position = next;
    return HOPE_SUCCESS;
  }

  /* Second pass: write the rows. */
  float *row_t = positions, *row_h = positions + count, *row_w = positions + 2 * count;
  int64_t k = 0;
  double base = 0.0;
  for (int32_t i = 0; i < num_segments; ++i) {
    const hope_segment_t *s = &segments[i];
    if (s->kind == HOPE_SEGMENT_TEXT || c->layout == HOPE_LAYOUT_SEQUENTIAL) {
      const int64_t n = s->kind == HOPE_SEGMENT_TEXT ? s->length : vision_tokens(s);
      for (int64_t j = 0; j < n; ++j, ++k) {
        const float p = round_position(dstart, base + (double)j);
        row_t[k] = p;
        row_h[k] = p;
        row_w[k] = p;
      }
    } else if (c->layout == HOPE_LAYOUT_MROPE || c->layout == HOPE_LAYOUT_MROPE_TIMED) {
      k = write_mrope_block(c, s, i, dstart, base, row_t, row_h, row_w, k);
    } else { /* diagonal */
      const double scale = segment_scale(c, s);
      const int32_t ch = (s->grid_h - 1) / 2, cw = (s->grid_w - 1) / 2;
      for (int32_t f = 0; f < s->grid_t; ++f) {
        const double t_off = base + (double)f * scale;
        const float t = round_position(dstart, t_off);
        for (int32_t y = 0; y < s->grid_h; ++y) {
          const float h = round_position(dstart, t_off + (double)(y - ch));
          for (int32_t x = 0; x < s->grid_w; ++x, ++k) {
            row_t[k] = t;
            row_h[k] = h;
            row_w[k] = round_position(dstart, t_off + (double)(x - cw));
          }
        }
      }
    }
    base = segment_end(c, s, i, base);
  }
  if (k != count) return hopei_fail(HOPE_ERROR_INTERNAL, "%s: wrote %lld tokens, expected %lld", fn, (long long)k,
                                    (long long)count);
  if (next_position != NULL) *next_position = next;
  return HOPE_SUCCESS;
}

/* The checks shared by both build calls once the layout and scale are known. */
static hope_status_t check_build_args(const char *fn, const hope_segment_t *segments, int32_t num_segments,
                                      float start, const float *positions, int64_t num_tokens, int64_t *count) {
  HOPEI_CHECK(isfinite(start), "%s: start is %g; must be finite", fn, (double)start);
  HOPEI_TRY(hopei_segments_check(fn, segments, num_segments, count));
  HOPEI_CHECK(num_tokens == *count, "%s: num_tokens is %lld but the segments hold %lld tokens", fn,
              (long long)num_tokens, (long long)*count);
  HOPEI_CHECK(positions != NULL || *count == 0, "%s: positions must not be NULL (the segments hold %lld tokens)",
              fn, (long long)*count);
  return HOPE_SUCCESS;
}

/* ---- public entry points ------------------------------------------------------------------------------- */

hope_status_t hope_positions_count(const hope_segment_t *segments, int32_t num_segments, int64_t *num_tokens) {
  HOPEI_NVTX_SCOPE(HOPEI_RANGE_POSITIONS_COUNT);
  static const char fn[] = "hope_positions_count";
  HOPEI_CHECK_NOT_NULL(fn, num_tokens);
  return hopei_segments_check(fn, segments, num_segments, num_tokens);
}

hope_status_t hope_positions_build(const hope_segment_t *segments, int32_t num_segments, hope_layout_t layout,
                                   float default_temporal_scale, float start, float *positions,
                                   int64_t num_tokens, float *next_position) {
  HOPEI_NVTX_SCOPE(HOPEI_RANGE_POSITIONS_BUILD);
  static const char fn[] = "hope_positions_build";
  HOPEI_CHECK(layout != HOPE_LAYOUT_MROPE_TIMED,
              "%s: HOPE_LAYOUT_MROPE_TIMED needs each video's seconds per grid and the tokens per second: use "
              "hope_positions_build_ex", fn);
  HOPEI_CHECK(layout_valid((int32_t)layout),
              "%s: layout %d is unknown (expected HOPE_LAYOUT_SEQUENTIAL, _MROPE or _DIAGONAL)", fn, (int)layout);
  HOPEI_CHECK(isfinite(default_temporal_scale) && default_temporal_scale > 0.0f,
              "%s: default_temporal_scale is %g; must be finite and > 0", fn, (double)default_temporal_scale);
  int64_t count = 0;
  HOPEI_TRY(check_build_args(fn, segments, num_segments, start, positions, num_tokens, &count));
  const layout_ctx_t c = {layout, (double)default_temporal_scale, 0.0, NULL, 0.0f};
  return build_rows(fn, &c, segments, num_segments, start, positions, count, next_position);
}

hope_status_t hope_positions_build_ex(const hope_positions_params_t *params, const hope_segment_t *segments,
                                      int32_t num_segments, float *positions, int64_t num_tokens,
                                      float *next_position) {
  HOPEI_NVTX_SCOPE(HOPEI_RANGE_POSITIONS_BUILD_EX);
  static const char fn[] = "hope_positions_build_ex";
  HOPEI_CHECK_NOT_NULL(fn, params);
  const hope_positions_params_t p = *params;
  HOPEI_CHECK(layout_valid(p.layout),
              "%s: params->layout %d is unknown (expected HOPE_LAYOUT_SEQUENTIAL, _MROPE, _DIAGONAL or _MROPE_TIMED)",
              fn, (int)p.layout);
  HOPEI_CHECK(p.default_temporal_scale == 0.0f ||
                  (isfinite(p.default_temporal_scale) && p.default_temporal_scale > 0.0f),
              "%s: params->default_temporal_scale is %g; must be 0 (1.0) or finite and > 0", fn,
              (double)p.default_temporal_scale);
  int64_t count = 0;
  HOPEI_TRY(check_build_args(fn, segments, num_segments, p.start, positions, num_tokens, &count));
  if (p.layout == HOPE_LAYOUT_MROPE_TIMED) {
    HOPEI_CHECK(isfinite(p.tokens_per_second) && p.tokens_per_second > 0.0f,
                "%s: params->tokens_per_second is %g; must be finite and > 0 (2 for Qwen2.5-VL, 25 for "
                "Qwen2.5-Omni)", fn, (double)p.tokens_per_second);
    for (int32_t i = 0; i < num_segments; ++i) {
      if (segments[i].kind != HOPE_SEGMENT_VIDEO) continue;
      HOPEI_CHECK(p.seconds_per_grid != NULL,
                  "%s: params->seconds_per_grid must not be NULL: segments[%d] is a video (pass 1.0 per video "
                  "for transformers' default)", fn, (int)i);
      const float g = p.seconds_per_grid[i];
      HOPEI_CHECK(isfinite(g) && g >= 0.0f,
                  "%s: params->seconds_per_grid[%d] is %g for segments[%d] (video); must be finite and >= 0", fn,
                  (int)i, (double)g, (int)i);
    }
  }
  const layout_ctx_t c = {(hope_layout_t)p.layout,
                          p.default_temporal_scale > 0.0f ? (double)p.default_temporal_scale : 1.0, 0.0,
                          p.seconds_per_grid, p.tokens_per_second};
  return build_rows(fn, &c, segments, num_segments, p.start, positions, count, next_position);
}

hope_status_t hope_positions_generated(float next_position, int64_t first, int64_t n, float *positions) {
  HOPEI_NVTX_SCOPE(HOPEI_RANGE_POSITIONS_GENERATED);
  static const char fn[] = "hope_positions_generated";
  HOPEI_CHECK(isfinite(next_position), "%s: next_position is %g; must be finite", fn, (double)next_position);
  HOPEI_CHECK(first >= 0, "%s: first must be >= 0 (got %lld)", fn, (long long)first);
  HOPEI_CHECK(n >= 0, "%s: n must be >= 0 (got %lld)", fn, (long long)n);
  int64_t end = 0, size = 0;
  HOPEI_CHECK(hopei_add_i64(first, n, &end) && hopei_mul_i64(n, 3, &size),
              "%s: first (%lld) + n (%lld) is too large", fn, (long long)first, (long long)n);
  if (n == 0) return HOPE_SUCCESS;
  HOPEI_CHECK_NOT_NULL(fn, positions);
  const double base = (double)next_position;
  for (int64_t j = 0; j < n; ++j) {
    const float p = (float)(base + (double)(first + j));
    positions[j] = p;
    positions[n + j] = p;
    positions[2 * n + j] = p;
  }
  return HOPE_SUCCESS;
}

/* The shared body of both vision-grid helpers; `fn` names the caller in messages. */
static hope_status_t segment_from_grid(const char *fn, int32_t kind, int32_t grid_t, int32_t grid_h, int32_t grid_w,
                                       int32_t spatial_merge_size, int32_t temporal_merge_size, float temporal_scale,
                                       hope_segment_t *segment) {
  HOPEI_CHECK_NOT_NULL(fn, segment);
  HOPEI_CHECK(kind == HOPE_SEGMENT_IMAGE || kind == HOPE_SEGMENT_VIDEO,
              "%s: kind %d is not a vision kind (expected HOPE_SEGMENT_IMAGE or HOPE_SEGMENT_VIDEO)", fn, (int)kind);
  HOPEI_CHECK(spatial_merge_size >= 1, "%s: spatial_merge_size must be >= 1 (got %d)", fn, (int)spatial_merge_size);
  HOPEI_CHECK(temporal_merge_size >= 1, "%s: temporal_merge_size must be >= 1 (got %d)", fn,
              (int)temporal_merge_size);
  HOPEI_CHECK(grid_t >= 1 && grid_h >= 1 && grid_w >= 1,
              "%s: grid %d x %d x %d; grid_t, grid_h and grid_w must be >= 1", fn, (int)grid_t, (int)grid_h,
              (int)grid_w);
  HOPEI_CHECK(kind != HOPE_SEGMENT_IMAGE || grid_t == 1, "%s: an image has grid_t == 1 (got %d)", fn, (int)grid_t);
  HOPEI_CHECK(grid_h % spatial_merge_size == 0 && grid_w % spatial_merge_size == 0,
              "%s: spatial_merge_size %d does not divide grid_h %d and grid_w %d", fn, (int)spatial_merge_size,
              (int)grid_h, (int)grid_w);
  const int32_t t_merge = kind == HOPE_SEGMENT_VIDEO ? temporal_merge_size : 1; /* an image keeps its one frame */
  HOPEI_CHECK(grid_t % t_merge == 0, "%s: temporal_merge_size %d does not divide the video's grid_t %d", fn,
              (int)t_merge, (int)grid_t);
  HOPEI_CHECK(isfinite(temporal_scale), "%s: temporal_scale is %g; must be finite", fn, (double)temporal_scale);
  hope_segment_t s;
  s.kind = kind;
  s.length = 0;
  s.grid_t = grid_t / t_merge;
  s.grid_h = grid_h / spatial_merge_size;
  s.grid_w = grid_w / spatial_merge_size;
  s.temporal_scale = temporal_scale;
  *segment = s;
  return HOPE_SUCCESS;
}

hope_status_t hope_segment_from_vision_grid(int32_t kind, int32_t grid_t, int32_t grid_h, int32_t grid_w,
                                            int32_t spatial_merge_size, float temporal_scale,
                                            hope_segment_t *segment) {
  HOPEI_NVTX_SCOPE(HOPEI_RANGE_SEGMENT_FROM_GRID);
  return segment_from_grid("hope_segment_from_vision_grid", kind, grid_t, grid_h, grid_w, spatial_merge_size, 1,
                           temporal_scale, segment);
}

hope_status_t hope_segment_from_vision_grid_ex(int32_t kind, int32_t grid_t, int32_t grid_h, int32_t grid_w,
                                               int32_t spatial_merge_size, int32_t temporal_merge_size,
                                               float temporal_scale, hope_segment_t *segment) {
  HOPEI_NVTX_SCOPE(HOPEI_RANGE_SEGMENT_FROM_GRID_EX);
  return segment_from_grid("hope_segment_from_vision_grid_ex", kind, grid_t, grid_h, grid_w, spatial_merge_size,
                           temporal_merge_size, temporal_scale, segment);
}
