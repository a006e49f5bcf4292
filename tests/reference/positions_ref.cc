// positions_ref.cc — float64 reference of SPEC §1 (positions) and §2 (temporal scale selection).
// Written from the SPEC alone: it walks every token (f, y, x) of every block, keeps absolute positions in
// double, and takes the resume point as a running maximum over the values it actually produced.
#include <algorithm>
#include <cmath>
#include <limits>

#include "reference.h"

namespace hope_ref {

namespace {

void push(Positions *p, double t, double h, double w) {
  p->t.push_back(t);
  p->h.push_back(h);
  p->w.push_back(w);
}

bool is_vision(const hope_segment_t &s) { return s.kind == HOPE_SEGMENT_IMAGE || s.kind == HOPE_SEGMENT_VIDEO; }

}  // namespace

Positions build_positions(const std::vector<hope_segment_t> &segments, hope_layout_t layout,
                          double default_temporal_scale, double start) {
  Positions out;
  double text_pos = start;  // where the next text token (or the next block) starts
  for (const hope_segment_t &seg : segments) {
    if (!is_vision(seg)) {
      for (int32_t j = 0; j < seg.length; ++j) push(&out, text_pos + j, text_pos + j, text_pos + j);
      text_pos += seg.length;
      continue;
    }
    const int T = seg.grid_t, H = seg.grid_h, W = seg.grid_w;
    const double base = text_pos;
    if (layout == HOPE_LAYOUT_SEQUENTIAL) {
      // Plain 1-D: token k of the whole sequence is k; the block just continues the count.
      double k = base;
      for (int f = 0; f < T; ++f)
        for (int y = 0; y < H; ++y)
          for (int x = 0; x < W; ++x, k += 1.0) push(&out, k, k, k);
      text_pos = k;
    } else if (layout == HOPE_LAYOUT_MROPE) {
      double largest = -std::numeric_limits<double>::infinity();
      for (int f = 0; f < T; ++f)
        for (int y = 0; y < H; ++y)
          for (int x = 0; x < W; ++x) {
            const double t = base + f, h = base + y, w = base + x;
            push(&out, t, h, w);
            largest = std::max({largest, t, h, w});
          }
      text_pos = largest + 1.0;
    } else {  // diagonal
      const double s = seg.temporal_scale > 0.0f ? static_cast<double>(seg.temporal_scale) : default_temporal_scale;
      const double center_h = std::floor((H - 1) / 2.0), center_w = std::floor((W - 1) / 2.0);
      double largest_t = -std::numeric_limits<double>::infinity();
      for (int f = 0; f < T; ++f)
        for (int y = 0; y < H; ++y)
          for (int x = 0; x < W; ++x) {
            const double t = base + f * s;
            push(&out, t, t + y - center_h, t + x - center_w);
            largest_t = std::max(largest_t, t);
          }
      text_pos = largest_t + 1.0;
    }
  }
  out.next_position = text_pos;
  return out;
}

double timed_frame_offset(int64_t f, float g, float r) {
  // Each float32 product is the exact product (exact in double: 24 + 24 bits) rounded once to float32, which is
  // what an IEEE float32 multiply returns; the frame index is first converted to float32 as torch promotes the
  // int64 arange. Truncation toward zero is what .long() does.
  const float ff = static_cast<float>(static_cast<double>(f));
  const float fg = static_cast<float>(static_cast<double>(ff) * static_cast<double>(g));
  const float fgr = static_cast<float>(static_cast<double>(fg) * static_cast<double>(r));
  return std::trunc(static_cast<double>(fgr));
}

Positions build_positions_timed(const std::vector<hope_segment_t> &segments, const std::vector<float> &seconds_per_grid,
                                float tokens_per_second, double start) {
  Positions out;
  double text_pos = start;
  for (size_t i = 0; i < segments.size(); ++i) {
    const hope_segment_t &seg = segments[i];
    if (!is_vision(seg)) {
      for (int32_t j = 0; j < seg.length; ++j) push(&out, text_pos + j, text_pos + j, text_pos + j);
      text_pos += seg.length;
      continue;
    }
    // A block as in plain M-RoPE, except that frame f sits at the truncated time offset; the next text starts
    // one past the largest value any row of the block took.
    const float g = seg.kind == HOPE_SEGMENT_VIDEO ? seconds_per_grid[i] : 0.0f;
    const double base = text_pos;
    double largest = -std::numeric_limits<double>::infinity();
    for (int f = 0; f < seg.grid_t; ++f)
      for (int y = 0; y < seg.grid_h; ++y)
        for (int x = 0; x < seg.grid_w; ++x) {
          const double t = base + timed_frame_offset(f, g, tokens_per_second), h = base + y, w = base + x;
          push(&out, t, h, w);
          largest = std::max({largest, t, h, w});
        }
    text_pos = largest + 1.0;
  }
  out.next_position = text_pos;
  return out;
}

uint64_t splitmix64_next(uint64_t *state) {
  *state += UINT64_C(0x9E3779B97F4A7C15);
  uint64_t z = *state;
  z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
  z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
  z ^= z >> 31;
  return z;
}

std::vector<double> select_scales(const hope_scale_params_t &params, const std::vector<hope_segment_t> &segments) {
  std::vector<double> cands;
  if (params.num_candidates == 0) {
    cands = {0.5, 0.75, 1.0, 1.25, 1.5};
  } else {
    for (int32_t c = 0; c < params.num_candidates; ++c) cands.push_back(params.candidates[c]);
  }
  std::vector<double> out(segments.size(), 0.0);
  if (params.policy == HOPE_SCALE_FIXED) {
    for (size_t i = 0; i < segments.size(); ++i)
      if (is_vision(segments[i])) out[i] = params.fixed_scale;
  } else if (params.policy == HOPE_SCALE_RANDOM) {
    uint64_t state = params.seed;
    for (size_t i = 0; i < segments.size(); ++i)
      if (is_vision(segments[i])) out[i] = cands[splitmix64_next(&state) % cands.size()];
  } else {  // fit: try candidates from the largest down; the first that fits wins
    std::vector<double> order = cands;
    std::sort(order.begin(), order.end(), [](double a, double b) { return a > b; });
    double pick = order.back();
    for (double c : order) {
      std::vector<hope_segment_t> trial = segments;
      for (hope_segment_t &s : trial)
        if (is_vision(s)) s.temporal_scale = static_cast<float>(c);
      const double next = build_positions(trial, HOPE_LAYOUT_DIAGONAL, c, params.start).next_position;
      // The library reports next_position as float32; the budget is compared with that value.
      if (static_cast<double>(static_cast<float>(next)) <= params.position_budget) {
        pick = c;
        break;
      }
    }
    for (size_t i = 0; i < segments.size(); ++i)
      if (is_vision(segments[i])) out[i] = pick;
  }
  return out;
}

}  // namespace hope_ref
