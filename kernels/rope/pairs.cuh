// pairs.cuh — SPEC §8's rotary layout of a head on the device (and host): which two dims each "unit" covers.
//
// A head of head_dim dims splits into head_dim / 2 units. Unit u < rot_half is rotary pair u: dims (a, b) =
// (u, u + rot_half) with rotate-half pairing or (2u, 2u + 1) with interleaved pairing, rotated by cos/sin[u] of a
// table row of rot_half entries. A unit u >= rot_half holds two dims past rotary_dim, (rot + 2(u - rot_half),
// rot + 2(u - rot_half) + 1), which pass through unchanged. So a loop over units touches every dim exactly once,
// whatever the pairing and rotary dimension, and the default (rotate-half over the whole head) is today's
// (i, i + head_dim/2) loop.
#pragma once

#include <cstdint>

#include "hope_attn.h"

namespace hope {

struct RotaryLayout {
  int32_t rot;       // rotary_dim (resolved: 2..head_dim, even)
  int32_t rot_half;  // rotary_dim / 2: the width of a cos/sin row
  int32_t step;      // first dim of pair u is u * step: 1 rotate-half, 2 interleaved
  int32_t partner;   // second dim = first + partner: rot_half (rotate-half) or 1 (interleaved)
};

// rotary_dim 0 means head_dim (resolved values pass through).
__host__ __device__ inline RotaryLayout make_rotary_layout(int32_t head_dim, int32_t pairing, int32_t rotary_dim) {
  RotaryLayout l;
  l.rot = rotary_dim != 0 ? rotary_dim : head_dim;
  l.rot_half = l.rot / 2;
  const bool interleaved = pairing == HOPE_PAIRING_INTERLEAVED;
  l.step = interleaved ? 2 : 1;
  l.partner = interleaved ? 1 : l.rot_half;
  return l;
}

// True for rotate-half over the whole head: the layout every 16-byte fast path of the kernels was written for.
__host__ __device__ inline bool is_full_rotate_half(const RotaryLayout &l, int32_t head_dim) {
  return l.rot == head_dim && l.step == 1;
}

// The dims (a, b) of unit u; true when they form rotary pair u, false when they pass through.
__host__ __device__ __forceinline__ bool rotary_unit(const RotaryLayout &l, int32_t u, int32_t *a, int32_t *b) {
  if (u < l.rot_half) {
    *a = u * l.step;
    *b = *a + l.partner;
    return true;
  }
  *a = l.rot + 2 * (u - l.rot_half);
  *b = *a + 1;
  return false;
}

}  // namespace hope
