// test_util.h — shared helpers for the GoogleTest suite: random inputs, dtype rounding done independently
// of the library, element-wise comparison that reports the first mismatch, poisoning, the GPU fixture.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#ifdef HOPE_EMULATED_DEVICE
#include "hope_emu/control.h"
#endif

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

// Segments for hope_positions_* (SPEC §1): n text tokens, a t x h x w video grid, an h x w image (scale 0:
// the call's default temporal scale).
inline hope_segment_t text_segment(int32_t n) {
  hope_segment_t s{};
  s.kind = HOPE_SEGMENT_TEXT;
  s.length = n;
  return s;
}
inline hope_segment_t video_segment(int32_t t, int32_t h, int32_t w, float scale = 0.0f) {
  hope_segment_t s{};
  s.kind = HOPE_SEGMENT_VIDEO;
  s.grid_t = t;
  s.grid_h = h;
  s.grid_w = w;
  s.temporal_scale = scale;
  return s;
}
inline hope_segment_t image_segment(int32_t h, int32_t w, float scale = 0.0f) {
  hope_segment_t s = video_segment(1, h, w, scale);
  s.kind = HOPE_SEGMENT_IMAGE;
  return s;
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

// A Tensor of `dtype` holding x (rounded to the dtype), and a float vector widened to double.
inline Tensor to_tensor(int dtype, const std::vector<float> &x) {
  Tensor t(dtype, x.size());
  for (size_t i = 0; i < x.size(); ++i) t.set(i, x[i]);
  return t;
}
inline std::vector<double> to_double(const std::vector<float> &x) { return std::vector<double>(x.begin(), x.end()); }

// cu_seqlens of packed varlen sequences: {0, l0, l0 + l1, ...}; and the longest length (0 when none).
inline std::vector<int32_t> cu_seqlens(const std::vector<int> &lens) {
  std::vector<int32_t> cu(1, 0);
  for (int l : lens) cu.push_back(cu.back() + l);
  return cu;
}
inline int max_len(const std::vector<int> &lens) {
  int m = 0;
  for (int l : lens) m = std::max(m, l);
  return m;
}

// Rows [tokens][width] of a strided tensor (rows `stride` elements apart) from column `col0`, as doubles.
inline std::vector<double> strided_rows(const Tensor &t, int64_t tokens, int64_t width, int64_t stride,
                                        int64_t col0 = 0) {
  std::vector<double> out(static_cast<size_t>(tokens * width));
  for (int64_t r = 0; r < tokens; ++r)
    for (int64_t c = 0; c < width; ++c)
      out[static_cast<size_t>(r * width + c)] = t.get(static_cast<size_t>(r * stride + col0 + c));
  return out;
}

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

// Rows that see no key (reference lse -inf) must come out exactly 0: out is [total_q][heads][head_dim], ref_lse
// [heads][total_q].
inline ::testing::AssertionResult keyless_rows_are_zero(const std::vector<double> &out,
                                                        const std::vector<double> &ref_lse, int64_t total_q,
                                                        int heads, int head_dim) {
  for (int64_t t = 0; t < total_q; ++t)
    for (int j = 0; j < heads; ++j)
      if (std::isinf(ref_lse[static_cast<size_t>(j * total_q + t)]))
        for (int e = 0; e < head_dim; ++e) {
          const double o = out[static_cast<size_t>((t * heads + j) * head_dim + e)];
          if (o != 0.0)
            return ::testing::AssertionFailure() << "token " << t << " head " << j << " sees no key, yet out[" << e
                                                 << "] = " << o << " (must be 0)";
        }
  return ::testing::AssertionSuccess();
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

// Whether the library under test has its CUDA backend (hope_build_info's "cuda" key). Read at run time, so this
// header is the same in every build (BuildInfo.MatchesTheTestBuild checks it against the configuration).
inline bool library_has_cuda() {
  const char *info = nullptr;
  return hope_build_info(&info) == HOPE_SUCCESS && std::strstr(info, "\ncuda=on\n") != nullptr;
}
// Whether the library has the sm90 (Hopper: wgmma + TMA) fused-attention family built in.
inline bool library_has_sm90() {
  const char *info = nullptr;
  if (hope_build_info(&info) != HOPE_SUCCESS) return false;
  const char *line = std::strstr(info, "\nattention_families=");
  if (line == nullptr) return false;
  const char *end = std::strchr(line + 1, '\n');
  return std::string(line, end != nullptr ? end : line + std::strlen(line)).find("sm90") != std::string::npos;
}
// What a CUDA-backend call returns on a machine without a usable GPU: HOPE_ERROR_NO_DEVICE, or
// HOPE_ERROR_NOT_SUPPORTED from a library built without CUDA.
inline hope_status_t no_gpu_status() {
  return library_has_cuda() ? HOPE_ERROR_NO_DEVICE : HOPE_ERROR_NOT_SUPPORTED;
}

// GPU tests derive from these: they skip (and ctest reports "Skipped") when no CUDA device is usable. On the
// emulated GPU (HOPE_EMULATED_DEVICE) a test also fails when the emulator found an error in kernel code while
// it ran (a hazard, a divergent collective, a deadlock: the "hope_emu: error" lines above say where), even
// if every output happened to match.
class GpuGuard {
 public:
  // false: no device, the test must skip.
  static bool device_present() {
    int32_t n = 0;
    return hope_cuda_device_count(&n) == HOPE_SUCCESS && n > 0;
  }
  void begin() {
#ifdef HOPE_EMULATED_DEVICE
    errors_ = hopeemu_error_count();
#endif
  }
  void end() const {
#ifdef HOPE_EMULATED_DEVICE
    EXPECT_EQ(hopeemu_error_count() - errors_, 0)
        << "the emulated GPU (schedule " << hopeemu_schedule() << ") reported errors in kernel code during this test";
#endif
  }

 private:
  long errors_ = 0;
};

class GpuTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!GpuGuard::device_present()) GTEST_SKIP() << "no CUDA device on this machine: GPU test skipped";
    guard_.begin();
  }
  void TearDown() override { guard_.end(); }

 private:
  GpuGuard guard_;
};
template <typename P>
class GpuTestWithParam : public ::testing::TestWithParam<P> {
 protected:
  void SetUp() override {
    if (!GpuGuard::device_present()) GTEST_SKIP() << "no CUDA device on this machine: GPU test skipped";
    guard_.begin();
  }
  void TearDown() override { guard_.end(); }

 private:
  GpuGuard guard_;
};

}  // namespace hope_test
