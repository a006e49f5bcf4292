// fuzz_rope.cc — libFuzzer harness for the frequency and rotation entry points (SPEC §3, §4):
// hope_rope_components, hope_rope_cos_sin, hope_rope_cache_create/fill/get/destroy (host caches; a device
// cache only where no GPU is present, where it must fail with a message) and hope_rope_apply (CPU backend).
// Inputs: arbitrary configs (unknown kinds, odd/negative/huge head_dim, sections that do not sum, NaN/inf/<=1
// theta; SPEC §8 pairing, rotary_dim and model-exact frequencies, valid and not),
// capacities up to INT64_MAX (allocation failure must be a status, not a crash), offsets and n beyond
// the capacity, positions_ld smaller than n, positions NaN/inf/huge, strides smaller than a row, NULLs.
// Checks: components equal the SPEC §3 table; cos/sin within 2e-6 of double for |position| <= 2^20 and exactly
// (1, 0) on "none" pairs; a fill writes exactly rows [offset, offset + n); rope_apply matches the double
// rotation and leaves the gaps between strided rows untouched; failures leave a message and write nothing.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "fuzz_util.h"

using namespace hope_fuzz;

namespace {

bool have_gpu() {
  static int cached = -1;
  if (cached < 0) {
    int32_t n = 0;
    cached = hope_cuda_device_count(&n) == HOPE_SUCCESS && n > 0;
  }
  return cached == 1;
}

int32_t rotary_half(const hope_rope_config_t &c) { return (c.rotary_dim != 0 ? c.rotary_dim : c.head_dim) / 2; }

hope_rope_config_t read_config(Reader &in) {
  hope_rope_config_t c{};
  std::memset(&c, 0, sizeof c);
  uint32_t variant = 0;
  if (in.u8() < 240) {
    const uint8_t kb = in.u8();  // kind = kb % 5; kb / 5 != 0 asks for the SPEC §8 fields
    c.kind = kb % 5;
    variant = kb / 5;
  } else {
    c.kind = in.edge_i32();
  }
  const uint8_t hd = in.u8();
  c.head_dim = hd < 220 ? 2 * (1 + hd % 40) : in.edge_i32();
  const int32_t half = c.head_dim / 2;
  if (in.u8() < 220 && half > 0) {  // sections that sum to half
    const int32_t a = in.range(0, 255) % (half + 1);
    const int32_t b = in.range(0, 255) % (half - a + 1);
    c.sections[0] = a;
    c.sections[1] = b;
    c.sections[2] = half - a - b;
  } else {
    c.sections[0] = in.edge_i32();
    c.sections[1] = in.edge_i32();
    c.sections[2] = in.edge_i32();
  }
  const uint8_t th = in.u8();
  c.theta = th < 100 ? 10000.0 : th < 200 ? 1e6 : in.edge_double();
  read_rotary_fields(in, variant != 0, c.head_dim, &c.pairing, &c.rotary_dim);
  if (variant != 0) {
    const uint8_t mb = in.u8();
    c.model_exact_freqs = mb < 250 ? mb & 1 : in.edge_i32();
    // Sections that summed to head_dim / 2 are cut down to sum to rotary_dim / 2 (when that is valid).
    const int64_t sum = static_cast<int64_t>(c.sections[0]) + c.sections[1] + c.sections[2];
    if (c.rotary_dim >= 2 && c.rotary_dim <= c.head_dim && c.rotary_dim % 2 == 0 && sum == c.head_dim / 2 &&
        c.sections[0] >= 0 && c.sections[1] >= 0 && c.sections[2] >= 0) {
      const int32_t rh = c.rotary_dim / 2;
      c.sections[0] = std::min(c.sections[0], rh);
      c.sections[1] = std::min(c.sections[1], rh - c.sections[0]);
      c.sections[2] = rh - c.sections[0] - c.sections[1];
    }
  }
  return c;
}

bool config_valid(const hope_rope_config_t &c) {
  if (c.kind < HOPE_ROPE_VANILLA || c.kind > HOPE_ROPE_HOPE) return false;
  if (c.head_dim < 2 || c.head_dim > 1024 || c.head_dim % 2 != 0) return false;
  if (!(std::isfinite(c.theta) && c.theta > 1.0)) return false;
  if (!rotary_fields_valid(c.pairing, c.rotary_dim, c.head_dim)) return false;
  if (c.model_exact_freqs != 0 && c.model_exact_freqs != 1) return false;
  if (c.model_exact_freqs == 1 && c.theta > 3.4028234663852886e38) return false;
  if (c.kind == HOPE_ROPE_VANILLA) return true;
  const int64_t sum = static_cast<int64_t>(c.sections[0]) + c.sections[1] + c.sections[2];
  return c.sections[0] >= 0 && c.sections[1] >= 0 && c.sections[2] >= 0 && sum == rotary_half(c);
}

// inv_i of SPEC §3 / §8 over the rotary dimension: theta^(-2i/r) (long double), or the model-exact float32 value.
double inv_freq(const hope_rope_config_t &c, int i) {
  const int r = 2 * rotary_half(c);
  if (!c.model_exact_freqs) return static_cast<double>(std::pow(static_cast<long double>(c.theta), -2.0L * i / r));
  const float e = static_cast<float>(static_cast<long double>(2 * i) / r);
  const float pw = static_cast<float>(std::pow(static_cast<long double>(static_cast<float>(c.theta)),
                                               static_cast<long double>(e)));
  return static_cast<double>(static_cast<float>(1.0L / pw));
}

// SPEC §3's table, from the text.
std::vector<int> components(const hope_rope_config_t &c) {
  const int half = rotary_half(c), st = c.sections[0], sh = c.sections[1], sw = c.sections[2];
  std::vector<int> out(half);
  for (int i = 0; i < half; ++i) {
    switch (c.kind) {
      case HOPE_ROPE_VANILLA: out[i] = HOPE_COMPONENT_T; break;
      case HOPE_ROPE_MROPE: out[i] = i < st ? HOPE_COMPONENT_T : i < st + sh ? HOPE_COMPONENT_H : HOPE_COMPONENT_W; break;
      case HOPE_ROPE_MROPE_INTERLEAVED:
        out[i] = (i % 3 == 1 && i < 3 * sh) ? HOPE_COMPONENT_H : (i % 3 == 2 && i < 3 * sw) ? HOPE_COMPONENT_W : HOPE_COMPONENT_T;
        break;
      case HOPE_ROPE_VIDEOROPE:
        out[i] = i < sh + sw ? (i % 2 == 0 ? HOPE_COMPONENT_H : HOPE_COMPONENT_W) : HOPE_COMPONENT_T;
        break;
      default:
        out[i] = i < sh + sw ? (i % 2 == 0 ? HOPE_COMPONENT_H : HOPE_COMPONENT_W) : HOPE_COMPONENT_NONE;
        break;
    }
  }
  return out;
}

float read_position(Reader &in) {
  const uint8_t v = in.u8();
  if (v < 120) return static_cast<float>(v);
  if (v < 200) return static_cast<float>(in.u32() % (1u << 21)) * (v & 1 ? 0.25f : 1.0f);
  return in.edge_float();
}

// Checks cos/sin rows of n tokens (row r at cos + r*half) from positions [3][ld].
void check_cos_sin(const hope_rope_config_t &c, const float *pos, int64_t ld, int64_t n, const float *cs,
                   const float *sn, const char *what) {
  const std::vector<int> comp = components(c);
  const int half = rotary_half(c);
  for (int64_t k = 0; k < n; ++k) {
    for (int i = 0; i < half; ++i) {
      const float gc = cs[k * half + i], gs = sn[k * half + i];
      if (comp[i] == HOPE_COMPONENT_NONE) {
        FUZZ_CHECK(gc == 1.0f && gs == 0.0f, "%s: token %lld pair %d is 'none' but has cos %g sin %g", what,
                   (long long)k, i, (double)gc, (double)gs);
        continue;
      }
      const double p = pos[comp[i] * ld + k];
      if (!std::isfinite(p) || std::fabs(p) > 1048576.0) {
        FUZZ_CHECK(!(std::fabs(gc) > 1.0f) && !(std::fabs(gs) > 1.0f) || std::isnan(p),
                   "%s: |cos| or |sin| > 1 at token %lld pair %d", what, (long long)k, i);
        continue;
      }
      const double a = p * inv_freq(c, i);
      FUZZ_CHECK(std::fabs(gc - std::cos(a)) <= 2e-6 && std::fabs(gs - std::sin(a)) <= 2e-6,
                 "%s: token %lld pair %d position %.9g: cos %.9g sin %.9g, double %.17g %.17g", what, (long long)k, i,
                 p, (double)gc, (double)gs, std::cos(a), std::sin(a));
    }
  }
}

bool positions_finite(const hope_rope_config_t &c, const float *pos, int64_t ld, int64_t n) {
  const std::vector<int> comp = components(c);
  for (int r = 0; r < 3; ++r) {
    if (std::find(comp.begin(), comp.end(), r) == comp.end()) continue;
    for (int64_t k = 0; k < n; ++k)
      if (!std::isfinite(pos[r * ld + k])) return false;
  }
  return true;
}

void fuzz_components_cos_sin(Reader &in) {
  const hope_rope_config_t c = read_config(in);
  const bool valid = config_valid(c);
  const bool null_cfg = in.u8() == 3;
  const int32_t half = valid ? rotary_half(c) : 0;
  Buffer comp(static_cast<size_t>(half) * sizeof(int32_t));
  comp.fill(0x55);
  hope_status_t s = hope_rope_components(null_cfg ? nullptr : &c, valid && in.u8() != 7 ? comp.as<int32_t>() : nullptr);
  if (!valid || null_cfg) {
    expect_failure_message(s, "hope_rope_components(invalid)");
    if (null_cfg) return;
  } else {
    FUZZ_CHECK(s == HOPE_SUCCESS, "hope_rope_components failed on a valid config");
  }
  if (valid && s == HOPE_SUCCESS && comp.as<int32_t>()[0] != 0x55555555) {
    const std::vector<int> want = components(c);
    for (int i = 0; i < half; ++i)
      FUZZ_CHECK(comp.as<int32_t>()[i] == want[i], "kind %d d %d sections %d %d %d: c(%d) = %d, expected %d", c.kind,
                 c.head_dim, c.sections[0], c.sections[1], c.sections[2], i, comp.as<int32_t>()[i], want[i]);
  }

  const int64_t n = in.flag() ? in.range(0, 9) : in.edge_i64();
  if (valid && n > 64) return;
  const int64_t stored = n > 0 && n <= 64 ? n : 1;
  Buffer pos(static_cast<size_t>(3 * stored) * sizeof(float));
  for (int64_t i = 0; i < 3 * stored; ++i) pos.as<float>()[i] = read_position(in);
  const size_t table = static_cast<size_t>(stored) * static_cast<size_t>(std::max<int32_t>(half, 1)) * sizeof(float);
  Buffer cs(table), sn(table);
  cs.fill(0x7f);
  sn.fill(0x7f);
  const auto cs_before = cs.snapshot();
  const bool null_out = in.u8() == 5;
  s = hope_rope_cos_sin(&c, pos.as<float>(), n, null_out ? nullptr : cs.as<float>(), sn.as<float>());
  const bool call_valid = valid && n >= 0 && !(null_out && n > 0);
  if (!call_valid) {
    expect_failure_message(s, "hope_rope_cos_sin(invalid)");
    FUZZ_CHECK(cs.equals(cs_before), "hope_rope_cos_sin wrote on failure");
    return;
  }
  if (!positions_finite(c, pos.as<float>(), n, n)) {  // may refuse a non-finite position a pair reads
    check_status_sane(s, "hope_rope_cos_sin(non-finite position)");
    return;
  }
  FUZZ_CHECK(s == HOPE_SUCCESS, "hope_rope_cos_sin failed on a valid call");
  check_cos_sin(c, pos.as<float>(), n, n, cs.as<float>(), sn.as<float>(), "hope_rope_cos_sin");
}

void fuzz_cache(Reader &in) {
  const hope_rope_config_t c = read_config(in);
  const bool valid = config_valid(c);
  const int64_t capacity = in.flag() ? in.range(0, 40) : in.edge_i64();
  const uint8_t mem_sel = in.u8();
  const int32_t memory = mem_sel < 240 ? HOPE_MEMORY_HOST : mem_sel < 250 ? HOPE_MEMORY_DEVICE : in.edge_i32();
  if (memory == HOPE_MEMORY_DEVICE && have_gpu()) return;  // host-only harness: device tables are not readable here
  hope_rope_cache_t cache = reinterpret_cast<hope_rope_cache_t>(static_cast<uintptr_t>(0xdeadbeef));
  const hope_status_t s = hope_rope_cache_create(&c, capacity, static_cast<hope_memory_t>(memory), &cache);
  if (!valid || capacity < 1 || memory != HOPE_MEMORY_HOST) {
    expect_failure_message(s, "hope_rope_cache_create(invalid)");
    FUZZ_CHECK(cache == nullptr, "hope_rope_cache_create: *cache is not NULL after a failure");
    return;
  }
  if (s != HOPE_SUCCESS) {  // a valid call may only run out of memory
    FUZZ_CHECK(s == HOPE_ERROR_OUT_OF_MEMORY || s == HOPE_ERROR_INVALID_VALUE,
               "hope_rope_cache_create(capacity %lld) failed with %s", (long long)capacity, hope_status_string(s));
    expect_failure_message(s, "hope_rope_cache_create(huge)");
    FUZZ_CHECK(cache == nullptr, "hope_rope_cache_create: *cache is not NULL after a failure");
    FUZZ_CHECK(capacity > 4096, "hope_rope_cache_create refused a small capacity %lld", (long long)capacity);
    return;
  }
  FUZZ_CHECK(cache != nullptr, "hope_rope_cache_create succeeded with a NULL cache");
  const int32_t half = rotary_half(c);
  const float *ctab = nullptr, *stab = nullptr;
  int64_t cap = -1;
  hope_memory_t where = HOPE_MEMORY_DEVICE;
  FUZZ_CHECK(hope_rope_cache_get(cache, &ctab, &stab, &cap, &where) == HOPE_SUCCESS, "hope_rope_cache_get failed");
  FUZZ_CHECK(cap == capacity && where == HOPE_MEMORY_HOST && ctab != nullptr && stab != nullptr,
             "hope_rope_cache_get: capacity %lld memory %d", (long long)cap, (int)where);
  FUZZ_CHECK(hope_rope_cache_get(cache, nullptr, nullptr, nullptr, nullptr) == HOPE_SUCCESS,
             "hope_rope_cache_get with all outputs NULL failed");

  const bool small = capacity <= 4096;
  if (small) {  // fill every row with position 0 (cos 1, sin 0) to see later which rows a fill touched
    std::vector<float> zeros(static_cast<size_t>(3 * capacity), 0.0f);
    FUZZ_CHECK(hope_rope_cache_fill(cache, 0, zeros.data(), capacity, 0, HOPE_MEMORY_HOST, nullptr) == HOPE_SUCCESS,
               "hope_rope_cache_fill of the whole cache failed");
  }
  for (int round = 0; round < 3 && !in.empty(); ++round) {
    const int64_t offset = in.flag() ? in.range(0, 40) : in.edge_i64();
    const int64_t n = in.flag() ? in.range(0, 12) : in.edge_i64();
    const uint8_t ldsel = in.u8();
    const int64_t ld = ldsel < 128 || (ldsel < 230 && n > (1 << 20)) ? 0 : ldsel < 230 ? n + ldsel % 4 : in.edge_i64();
    const int64_t eff_ld = ld == 0 ? n : ld;
    const bool null_pos = in.u8() == 9;
    const uint8_t pm = in.u8();
    const int32_t pos_mem = pm < 245 ? HOPE_MEMORY_HOST : pm < 250 ? HOPE_MEMORY_DEVICE : in.edge_i32();
    if (pos_mem == HOPE_MEMORY_DEVICE && have_gpu()) continue;
    int64_t end = 0;
    const bool shape_ok = offset >= 0 && n >= 0 && add_ok(offset, n, &end) && end <= capacity &&
                          (ld == 0 || ld >= n) && (n == 0 || !null_pos);
    // positions: exactly 2*ld + n floats (the last row needs only n), when that is small.
    int64_t need = 0;
    const bool fits = n >= 0 && n <= 64 && eff_ld >= 0 && eff_ld <= 256;
    if (fits) need = 2 * eff_ld + n;
    if (shape_ok && pos_mem == HOPE_MEMORY_HOST && !fits) continue;  // valid but too large for this harness
    Buffer pos(static_cast<size_t>(fits ? need : 3) * sizeof(float));
    for (int64_t i = 0; i < (fits ? need : 3); ++i) pos.as<float>()[i] = read_position(in);
    std::vector<float> cs_before, sn_before;
    if (small) {
      cs_before.assign(ctab, ctab + capacity * half);
      sn_before.assign(stab, stab + capacity * half);
    }
    const hope_status_t f = hope_rope_cache_fill(cache, offset, null_pos ? nullptr : pos.as<float>(), n, ld,
                                                 static_cast<hope_memory_t>(pos_mem), nullptr);
    const bool call_valid = shape_ok && pos_mem == HOPE_MEMORY_HOST;
    if (shape_ok && n == 0) {  // "n == 0 is a no-op": where the (unread) positions live may go unchecked
      check_status_sane(f, "hope_rope_cache_fill(n = 0)");
      continue;
    }
    if (!call_valid || (f != HOPE_SUCCESS && n > 0 && !positions_finite(c, pos.as<float>(), eff_ld, n))) {
      char what[256];
      std::snprintf(what, sizeof what,
                    "hope_rope_cache_fill(capacity %lld, offset %lld, n %lld, ld %lld, positions %s, memory %d)",
                    (long long)capacity, (long long)offset, (long long)n, (long long)ld, null_pos ? "NULL" : "set",
                    pos_mem);
      expect_failure_message(f, what);
      if (small)
        FUZZ_CHECK(std::equal(cs_before.begin(), cs_before.end(), ctab) &&
                       std::equal(sn_before.begin(), sn_before.end(), stab),
                   "hope_rope_cache_fill wrote the tables on failure");
      continue;
    }
    if (n > 0 && !positions_finite(c, pos.as<float>(), eff_ld, n)) {
      check_status_sane(f, "hope_rope_cache_fill(non-finite)");
      continue;
    }
    FUZZ_CHECK(f == HOPE_SUCCESS, "hope_rope_cache_fill(offset %lld, n %lld, ld %lld) failed on a valid call",
               (long long)offset, (long long)n, (long long)ld);
    check_cos_sin(c, pos.as<float>(), eff_ld, n, ctab + offset * half, stab + offset * half, "hope_rope_cache_fill");
    if (small) {
      for (int64_t r = 0; r < capacity; ++r) {
        if (r >= offset && r < offset + n) continue;
        FUZZ_CHECK(std::equal(ctab + r * half, ctab + (r + 1) * half, cs_before.begin() + r * half) &&
                       std::equal(stab + r * half, stab + (r + 1) * half, sn_before.begin() + r * half),
                   "hope_rope_cache_fill(offset %lld, n %lld) changed row %lld", (long long)offset, (long long)n,
                   (long long)r);
      }
    }
  }
  FUZZ_CHECK(hope_rope_cache_destroy(cache) == HOPE_SUCCESS, "hope_rope_cache_destroy failed");
}

void fuzz_apply(Reader &in) {
  hope_rope_apply_params_t p{};
  std::memset(&p, 0, sizeof p);
  const uint8_t be = in.u8();
  p.backend = be < 240 ? HOPE_BACKEND_CPU : be < 250 ? HOPE_BACKEND_CUDA : in.edge_i32();
  if (p.backend == HOPE_BACKEND_CUDA && have_gpu()) return;
  uint32_t variant = 0;  // spare bits of the dtype byte (0 in the older seeds): read the SPEC §8 fields
  if (in.u8() < 240) {
    const uint8_t db = in.u8();
    p.dtype = db % 3;
    variant = db / 3;
  } else {
    p.dtype = in.edge_i32();
  }
  p.num_tokens = in.flag() ? in.range(0, 9) : in.edge_i64();
  p.num_heads = in.flag() ? in.range(1, 5) : in.edge_i32();
  const uint8_t hd = in.u8();
  p.head_dim = hd < 230 ? 2 * (1 + hd % 20) : in.edge_i32();
  const uint8_t xs = in.u8();
  p.x_row_stride = xs < 128 ? 0 : xs < 220 ? static_cast<int64_t>(p.num_heads) * p.head_dim + xs % 5 : in.edge_i64();
  const uint8_t os = in.u8();
  p.out_row_stride = os < 128 ? 0 : os < 220 ? static_cast<int64_t>(p.num_heads) * p.head_dim + os % 5 : in.edge_i64();
  const bool in_place = in.u8() < 64;
  const uint8_t nulls = in.u8();
  Rng rng(in.u64());
  read_rotary_fields(in, variant != 0, p.head_dim, &p.rope_pairing, &p.rotary_dim);

  const bool shape_ok = (p.backend == HOPE_BACKEND_CPU) && dtype_valid(p.dtype) && p.num_tokens >= 0 &&
                        p.num_heads >= 1 && p.head_dim >= 2 && p.head_dim <= 1024 && p.head_dim % 2 == 0 &&
                        rotary_fields_valid(p.rope_pairing, p.rotary_dim, p.head_dim);
  const int64_t width = shape_ok ? static_cast<int64_t>(p.num_heads) * p.head_dim : 0;
  const int64_t xs_eff = p.x_row_stride == 0 ? width : p.x_row_stride;
  const int64_t os_eff = in_place ? xs_eff : (p.out_row_stride == 0 ? width : p.out_row_stride);
  if (in_place) p.out_row_stride = p.x_row_stride;
  const bool strides_ok = xs_eff >= width && os_eff >= width;
  const int32_t rot = shape_ok ? (p.rotary_dim != 0 ? p.rotary_dim : p.head_dim) : 2;
  const int64_t half = rot / 2;
  // Exact sizes: (tokens - 1) * stride + width elements.
  const bool fits = shape_ok && strides_ok && p.num_tokens <= 64 && xs_eff <= 8192 && os_eff <= 8192;
  const int64_t x_elems = fits && p.num_tokens > 0 ? (p.num_tokens - 1) * xs_eff + width : 1;
  const int64_t o_elems = fits && p.num_tokens > 0 ? (p.num_tokens - 1) * os_eff + width : 1;
  const int64_t t_elems = fits ? p.num_tokens * half : 1;
  const int32_t dt = dtype_valid(p.dtype) ? p.dtype : HOPE_DTYPE_FLOAT32;
  Buffer x(static_cast<size_t>(x_elems) * dtype_bytes(dt)), out(static_cast<size_t>(o_elems) * dtype_bytes(dt));
  Buffer cs(static_cast<size_t>(t_elems) * sizeof(float)), sn(static_cast<size_t>(t_elems) * sizeof(float));
  fill_random(x.get(), dt, x_elems, rng);
  out.fill(0xee);
  fill_cos_sin(cs.as<float>(), sn.as<float>(), t_elems, rng);
  const std::vector<uint8_t> x_orig = x.snapshot(), out_before = in_place ? x.snapshot() : out.snapshot();
  p.x = (nulls & 0x7) == 1 ? nullptr : x.get();
  p.out = (nulls & 0x7) == 2 ? nullptr : in_place ? x.get() : out.get();
  p.cos = (nulls & 0x7) == 3 ? nullptr : cs.as<float>();
  p.sin = (nulls & 0x7) == 4 ? nullptr : sn.as<float>();
  const bool nulls_ok = p.num_tokens == 0 || (p.x && p.out && p.cos && p.sin);
  const bool valid = shape_ok && strides_ok && nulls_ok;
  if (valid && !fits) return;

  const hope_status_t s = hope_rope_apply(&p, nullptr);
  const Buffer &result = in_place ? x : out;
  if (!valid) {
    expect_failure_message(s, "hope_rope_apply(invalid)");
    FUZZ_CHECK(result.equals(out_before), "hope_rope_apply wrote on failure");
    return;
  }
  if (in_place && s != HOPE_SUCCESS) {  // in place with different strides may be refused
    expect_failure_message(s, "hope_rope_apply(in place)");
    return;
  }
  FUZZ_CHECK(s == HOPE_SUCCESS, "hope_rope_apply(dtype %d, %lld tokens, %d heads, d %d) failed on a valid call", p.dtype,
             (long long)p.num_tokens, p.num_heads, p.head_dim);
  const double tol = p.dtype == HOPE_DTYPE_FLOAT32 ? 1e-5 : 2 * dtype_eps(p.dtype);
  const void *x0 = x_orig.data();
  std::vector<double> want(static_cast<size_t>(p.head_dim));
  for (int64_t t = 0; t < p.num_tokens; ++t) {
    for (int32_t h = 0; h < p.num_heads; ++h) {
      rotate_row_ref(x0, p.dtype, t * xs_eff + h * p.head_dim, p.head_dim, cs.as<float>() + t * half,
                     sn.as<float>() + t * half, p.rope_pairing, rot, false, want.data());
      for (int32_t e = 0; e < rot; ++e) {
        const double g = load(result.get(), p.dtype, t * os_eff + h * p.head_dim + e);
        FUZZ_CHECK(std::fabs(g - want[e]) <= tol * (1 + std::fabs(want[e])),
                   "hope_rope_apply: token %lld head %d dim %d (pairing %d, rotary_dim %d): got %g, expected %g",
                   (long long)t, h, e, p.rope_pairing, rot, g, want[e]);
      }
      // Dims past rotary_dim: the input's bits.
      const size_t eb = dtype_bytes(p.dtype);
      const size_t xo = static_cast<size_t>(t * xs_eff + h * p.head_dim + rot) * eb;
      const size_t oo = static_cast<size_t>(t * os_eff + h * p.head_dim + rot) * eb;
      FUZZ_CHECK(std::memcmp(static_cast<const uint8_t *>(result.get()) + oo, x_orig.data() + xo,
                             static_cast<size_t>(p.head_dim - rot) * eb) == 0,
                 "hope_rope_apply: token %lld head %d: dims past rotary_dim %d changed", (long long)t, h, rot);
    }
    // The gap after each row's width (strided output) must be untouched.
    if (t + 1 < p.num_tokens) {
      const size_t eb = dtype_bytes(p.dtype);
      const size_t from = static_cast<size_t>(t * os_eff + width) * eb, to = static_cast<size_t>((t + 1) * os_eff) * eb;
      FUZZ_CHECK(std::memcmp(static_cast<const uint8_t *>(result.get()) + from, out_before.data() + from, to - from) == 0,
                 "hope_rope_apply wrote between rows %lld and %lld", (long long)t, (long long)t + 1);
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  Reader in(data, size);
  switch (in.u8() % 3) {
    case 0: fuzz_components_cos_sin(in); break;
    case 1: fuzz_cache(in); break;
    default: fuzz_apply(in); break;
  }
  return 0;
}
