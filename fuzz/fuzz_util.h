// fuzz_util.h — shared pieces of the libFuzzer harnesses: a reader that turns the fuzzer's bytes into
// "interesting" integers and floats, exact-size malloc buffers (so AddressSanitizer flags any access one element
// outside what the library was given), and the check that a failing call left a message.
//
// Every harness follows one rule: the call under test either succeeds and its outputs satisfy the SPEC
// definitions (recomputed here in double, independently of csrc/), or fails with a status other than
// HOPE_SUCCESS and a non-empty hope_last_error(). Anything else calls fuzz_fail(), which prints the reason and
// aborts, so libFuzzer saves the input as a crash reproducer.
#pragma once

#include <cmath>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <vector>

#include "hope_attn.h"

// AddressSanitizer defaults for every harness (each harness includes this header from exactly one file):
// an impossible allocation returns NULL, as plain malloc does, instead of aborting, so the library's
// out-of-memory paths are exercised; and anything above 256 MiB counts as impossible, which keeps ASan's shadow
// memory for a huge-but-possible cache (e.g. capacity 2^31) from tripping libFuzzer's RSS limit.
extern "C" const char *__asan_default_options() {
  return "allocator_may_return_null=1:max_allocation_size_mb=256:detect_leaks=1";
}

namespace hope_fuzz {

// A description of the call under test that fuzz_fail prints (set it with set_context before a check).
inline char *fuzz_context() {
  static char ctx[4096];
  return ctx;
}
inline void set_context(const char *fmt, ...) {
  va_list args;
  va_start(args, fmt);
  std::vsnprintf(fuzz_context(), 4096, fmt, args);
  va_end(args);
  // HOPE_FUZZ_PRINT=1 prints every call under test (to diagnose a slow input or a timeout).
  static const bool print = std::getenv("HOPE_FUZZ_PRINT") != nullptr;
  if (print) std::fprintf(stderr, "call under test: %s\n", fuzz_context());
}

[[noreturn]] inline void fuzz_fail(const char *fmt, ...) {
  va_list args;
  va_start(args, fmt);
  if (fuzz_context()[0] != '\0') std::fprintf(stderr, "\n*** call under test: %s", fuzz_context());
  std::fprintf(stderr, "\n*** hope_attn fuzz check failed: ");
  std::vfprintf(stderr, fmt, args);
  std::fprintf(stderr, "\n*** hope_last_error(): \"%s\"\n", hope_last_error());
  va_end(args);
  std::abort();
}

#define FUZZ_CHECK(cond, ...)                          \
  do {                                                 \
    if (!(cond)) ::hope_fuzz::fuzz_fail(__VA_ARGS__);  \
  } while (0)

// Reads the fuzzer's bytes front to back; once they run out every read returns zero.
class Reader {
 public:
  // One Reader per input: constructing it also clears the previous input's context line.
  Reader(const uint8_t *data, size_t size) : p_(data), n_(size) { fuzz_context()[0] = '\0'; }
  bool empty() const { return n_ == 0; }
  uint8_t u8() {
    if (n_ == 0) return 0;
    --n_;
    return *p_++;
  }
  uint32_t u32() {
    uint32_t v = 0;
    for (int i = 0; i < 4; ++i) v |= static_cast<uint32_t>(u8()) << (8 * i);
    return v;
  }
  uint64_t u64() { return static_cast<uint64_t>(u32()) | (static_cast<uint64_t>(u32()) << 32); }
  bool flag() { return (u8() & 1) != 0; }
  // A value in [lo, hi] (inclusive), from one byte.
  int32_t range(int32_t lo, int32_t hi) { return lo + static_cast<int32_t>(u8() % static_cast<uint32_t>(hi - lo + 1)); }

