// tile_plan.h — the index arithmetic of the sm90 kernel's tiles, free of any device construct so that a host
// test (tests/test_sm90_tile_plan.cc) can check it exhaustively against the definition of the mask:
//   * a query tile covers rows [q_row0, q_row0 + BLOCK_M) of its sequence and writes rows >= m0; it never reaches
//     past the sequence end (the last tile of a sequence is shifted back: q_row0 = q_len - BLOCK_M, which may be
//     negative — those rows read as zeros);
//   * iteration i (from the highest key tile down) covers logical keys [n0, n0 + BLOCK_N), held from key row0
//     on (row0 = k_len - BLOCK_N < n0 for a shifted last tile, whose rows before n0 are masked as duplicates);
//   * key tiles no row of the query tile may see are not iterated; the first n_masked iterations need the mask.
#pragma once

#include <climits>
#include <cstdint>

// Host and device under nvcc; plain host functions for any other compiler (the host test builds without CUDA).
#ifdef __CUDACC__
#define HOPE_TILE_FN __host__ __device__ inline
#else
#define HOPE_TILE_FN inline
#endif

namespace hope {
namespace sm90 {

struct TilePlan {
  int q_row0;    // sequence row of the Q tile's first row
  int n_blocks;  // key tiles to process
  int n_masked;  // the first n_masked iterations need the mask
};

template <int BLOCK_M, int BLOCK_N>
HOPE_TILE_FN TilePlan plan_tile(int q_len, int k_len, int m0, bool causal) {
  TilePlan t;
  t.q_row0 = m0 + BLOCK_M > q_len ? q_len - BLOCK_M : m0;
  // Keys the tile's last row (q_row0 + BLOCK_M - 1) sees: all, or under the bottom-right causal mask those
  // n <= i + Nk - Nq. In int64: the sums may pass INT_MAX before the subtraction.
  const int64_t shift = static_cast<int64_t>(k_len) - q_len;
  int64_t n_end = k_len;
  if (causal) {
    const int64_t last = static_cast<int64_t>(t.q_row0) + BLOCK_M + shift;
    n_end = last < n_end ? last : n_end;
  }
  t.n_blocks = n_end > 0 ? static_cast<int>((n_end + BLOCK_N - 1) / BLOCK_N) : 0;
  // Tile j is mask-free when it is whole ((j + 1) BLOCK_N <= Nk) and, under the causal mask, entirely visible to
  // the first row this CTA writes ((j + 1) BLOCK_N - 1 <= m0 + shift). Both hold for every j below a bound.
  int64_t full = k_len / BLOCK_N;
  if (causal) {
    const int64_t x = static_cast<int64_t>(m0) + shift + 1;
    const int64_t f = x > 0 ? x / BLOCK_N : 0;
    full = f < full ? f : full;
  }
  t.n_masked = t.n_blocks - static_cast<int>(full < t.n_blocks ? full : t.n_blocks);
  return t;
}

struct KeyTile {
  int n0, row0;
};
template <int BLOCK_N>
HOPE_TILE_FN KeyTile key_tile(int n_blocks, int k_len, int i) {
  const int n0 = (n_blocks - 1 - i) * BLOCK_N;
  return {n0, n0 + BLOCK_N > k_len ? k_len - BLOCK_N : n0};
}

// The largest key index query row `q_token` may see (saturated to [-1, INT_MAX]; INT_MAX without the mask).
HOPE_TILE_FN int causal_limit(int q_token, int64_t shift, bool causal) {
  if (!causal) return INT_MAX;
  const int64_t l = q_token + shift;
  return static_cast<int>(l > INT_MAX ? INT_MAX : l < -1 ? -1 : l);
}

// Whether key `key` (held in shared memory by a tile of logical start n0) is masked for a row with `limit`.
HOPE_TILE_FN bool key_masked(int key, int n0, int limit) { return key < n0 || key > limit; }

}  // namespace sm90
}  // namespace hope
