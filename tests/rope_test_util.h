// rope_test_util.h — helpers shared by the rotary tests (test_rope_apply.cc on the CPU, test_rope_gpu.cc on the
// GPU, test_rope_cache.cc): a rope config in Qwen2-VL section proportions, position generators, and the
// dtype-aware comparison of rotated values against the float64 reference.
#pragma once

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include <gtest/gtest.h>

#include "hope_attn.h"
#include "test_util.h"

namespace hope_test {

// The config of `kind` for head_dim, sections (st, sh, sw) summing to head_dim / 2.
inline hope_rope_config_t config_of(int kind, int head_dim) {
  hope_rope_config_t c{};
  c.kind = kind;
  c.head_dim = head_dim;
  const int half = head_dim / 2;
  // (st, sh, sw) summing to half, in Qwen2-VL proportions (1/4, 3/8, 3/8) where the sizes allow.
  c.sections[1] = 3 * half / 8;
  c.sections[2] = 3 * half / 8;
  c.sections[0] = half - c.sections[1] - c.sections[2];
  c.theta = 1e6;
  return c;
}

// Positions [3][n] above 100 000 with differing rows.
inline std::vector<float> big_positions(int64_t n, std::mt19937_64 &rng) {
  std::uniform_real_distribution<float> dist(100000.0f, 1048576.0f);
  std::vector<float> p(3 * n);
  for (auto &v : p) v = std::floor(dist(rng)) + 0.5f * static_cast<float>(rng() & 1);
  return p;
}
// The same from a fresh generator seeded with `seed`.
inline std::vector<float> big_positions(int64_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  return big_positions(n, rng);
}

// Packs rows [0, n) of a [3][ld] array into [3][n].
inline std::vector<float> packed(const std::vector<float> &p, int64_t n, int64_t ld) {
  std::vector<float> out(3 * n);
  for (int r = 0; r < 3; ++r)
    for (int64_t k = 0; k < n; ++k) out[r * n + k] = p[r * ld + k];
  return out;
}

// Spacing of the dtype's representable values just above |v| (one ulp).
inline double ulp_of(int dtype, double v) {
  const float a = static_cast<float>(std::fabs(v));
  if (dtype == HOPE_DTYPE_FLOAT16) {
    const uint16_t b = hope_test::to_f16_bits(a);
    return hope_test::from_f16_bits(static_cast<uint16_t>(b + 1)) - hope_test::from_f16_bits(b);
  }
  if (dtype == HOPE_DTYPE_BFLOAT16) {
    const uint16_t b = hope_test::to_bf16_bits(a);
    return hope_test::from_bf16_bits(static_cast<uint16_t>(b + 1)) - hope_test::from_bf16_bits(b);
  }
  return std::nextafter(a, INFINITY) - a;
}

// |x[i]| + |x[partner]| per element: the size of the terms the float32 rotation adds, which bounds its
// rounding error (a result that cancels to near zero keeps an absolute error of the terms' size).
inline std::vector<double> term_sizes(const std::vector<double> &x, int head_dim) {
  const int half = head_dim / 2;
  std::vector<double> m(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    const size_t d = i % head_dim;
    m[i] = std::fabs(x[i]) + std::fabs(d < static_cast<size_t>(half) ? x[i + half] : x[i - half]);
  }
  return m;
}

// The same for SPEC §8's pairs of the first rotary_dim dims (pairing 0 rotate-half, 1 interleaved); a dim past
// rotary_dim passes through, so its only term is itself.
inline std::vector<double> term_sizes(const std::vector<double> &x, int head_dim, int pairing, int rotary_dim) {
  const int rot = rotary_dim != 0 ? rotary_dim : head_dim, half = rot / 2;
  std::vector<double> m(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    const int d = static_cast<int>(i % head_dim);
    double partner = 0.0;
    if (d < rot) {
      if (pairing == HOPE_PAIRING_INTERLEAVED) partner = x[d % 2 == 0 ? i + 1 : i - 1];
      else partner = x[d < half ? i + half : i - half];
    }
    m[i] = std::fabs(x[i]) + std::fabs(partner);
  }
  return m;
}

// config_of(kind, head_dim) rotating only the first rotary_dim dims (sections in the same proportions of
// rotary_dim / 2), with the given pairing.
inline hope_rope_config_t partial_config_of(int kind, int head_dim, int rotary_dim, int pairing) {
  hope_rope_config_t c = config_of(kind, rotary_dim);
  c.head_dim = head_dim;
  c.rotary_dim = rotary_dim;
  c.pairing = pairing;
  return c;
}

// hope_rope_apply params for the CPU backend (default row strides), with SPEC §8's pairing and rotary_dim.
inline hope_rope_apply_params_t cpu_apply_params(int dtype, int64_t tokens, int heads, int head_dim, const void *x,
                                                 void *out, const float *cos, const float *sin, int pairing = 0,
                                                 int rotary_dim = 0) {
  hope_rope_apply_params_t p;
  std::memset(&p, 0, sizeof p);
  p.backend = HOPE_BACKEND_CPU;
  p.dtype = dtype;
  p.num_tokens = tokens;
  p.num_heads = heads;
  p.head_dim = head_dim;
  p.x = x;
  p.out = out;
  p.cos = cos;
  p.sin = sin;
  p.rope_pairing = pairing;
  p.rotary_dim = rotary_dim;
  return p;
}

// float32: within 1e-5 absolute of the reference; float16/bfloat16: within one ulp of the reference rounded
// to the dtype, plus the float32 rounding of the rotation itself (4 * 2^-24 * the terms' size). Reports the
// first mismatch.
inline ::testing::AssertionResult rotated_close(int dtype, const std::vector<double> &got,
                                                const std::vector<double> &ref, const std::vector<double> &terms) {
  if (got.size() != ref.size()) return ::testing::AssertionFailure() << "size " << got.size() << " != " << ref.size();
  for (size_t i = 0; i < got.size(); ++i) {
    if (!std::isfinite(got[i])) return ::testing::AssertionFailure() << "element " << i << " is " << got[i];
    if (dtype == HOPE_DTYPE_FLOAT32) {
      if (std::fabs(got[i] - ref[i]) > 1e-5)
        return ::testing::AssertionFailure() << "element " << i << ": got " << got[i] << ", expected " << ref[i];
      continue;
    }
    const double expected = hope_test::round_to(dtype, static_cast<float>(ref[i]));
    const double allowed = ulp_of(dtype, expected) + 0x1p-22 * terms[i];
    if (std::fabs(got[i] - expected) > allowed)
      return ::testing::AssertionFailure() << "element " << i << ": got " << got[i] << ", expected " << expected
                                           << " (unrounded " << ref[i] << ", allowed " << allowed << ")";
  }
  return ::testing::AssertionSuccess();
}

}  // namespace hope_test