  // A small non-negative size most of the time, sometimes an edge value.
  int32_t size_i32(int32_t small_max) {
    const uint8_t sel = u8();
    if (sel < 200) return static_cast<int32_t>(sel % static_cast<uint32_t>(small_max + 1));
    return edge_i32();
  }
  // Integers that break things: 0, -1, limits, powers of two and their neighbours.
  int32_t edge_i32() {
    static const int32_t kEdges[] = {0, 1, -1, 2, 3, 7, 8, 64, 127, 128, 129, 1024, 1025, 65535, 65536,
                                     1 << 20, 46341 /* ceil(sqrt(2^31)) */, 1 << 30, INT32_MAX, INT32_MAX - 1,
                                     INT32_MIN, INT32_MIN + 1, -2, -1024};
    const uint8_t sel = u8();
    if (sel < sizeof kEdges / sizeof kEdges[0]) return kEdges[sel];
    return static_cast<int32_t>(u32());
  }
  int64_t edge_i64() {
    static const int64_t kEdges[] = {0, 1, -1, 2, 7, 64, 1024, INT32_MAX, static_cast<int64_t>(INT32_MAX) + 1,
                                     static_cast<int64_t>(UINT32_MAX), static_cast<int64_t>(1) << 40,
                                     static_cast<int64_t>(1) << 62, INT64_MAX, INT64_MIN, INT64_MAX / 2,
                                     INT64_MAX / 4 + 1, -(static_cast<int64_t>(1) << 40)};
    const uint8_t sel = u8();
    if (sel < sizeof kEdges / sizeof kEdges[0]) return kEdges[sel];
    if (sel < 200) return static_cast<int64_t>(sel % 16);
    return static_cast<int64_t>(u64());
  }
  // Floats that break things: zeros, NaN, infinities, denormals, the float limits, and raw bit patterns.
  float edge_float() {
    static const float kEdges[] = {0.0f, -0.0f, 1.0f, -1.0f, 0.5f, 0.75f, 1.25f, 1.5f, 2.0f, 1e-3f, 3.0f,
                                   std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                                   -std::numeric_limits<float>::infinity(), std::numeric_limits<float>::max(),
                                   -std::numeric_limits<float>::max(), std::numeric_limits<float>::denorm_min(),
                                   std::numeric_limits<float>::min(), 1e6f, 1e30f, -1e30f, 16777216.0f,
                                   131071.0f, 1048576.0f, 0.1f, -0.5f, 2147483648.0f};
    const uint8_t sel = u8();
    if (sel < sizeof kEdges / sizeof kEdges[0]) return kEdges[sel];
    if (sel < 128) return static_cast<float>(sel % 8) * 0.25f;
    const uint32_t bits = u32();
    float f;
    std::memcpy(&f, &bits, 4);
    return f;
  }
  double edge_double() {
    const uint8_t sel = u8();
    switch (sel % 12) {
      case 0: return std::numeric_limits<double>::quiet_NaN();
      case 1: return std::numeric_limits<double>::infinity();
      case 2: return -std::numeric_limits<double>::infinity();
      case 3: return 1e6;
      case 4: return 10000.0;
      case 5: return 1.0;
      case 6: return 0.0;
      case 7: return -5.0;
      case 8: return 1e300;
      case 9: return static_cast<double>(u32());
      case 10: return 1.0 + 1e-12;
      default: {
        const uint64_t bits = u64();
        double d;
        std::memcpy(&d, &bits, 8);
        return d;
      }
    }
  }

 private:
  const uint8_t *p_;
  size_t n_;
};

// A heap buffer of exactly `bytes` bytes (malloc, so ASan's redzones sit right at its end). bytes == 0 gives
// a valid zero-size allocation that must not be touched.
class Buffer {
 public:
  Buffer() = default;
  explicit Buffer(size_t bytes) : bytes_(bytes), p_(std::malloc(bytes == 0 ? 0 : bytes)) {
    if (p_ == nullptr && bytes != 0) fuzz_fail("harness: malloc(%zu) failed", bytes);
  }
  Buffer(const Buffer &) = delete;
  Buffer &operator=(const Buffer &) = delete;
  Buffer(Buffer &&o) noexcept : bytes_(o.bytes_), p_(o.p_) { o.p_ = nullptr; o.bytes_ = 0; }
  Buffer &operator=(Buffer &&o) noexcept {
    if (this != &o) { std::free(p_); p_ = o.p_; bytes_ = o.bytes_; o.p_ = nullptr; o.bytes_ = 0; }
    return *this;
  }
  ~Buffer() { std::free(p_); }
  void *get() const { return p_; }
  template <typename T> T *as() const { return static_cast<T *>(p_); }
  size_t bytes() const { return bytes_; }
  void fill(uint8_t byte) { if (bytes_) std::memset(p_, byte, bytes_); }
  // A copy of the contents, to check later that a failing call wrote nothing.
  std::vector<uint8_t> snapshot() const {
    return bytes_ ? std::vector<uint8_t>(static_cast<const uint8_t *>(p_), static_cast<const uint8_t *>(p_) + bytes_)
                  : std::vector<uint8_t>();
  }
  bool equals(const std::vector<uint8_t> &s) const {
    return s.size() == bytes_ && (bytes_ == 0 || std::memcmp(p_, s.data(), bytes_) == 0);
  }

