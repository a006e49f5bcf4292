/* scales.c — temporal scale selection (SPEC §2): fixed, random (splitmix64) and fit-to-budget policies. */
#include <math.h>

#include "internal.h"

static const float kDefaultCandidates[] = HOPE_DEFAULT_SCALE_CANDIDATES;

/* The documented generator: one call per vision segment, in order. */
static uint64_t splitmix64_next(uint64_t *state) {
  *state += 0x9E3779B97F4A7C15ull;
  uint64_t z = *state;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

static bool is_vision(const hope_segment_t *s) {
  return s->kind == HOPE_SEGMENT_IMAGE || s->kind == HOPE_SEGMENT_VIDEO;
}

hope_status_t hope_temporal_scales_select(const hope_scale_params_t *params, hope_segment_t *segments,
                                          int32_t num_segments, float *chosen) {
  HOPEI_NVTX_SCOPE(HOPEI_RANGE_SCALES_SELECT);
  static const char fn[] = "hope_temporal_scales_select";
  HOPEI_CHECK_NOT_NULL(fn, params);
  const int32_t policy = params->policy;
  HOPEI_CHECK(policy == HOPE_SCALE_FIXED || policy == HOPE_SCALE_RANDOM || policy == HOPE_SCALE_FIT,
              "%s: params->policy %d is unknown (expected HOPE_SCALE_FIXED, _RANDOM or _FIT)", fn, (int)policy);

  /* Candidates: the caller's, or the HoPE default set. */
  HOPEI_CHECK(params->num_candidates >= 0, "%s: params->num_candidates must be >= 0 (got %d)", fn,
              (int)params->num_candidates);
  const float *candidates = kDefaultCandidates;
  int32_t num_candidates = (int32_t)(sizeof kDefaultCandidates / sizeof kDefaultCandidates[0]);
  if (params->num_candidates > 0) {
    HOPEI_CHECK(params->candidates != NULL, "%s: params->candidates must not be NULL when num_candidates is %d",
                fn, (int)params->num_candidates);
    candidates = params->candidates;
    num_candidates = params->num_candidates;
    for (int32_t c = 0; c < num_candidates; ++c)
      HOPEI_CHECK(isfinite(candidates[c]) && candidates[c] > 0.0f,
                  "%s: params->candidates[%d] is %g; must be finite and > 0", fn, (int)c, (double)candidates[c]);
  }
  if (policy == HOPE_SCALE_FIXED)
    HOPEI_CHECK(isfinite(params->fixed_scale) && params->fixed_scale > 0.0f,
                "%s: params->fixed_scale is %g; must be finite and > 0 for HOPE_SCALE_FIXED", fn,
                (double)params->fixed_scale);
  if (policy == HOPE_SCALE_FIT) {
    HOPEI_CHECK(!isnan(params->position_budget), "%s: params->position_budget is NaN", fn);
    HOPEI_CHECK(isfinite(params->start), "%s: params->start is %g; must be finite for HOPE_SCALE_FIT", fn,
                (double)params->start);
  }
  HOPEI_TRY(hopei_segments_check(fn, segments, num_segments, NULL));

  /* Everything is valid: choose, then write. */
  float pick = 0.0f;
  switch (policy) {
    case HOPE_SCALE_FIXED:
      pick = params->fixed_scale;
      for (int32_t i = 0; i < num_segments; ++i)
        if (is_vision(&segments[i])) segments[i].temporal_scale = pick;
      break;
    case HOPE_SCALE_RANDOM: {
      uint64_t state = params->seed;
      bool first = true;
      for (int32_t i = 0; i < num_segments; ++i) {
        if (!is_vision(&segments[i])) continue;
        const float draw = candidates[splitmix64_next(&state) % (uint64_t)num_candidates];
        segments[i].temporal_scale = draw;
        if (first) pick = draw;
        first = false;
      }
      break;
    }
    case HOPE_SCALE_FIT: {
      /* Only candidates hope_positions_build accepts (every position a finite float32) take part: the largest
       * whose next_position fits the budget, else the smallest. */
      bool fits = false, buildable = false;
      float best = 0.0f, smallest = 0.0f;
      for (int32_t c = 0; c < num_candidates; ++c) {
        const float s = candidates[c];
        if (fits && s <= best) continue; /* once one fits, only a larger one can change the choice */
        float next = 0.0f;
        if (hopei_positions_check_range(fn, segments, num_segments, HOPE_LAYOUT_DIAGONAL, (double)s, (double)s,
                                        params->start, &next) != HOPE_SUCCESS)
          continue;
        if (!buildable || s < smallest) smallest = s;
        buildable = true;
        if ((double)next <= params->position_budget && (!fits || s > best)) {
          best = s;
          fits = true;
        }
      }
      HOPEI_CHECK(buildable,
                  "%s: HOPE_SCALE_FIT: every candidate scale puts positions beyond the float32 range (start %g), "
                  "so hope_positions_build would refuse each", fn, (double)params->start);
      pick = fits ? best : smallest;
      for (int32_t i = 0; i < num_segments; ++i)
        if (is_vision(&segments[i])) segments[i].temporal_scale = pick;
      break;
    }
  }
  if (chosen != NULL) *chosen = pick;
  return HOPE_SUCCESS;
}
