// test_util.h — shared helpers for the GoogleTest suite: random inputs, dtype rounding done independently
// of the library, element-wise comparison that reports the first mismatch, poisoning, the GPU fixture.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "hope_attn.h"

namespace hope_test {

// ---- dtype rounding, written independently of csrc/dtype.c ----------------------------------------------
// float16 through the compiler's _Float16 (IEEE binary16, round to nearest even).
inline uint16_t to_f16_bits(float x) {
  _Float16 h = static_cast<_Float16>(x);
  uint16_t b;
  std::memcpy(&b, &h, 2);
  return b;
}
inline float from_f16_bits(uint16_t b) {
  _Float16 h;
  std::memcpy(&h, &b, 2);
  return static_cast<float>(h);
}
// bfloat16: round to nearest even computed in double arithmetic on the dropped bits.
inline uint16_t to_bf16_bits(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  if (std::isnan(x)) return static_cast<uint16_t>((u >> 16) | 0x40);
  uint32_t hi = u >> 16, lo = u & 0xffff;
  if (lo > 0x8000 || (lo == 0x8000 && (hi & 1))) hi += 1;
  return static_cast<uint16_t>(hi);
}
inline float from_bf16_bits(uint16_t b) {
  uint32_t u = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline size_t dtype_size(int dtype) { return dtype == HOPE_DTYPE_FLOAT32 ? 4 : 2; }
inline const char *dtype_name(int dtype) {
  return dtype == HOPE_DTYPE_FLOAT16 ? "f16" : dtype == HOPE_DTYPE_BFLOAT16 ? "bf16" : "f32";
}
// Round a float to the dtype and back (what the device sees).
inline float round_to(int dtype, float x) {
  if (dtype == HOPE_DTYPE_FLOAT16) return from_f16_bits(to_f16_bits(x));
  if (dtype == HOPE_DTYPE_BFLOAT16) return from_bf16_bits(to_bf16_bits(x));
  return x;
}

// A typed buffer stored as bytes; values() gives the float view the reference uses.
struct Tensor {
  int dtype = HOPE_DTYPE_FLOAT32;
  std::vector<uint8_t> bytes;
  Tensor() = default;
  Tensor(int dt, size_t n) : dtype(dt), bytes(n * dtype_size(dt)) {}
  size_t size() const { return bytes.size() / dtype_size(dtype); }
  void *data() { return bytes.data(); }
  const void *data() const { return bytes.data(); }
  float get(size_t i) const {
    if (dtype == HOPE_DTYPE_FLOAT32) { float f; std::memcpy(&f, &bytes[i * 4], 4); return f; }
    uint16_t b; std::memcpy(&b, &bytes[i * 2], 2);
    return dtype == HOPE_DTYPE_FLOAT16 ? from_f16_bits(b) : from_bf16_bits(b);
  }
  void set(size_t i, float x) {
    if (dtype == HOPE_DTYPE_FLOAT32) { std::memcpy(&bytes[i * 4], &x, 4); return; }
    uint16_t b = dtype == HOPE_DTYPE_FLOAT16 ? to_f16_bits(x) : to_bf16_bits(x);
    std::memcpy(&bytes[i * 2], &b, 2);
  }
  std::vector<double> values() const {
    std::vector<double> v(size());
    for (size_t i = 0; i < v.size(); ++i) v[i] = get(i);
    return v;
  }
  // Fill every byte with a NaN pattern so an element the library does not write fails the comparison.
  void poison() {
    if (!bytes.empty()) std::memset(bytes.data(), 0xff, bytes.size());
  }
};

inline Tensor random_tensor(int dtype, size_t n, std::mt19937_64 &rng, float stddev = 1.0f) {
  std::normal_distribution<float> dist(0.0f, stddev);
  Tensor t(dtype, n);
  for (size_t i = 0; i < n; ++i) t.set(i, dist(rng));
  return t;
}

// Every element within `atol + rtol*|ref|`; NaN/Inf in `got` fail unless `ref` has the same non-finite value.
inline ::testing::AssertionResult all_close(const std::vector<double> &got, const std::vector<double> &ref,
                                            double atol, double rtol = 0.0) {
  if (got.size() != ref.size())
    return ::testing::AssertionFailure() << "size " << got.size() << " != " << ref.size();
  size_t bad = 0, first = got.size();
  double worst = 0.0;
  for (size_t i = 0; i < got.size(); ++i) {
    bool ok;
    if (std::isnan(ref[i])) ok = std::isnan(got[i]);
    else if (std::isinf(ref[i])) ok = got[i] == ref[i];
    else ok = std::isfinite(got[i]) && std::fabs(got[i] - ref[i]) <= atol + rtol * std::fabs(ref[i]);
    if (!ok) {
      if (first == got.size()) first = i;
      ++bad;
    }
    if (std::isfinite(got[i]) && std::isfinite(ref[i])) worst = std::max(worst, std::fabs(got[i] - ref[i]));
  }
  if (bad == 0) return ::testing::AssertionSuccess() << "max abs error " << worst;
  return ::testing::AssertionFailure() << bad << " of " << got.size() << " elements differ; first at index "
                                       << first << ": got " << got[first] << ", expected " << ref[first]
                                       << " (atol " << atol << ", rtol " << rtol << "); max abs error " << worst;
}

// ||got - ref|| / ||ref||, and a check that `got` is all finite.
inline double relative_error(const std::vector<double> &got, const std::vector<double> &ref) {
  double num = 0.0, den = 0.0;
  for (size_t i = 0; i < got.size(); ++i) {
    if (!std::isfinite(got[i])) return INFINITY;
    num += (got[i] - ref[i]) * (got[i] - ref[i]);
    den += ref[i] * ref[i];
  }
  return den == 0.0 ? std::sqrt(num) : std::sqrt(num / den);
}

// Expects a status and prints hope_last_error() when it differs.
#define EXPECT_HOPE_OK(expr)                                                      \
  do {                                                                            \
    hope_status_t s_ = (expr);                                                    \
    EXPECT_EQ(s_, HOPE_SUCCESS) << #expr << ": " << hope_status_string(s_) << ": " \
                                << hope_last_error();                             \
  } while (0)
#define ASSERT_HOPE_OK(expr)                                                      \
  do {                                                                            \
    hope_status_t s_ = (expr);                                                    \
    ASSERT_EQ(s_, HOPE_SUCCESS) << #expr << ": " << hope_status_string(s_) << ": " \
                                << hope_last_error();                             \
  } while (0)
// Expects a failure status with a non-empty message.
#define EXPECT_HOPE_FAIL(expr, status)                                    \
  do {                                                                    \
    hope_status_t s_ = (expr);                                            \
    EXPECT_EQ(s_, status) << #expr << " returned " << hope_status_string(s_); \
    EXPECT_STRNE(hope_last_error(), "") << #expr;                         \
  } while (0)

// GPU tests derive from this: they skip (and ctest reports "Skipped") when no CUDA device is usable.
class GpuTest : public ::testing::Test {
 protected:
  void SetUp() override {
    int32_t n = 0;
    ASSERT_EQ(hope_cuda_device_count(&n), HOPE_SUCCESS);
    if (n == 0) GTEST_SKIP() << "no CUDA device on this machine: GPU test skipped";
  }
};
template <typename P>
class GpuTestWithParam : public ::testing::TestWithParam<P> {
 protected:
  void SetUp() override {
    int32_t n = 0;
    ASSERT_EQ(hope_cuda_device_count(&n), HOPE_SUCCESS);
    if (n == 0) GTEST_SKIP() << "no CUDA device on this machine: GPU test skipped";
  }
};

}  // namespace hope_test