 private:
  size_t bytes_ = 0;
  void *p_ = nullptr;
};

// The largest buffer a harness allocates; larger requests skip the call (it would only test the machine).
constexpr size_t kMaxBufferBytes = size_t(1) << 22;

// A failing call must return a non-SUCCESS status that is one of the enum's values, with a message.
inline void expect_failure_message(hope_status_t s, const char *what) {
  if (s == HOPE_SUCCESS) fuzz_fail("%s: expected a failure, got HOPE_SUCCESS", what);
  if (s < HOPE_ERROR_INVALID_VALUE || s > HOPE_ERROR_INTERNAL) fuzz_fail("%s: unknown status %d", what, (int)s);
  if (s == HOPE_ERROR_INTERNAL) fuzz_fail("%s: HOPE_ERROR_INTERNAL (a library bug by its own definition)", what);
  const char *msg = hope_last_error();
  if (msg == nullptr || msg[0] == '\0') fuzz_fail("%s: failed with %s but left no message", what, hope_status_string(s));
}
// Either outcome is acceptable, but a failure needs a message (used where the contract leaves room).
inline void check_status_sane(hope_status_t s, const char *what) {
  if (s != HOPE_SUCCESS) expect_failure_message(s, what);
}

// ---- dtype helpers, independent of csrc/dtype.c --------------------------------------------------------
inline size_t dtype_bytes(int32_t dtype) { return dtype == HOPE_DTYPE_FLOAT32 ? 4 : 2; }
inline bool dtype_valid(int32_t dtype) {
  return dtype == HOPE_DTYPE_FLOAT16 || dtype == HOPE_DTYPE_BFLOAT16 || dtype == HOPE_DTYPE_FLOAT32;
}
// IEEE binary16 by hand (clang 14 has no _Float16 on x86): round to nearest even via exact double scaling.
inline float f16_to_float(uint16_t b) {
  const int sign = b >> 15, exp = (b >> 10) & 31, mant = b & 1023;
  double v;
  if (exp == 0) v = std::ldexp(static_cast<double>(mant), -24);
  else if (exp == 31) v = mant ? std::numeric_limits<double>::quiet_NaN() : std::numeric_limits<double>::infinity();
  else v = std::ldexp(static_cast<double>(1024 + mant), exp - 25);
  return static_cast<float>(sign ? -v : v);
}
inline uint16_t float_to_f16(float x) {
  if (std::isnan(x)) return 0x7e00;
  const uint16_t sign = std::signbit(x) ? 0x8000 : 0;
  const double a = std::fabs(static_cast<double>(x));
  if (a >= 65520.0) return sign | 0x7c00;  // rounds to infinity
  if (a < std::ldexp(1.0, -14)) return sign | static_cast<uint16_t>(std::nearbyint(a * std::ldexp(1.0, 24)));
  int e2;
  std::frexp(a, &e2);
  int e = e2 - 1;  // a in [2^e, 2^(e+1))
  double q = std::nearbyint(std::ldexp(a, 10 - e));
  if (q == 2048.0) { q = 1024.0; ++e; }
  if (e + 15 >= 31) return sign | 0x7c00;
  return sign | static_cast<uint16_t>(((e + 15) << 10) | (static_cast<int>(q) - 1024));
}
inline float bf16_to_float(uint16_t b) {
  uint32_t u = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline uint16_t float_to_bf16(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  if (std::isnan(x)) return static_cast<uint16_t>((u >> 16) | 0x40);
  uint32_t hi = u >> 16, lo = u & 0xffff;
  if (lo > 0x8000 || (lo == 0x8000 && (hi & 1))) hi += 1;
  return static_cast<uint16_t>(hi);
}
inline float load(const void *p, int32_t dtype, int64_t i) {
  if (dtype == HOPE_DTYPE_FLOAT32) return static_cast<const float *>(p)[i];
  const uint16_t b = static_cast<const uint16_t *>(p)[i];
  return dtype == HOPE_DTYPE_FLOAT16 ? f16_to_float(b) : bf16_to_float(b);
}
inline void store(void *p, int32_t dtype, int64_t i, float x) {
  if (dtype == HOPE_DTYPE_FLOAT32) { static_cast<float *>(p)[i] = x; return; }
  static_cast<uint16_t *>(p)[i] = dtype == HOPE_DTYPE_FLOAT16 ? float_to_f16(x) : float_to_bf16(x);
}
inline float round_to(int32_t dtype, float x) {
  if (dtype == HOPE_DTYPE_FLOAT16) return f16_to_float(float_to_f16(x));
  if (dtype == HOPE_DTYPE_BFLOAT16) return bf16_to_float(float_to_bf16(x));
  return x;
}
// The unit roundoff-ish tolerance of one value stored in dtype.
inline double dtype_eps(int32_t dtype) {
  return dtype == HOPE_DTYPE_FLOAT16 ? 1.0 / 1024 : dtype == HOPE_DTYPE_BFLOAT16 ? 1.0 / 128 : 1.0 / (1 << 22);
}

// A deterministic stream of N(0,1)-like values seeded from the input (the harness needs valid numbers for
// the reference comparison; the fuzzer's bytes drive the shapes, strides and pointers).
class Rng {
 public:
  explicit Rng(uint64_t seed) : s_(seed ^ 0x853c49e6748fea9bull) {}
  uint64_t next() {
    s_ += 0x9E3779B97F4A7C15ull;
    uint64_t z = s_;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  double uniform() { return static_cast<double>(next() >> 11) * (1.0 / 9007199254740992.0); }
  float normal() {  // sum of uniforms: bounded, roughly N(0,1)
    double s = 0;
    for (int i = 0; i < 4; ++i) s += uniform();
    return static_cast<float>((s - 2.0) * 1.7320508);
  }

 private:
  uint64_t s_;
};

inline void fill_random(void *p, int32_t dtype, int64_t n, Rng &rng) {
  for (int64_t i = 0; i < n; ++i) store(p, dtype, i, rng.normal());
}
// Random (cos, sin) pairs of random angles: a valid rotation table [tokens][half].
inline void fill_cos_sin(float *cos, float *sin, int64_t n, Rng &rng) {
  for (int64_t i = 0; i < n; ++i) {
    const double a = (rng.uniform() - 0.5) * 20.0;
    cos[i] = static_cast<float>(std::cos(a));
    sin[i] = static_cast<float>(std::sin(a));
  }
}

// Checked arithmetic for sizes computed in the harness.
// ---- SPEC §8 rotary fields -------------------------------------------------------------------------------------

// The pairing and rotary_dim of a call, read only when `wanted` (spare bits of an earlier byte, 0 in the older
// seeds, which so keep their meaning): mostly valid (pairing 0/1, rotary_dim 0 or even in 2..head_dim), sometimes
// an edge value.
inline void read_rotary_fields(Reader &in, bool wanted, int32_t head_dim, int32_t *pairing, int32_t *rotary_dim) {
  *pairing = 0;
  *rotary_dim = 0;
  if (!wanted) return;
  const uint8_t pb = in.u8();
  *pairing = pb < 250 ? pb & 1 : in.edge_i32();
  const uint8_t rb = in.u8();
  *rotary_dim = rb < 64 ? 0 : rb < 240 && head_dim >= 2 ? 2 * (1 + rb % (head_dim / 2)) : in.edge_i32();
}

inline bool rotary_fields_valid(int32_t pairing, int32_t rotary_dim, int32_t head_dim) {
  return (pairing == 0 || pairing == 1) &&
         (rotary_dim == 0 || (rotary_dim >= 2 && rotary_dim % 2 == 0 && rotary_dim <= head_dim));
}

// Float64 SPEC §4 / §8 rotation of one row: dst[0..d) = the d values of src (dtype) from element `at`, pair
// i < rdim/2 rotated by cs[i], sn[i] (no rotation when cs is NULL): dims (i, i + rdim/2) for rotate-half, (2i, 2i + 1)
// for interleaved; each result through float32 and, with `round`, the dtype (SPEC §4); dims from rdim pass through.
inline void rotate_row_ref(const void *src, int32_t dtype, int64_t at, int32_t d, const float *cs, const float *sn,
                           int32_t pairing, int32_t rdim, bool round, double *dst) {
  for (int32_t e = 0; e < d; ++e) dst[e] = load(src, dtype, at + e);
  if (cs == nullptr) return;
  const int32_t half = rdim / 2, step = pairing == HOPE_PAIRING_INTERLEAVED ? 2 : 1;
  const int32_t partner = pairing == HOPE_PAIRING_INTERLEAVED ? 1 : half;
  for (int32_t i = 0; i < half; ++i) {
    const int32_t e0 = i * step, e1 = e0 + partner;
    const double a = dst[e0], b = dst[e1];
    const float y0 = static_cast<float>(a * cs[i] - b * sn[i]), y1 = static_cast<float>(b * cs[i] + a * sn[i]);
    dst[e0] = round ? round_to(dtype, y0) : static_cast<double>(y0);
    dst[e1] = round ? round_to(dtype, y1) : static_cast<double>(y1);
  }
}

inline bool mul_ok(int64_t a, int64_t b, int64_t *out) { return !__builtin_mul_overflow(a, b, out); }
inline bool add_ok(int64_t a, int64_t b, int64_t *out) { return !__builtin_add_overflow(a, b, out); }

}  // namespace hope_fuzz
