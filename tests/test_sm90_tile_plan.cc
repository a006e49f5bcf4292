// test_sm90_tile_plan.cc — the sm90 kernel's tile arithmetic (kernels/attention/sm90/tile_plan.h) against the
// definition of the mask, on the host, for every query tile of many (Nq, Nk, causal) shapes and both key-tile
// widths the kernel uses. For every row a CTA writes, the keys its iterations leave unmasked must be exactly the
// keys SPEC §5 lets it see, each once; no tile may read a row past the end of its sequence; and every key tile
// iterated must hold a key that some written row sees (fully masked tiles are never loaded).
#include <climits>
#include <cstdint>
#include <vector>

#include <gtest/gtest.h>

#include "attention/sm90/tile_plan.h"

namespace {

using hope::sm90::causal_limit;
using hope::sm90::key_masked;
using hope::sm90::KeyTile;
using hope::sm90::TilePlan;

constexpr int kBlockM = 128;  // sm90::FwdTraits<D, T>::kBlockM for every D

template <int BLOCK_N>
void check_shape(int q_len, int k_len, bool causal) {
  const int64_t shift = static_cast<int64_t>(k_len) - q_len;
  for (int m0 = 0; m0 < q_len; m0 += kBlockM) {
    SCOPED_TRACE(::testing::Message() << "Nq " << q_len << " Nk " << k_len << (causal ? " causal" : "") << " m0 "
                                      << m0 << " BLOCK_N " << BLOCK_N);
    const TilePlan t = hope::sm90::plan_tile<kBlockM, BLOCK_N>(q_len, k_len, m0, causal);
    ASSERT_LE(t.q_row0, m0);
    ASSERT_LE(t.q_row0 + kBlockM, q_len) << "the Q tile reads past the sequence";
    if (m0 + kBlockM <= q_len) ASSERT_EQ(t.q_row0, m0) << "only the last tile is shifted";
    ASSERT_GE(t.n_blocks, 0);
    ASSERT_GE(t.n_masked, 0);
    ASSERT_LE(t.n_masked, t.n_blocks);
    const int rows_end = m0 + kBlockM < q_len ? m0 + kBlockM : q_len;
    std::vector<int> seen_by_some_row(static_cast<size_t>(t.n_blocks), 0);
    for (int tok = m0; tok < rows_end; ++tok) {
      const int limit = causal_limit(tok, shift, causal);
      std::vector<int> count(static_cast<size_t>(k_len), 0);
      for (int i = 0; i < t.n_blocks; ++i) {
        const KeyTile kt = hope::sm90::key_tile<BLOCK_N>(t.n_blocks, k_len, i);
        ASSERT_LE(kt.row0 + BLOCK_N, k_len) << "iteration " << i << " reads past the keys";
        ASSERT_LE(kt.row0, kt.n0);
        for (int c = 0; c < BLOCK_N; ++c) {
          const int key = kt.row0 + c;
          const bool masked = i < t.n_masked && key_masked(key, kt.n0, limit);
          if (masked) continue;
          ASSERT_GE(key, 0) << "iteration " << i << " leaves a row before the sequence unmasked";
          ASSERT_LT(key, k_len);
          ASSERT_TRUE(!causal || key <= tok + shift) << "iteration " << i << " (mask-free) shows key " << key;
          ++count[static_cast<size_t>(key)];
          seen_by_some_row[static_cast<size_t>(i)] = 1;
        }
      }
      for (int n = 0; n < k_len; ++n) {
        const bool visible = !causal || n <= tok + shift;
        ASSERT_EQ(count[static_cast<size_t>(n)], visible ? 1 : 0) << "row " << tok << " key " << n;
      }
    }
    for (int i = 0; i < t.n_blocks; ++i)
      EXPECT_TRUE(seen_by_some_row[static_cast<size_t>(i)]) << "iteration " << i << " loads a tile no row sees";
  }
}

TEST(Sm90TilePlan, MasksCoverExactlyTheVisibleKeys) {
  const int lens[] = {1, 2, 7, 63, 64, 65, 127, 128, 129, 200, 255, 256, 257, 300, 513};
  for (int q_len : lens)
    for (int k_len : {0, 1, 7, 63, 64, 65, 127, 128, 129, 200, 256, 300, 513})
      for (bool causal : {false, true}) {
        ASSERT_NO_FATAL_FAILURE(check_shape<128>(q_len, k_len, causal));
        ASSERT_NO_FATAL_FAILURE(check_shape<64>(q_len, k_len, causal));
      }
}

// Near INT_MAX the plan's int64 arithmetic must not overflow: the key-tile count of the last query tile is
// that of all keys, the first tile's under the causal mask what its last row sees.
TEST(Sm90TilePlan, LargeLengthsDoNotOverflow) {
  const int n = INT_MAX - 5;
  const int last_m0 = (n - 1) / kBlockM * kBlockM;
  TilePlan t = hope::sm90::plan_tile<kBlockM, 128>(n, n, last_m0, true);
  EXPECT_EQ(t.q_row0, n - kBlockM);
  EXPECT_EQ(t.n_blocks, static_cast<int>((static_cast<int64_t>(n) + 127) / 128));
  EXPECT_GE(t.n_masked, 1);
  EXPECT_LE(t.n_masked, 2);
  t = hope::sm90::plan_tile<kBlockM, 128>(n, n, 0, true);
  EXPECT_EQ(t.n_blocks, 1);
  t = hope::sm90::plan_tile<kBlockM, 128>(1, n, 0, true);  // one query row sees every key
  EXPECT_EQ(t.q_row0, 1 - kBlockM);
  EXPECT_EQ(t.n_blocks, static_cast<int>((static_cast<int64_t>(n) + 127) / 128));
  EXPECT_EQ(t.n_masked, 1);  // only the shifted last key tile
  t = hope::sm90::plan_tile<kBlockM, 64>(n, 1, last_m0, true);  // Nq >> Nk: the last row sees the one key
  EXPECT_EQ(t.n_blocks, 1);
  EXPECT_EQ(causal_limit(0, -static_cast<int64_t>(n), true), -1);
  EXPECT_EQ(causal_limit(n, n, true), INT_MAX);
}

}  // namespace
