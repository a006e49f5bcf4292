// fuzz_serving.cc — libFuzzer harness for the serving entry points on the CPU backend: hope_kv_append,
// hope_decode_workspace_size + hope_decode_forward, hope_merge_states (and their argument checks for the CUDA
// backend where no GPU is present).
// Inputs: arbitrary paged-cache shapes (zero/negative pages, page sizes, heads, odd head_dim), SPEC §8 pairing and
// rotary_dim of kv_append and decode (valid and not), slot mappings with negative (skip) and out-of-range slots,
// page tables pointing outside the cache, seq_lens above max_seqlen_k or the pages a sequence owns, cu_seqlens_q
// with more than 8 tokens per sequence or decreasing, forced split counts, workspaces that are too small, lse
// values of -inf on one or both sides, aliasing of out with o_a / o_b, NULL pointers.
// Checks: failures leave a message and write nothing; a successful append wrote exactly the mapped slots
// (rotated K, V as given) and nothing else; decode and merge match a float64 recomputation within the SPEC §6
// tolerances (no visible key / both sides -inf: out 0, lse -inf).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
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

int32_t read_backend(Reader &in) {
  const uint8_t be = in.u8();
  return be < 235 ? HOPE_BACKEND_CPU : be < 250 ? HOPE_BACKEND_CUDA : in.edge_i32();
}

double tol_for(int32_t dtype) { return dtype == HOPE_DTYPE_FLOAT32 ? 1e-5 : 2 * dtype_eps(dtype); }

// A paged cache: small valid shapes mostly, edge values sometimes.
struct Cache {
  hope_paged_kv_t kv{};
  bool valid = false;
  int64_t elems = 0;  // per k or v table
  Buffer k, v;
};

void read_cache(Reader &in, Rng &rng, Cache *c) {
  c->kv.dtype = in.u8() < 245 ? in.range(0, 2) : in.edge_i32();
  c->kv.num_pages = in.u8() < 240 ? in.range(0, 6) : in.edge_i32();
  c->kv.page_size = in.u8() < 240 ? in.range(0, 5) : in.edge_i32();
  c->kv.num_kv_heads = in.u8() < 240 ? in.range(0, 3) : in.edge_i32();
  const uint8_t hd = in.u8();
  c->kv.head_dim = hd < 235 ? 2 * (1 + hd % 12) : in.edge_i32();
  const bool shape_ok = dtype_valid(c->kv.dtype) && c->kv.num_pages >= 1 && c->kv.page_size >= 1 &&
                        c->kv.num_kv_heads >= 1 && c->kv.head_dim >= 2 && c->kv.head_dim <= 1024 &&
                        c->kv.head_dim % 2 == 0;
  int64_t e = 1;
  const bool fits = shape_ok && mul_ok(c->kv.num_pages, c->kv.page_size, &e) && mul_ok(e, c->kv.num_kv_heads, &e) &&
                    mul_ok(e, c->kv.head_dim, &e) && e <= (1 << 16);
  c->elems = fits ? e : 1;
  const int32_t dt = dtype_valid(c->kv.dtype) ? c->kv.dtype : HOPE_DTYPE_FLOAT32;
  c->k = Buffer(static_cast<size_t>(c->elems) * dtype_bytes(dt));
  c->v = Buffer(static_cast<size_t>(c->elems) * dtype_bytes(dt));
  fill_random(c->k.get(), dt, c->elems, rng);
  fill_random(c->v.get(), dt, c->elems, rng);
  const uint8_t nulls = in.u8();
  c->kv.k_pages = nulls == 1 ? nullptr : c->k.get();
  c->kv.v_pages = nulls == 2 ? nullptr : c->v.get();
  c->valid = shape_ok && c->kv.k_pages && c->kv.v_pages;
  if (shape_ok && !fits) c->valid = false, c->kv.num_pages = -1;  // too big to allocate: make it plainly invalid
}

void fuzz_kv_append(Reader &in) {
  hope_kv_append_params_t p{};
  std::memset(&p, 0, sizeof p);
  p.backend = read_backend(in);
  if (p.backend == HOPE_BACKEND_CUDA && have_gpu()) return;
  Rng rng(in.u64());
  Cache c;
  read_cache(in, rng, &c);
  p.cache = c.kv;
  p.num_tokens = in.flag() ? in.range(0, 8) : in.edge_i64();
  const int32_t Hk = c.kv.num_kv_heads, d = c.kv.head_dim, dt = dtype_valid(c.kv.dtype) ? c.kv.dtype : HOPE_DTYPE_FLOAT32;
  const int64_t width = c.valid ? static_cast<int64_t>(Hk) * d : 1;
  auto read_stride = [&]() -> int64_t {
    const uint8_t s = in.u8();
    return s < 170 ? 0 : s < 230 ? width + s % 3 : s < 240 ? width - 1 : in.edge_i64();
  };
  p.k_row_stride = read_stride();
  p.v_row_stride = read_stride();
  const int64_t ks = p.k_row_stride ? p.k_row_stride : width, vs = p.v_row_stride ? p.v_row_stride : width;
  const uint8_t rot_byte = in.u8();
  const bool rot = (rot_byte & 1) != 0;
  read_rotary_fields(in, (rot_byte >> 1) != 0, d, &p.rope_pairing, &p.rotary_dim);
  const bool rotary_ok = rotary_fields_valid(p.rope_pairing, p.rotary_dim, d);
  const int32_t rdim = c.valid && rotary_ok ? (p.rotary_dim != 0 ? p.rotary_dim : d) : 2;
  const int64_t half = rdim / 2;
  const uint8_t nulls = in.u8();
  const int64_t slots = c.valid ? static_cast<int64_t>(c.kv.num_pages) * c.kv.page_size : 0;

  const bool shape_ok = p.backend == HOPE_BACKEND_CPU && c.valid && p.num_tokens >= 0 && ks >= width && vs >= width &&
                        p.k_row_stride >= 0 && p.v_row_stride >= 0 && rotary_ok;
  const bool fits = shape_ok && p.num_tokens <= 16 && ks <= 4096 && vs <= 4096;
  const int64_t n = fits ? p.num_tokens : 1;
  Buffer k(static_cast<size_t>(n > 0 ? (n - 1) * (fits ? ks : 1) + width : 0) * dtype_bytes(dt));
  Buffer v(static_cast<size_t>(n > 0 ? (n - 1) * (fits ? vs : 1) + width : 0) * dtype_bytes(dt));
  Buffer map(static_cast<size_t>(n) * 8), cs(static_cast<size_t>(n * half) * 4), sn(static_cast<size_t>(n * half) * 4);
  fill_random(k.get(), dt, static_cast<int64_t>(k.bytes() / dtype_bytes(dt)), rng);
  fill_random(v.get(), dt, static_cast<int64_t>(v.bytes() / dtype_bytes(dt)), rng);
  fill_cos_sin(cs.as<float>(), sn.as<float>(), n * half, rng);
  bool slots_ok = true;
  for (int64_t t = 0; t < n; ++t) {
    const uint8_t s = in.u8();
    int64_t slot = s < 200 ? (slots > 0 ? s % slots : 0) : s < 230 ? -1 : s < 240 ? slots : in.edge_i64();
    map.as<int64_t>()[t] = slot;
    if (slot >= slots) slots_ok = false;
  }
  p.k = nulls == 3 ? nullptr : k.get();
  p.v = nulls == 4 ? nullptr : v.get();
  p.slot_mapping = nulls == 5 ? nullptr : map.as<int64_t>();
  p.cos_k = rot && nulls != 6 ? cs.as<float>() : nullptr;
  p.sin_k = rot && nulls != 7 ? sn.as<float>() : nullptr;
  const bool ptrs_ok = p.k && p.v && p.slot_mapping && ((p.cos_k == nullptr) == (p.sin_k == nullptr));
  if (shape_ok && !fits) return;
  const auto k_before = c.k.snapshot(), v_before = c.v.snapshot();
  const hope_status_t s = hope_kv_append(&p, nullptr);
  const bool valid = shape_ok && slots_ok && ptrs_ok;
  if (shape_ok && p.num_tokens == 0) {
    check_status_sane(s, "hope_kv_append(0 tokens)");
    FUZZ_CHECK(c.k.equals(k_before) && c.v.equals(v_before), "hope_kv_append(0 tokens) wrote the cache");
    return;
  }
  if (!valid) {
    expect_failure_message(s, "hope_kv_append(invalid)");
    FUZZ_CHECK(c.k.equals(k_before) && c.v.equals(v_before), "hope_kv_append wrote the cache on failure");
    return;
  }
  FUZZ_CHECK(s == HOPE_SUCCESS, "hope_kv_append(%lld tokens) failed on a valid call", (long long)p.num_tokens);
  // Expected cache: the old one with each mapped slot replaced (slots mapped twice are not checked).
  std::vector<int> times(static_cast<size_t>(slots), 0);
  for (int64_t t = 0; t < n; ++t)
    if (map.as<int64_t>()[t] >= 0) ++times[map.as<int64_t>()[t]];
  std::vector<bool> written(static_cast<size_t>(slots), false);
  const double tol = tol_for(dt);
  std::vector<double> want(static_cast<size_t>(std::max(d, 1)));
  for (int64_t t = 0; t < n; ++t) {
    const int64_t slot = map.as<int64_t>()[t];
    if (slot < 0) continue;
    written[slot] = true;
    if (times[slot] > 1) continue;
    for (int32_t h = 0; h < Hk; ++h) {
      rotate_row_ref(k.get(), dt, t * ks + h * d, d, rot ? cs.as<float>() + t * half : nullptr,
                     rot ? sn.as<float>() + t * half : nullptr, p.rope_pairing, rdim, false, want.data());
      for (int32_t e = 0; e < d; ++e) {
        const int64_t at = (slot * Hk + h) * d + e;
        const double gk = load(c.k.get(), dt, at), gv = load(c.v.get(), dt, at);
        const double wv = load(v.get(), dt, t * vs + h * d + e);
        FUZZ_CHECK(std::fabs(gk - want[e]) <= tol * (1 + std::fabs(want[e])),
                   "kv_append: slot %lld head %d dim %d: k %g, expected %g", (long long)slot, h, e, gk, want[e]);
        FUZZ_CHECK(gv == wv, "kv_append: slot %lld head %d dim %d: v %g, expected %g", (long long)slot, h, e, gv, wv);
      }
    }
  }
  const size_t slot_bytes = static_cast<size_t>(width) * dtype_bytes(dt);
  for (int64_t slot = 0; slot < slots; ++slot) {
    if (written[slot]) continue;
    FUZZ_CHECK(std::memcmp(c.k.as<uint8_t>() + slot * slot_bytes, k_before.data() + slot * slot_bytes, slot_bytes) == 0 &&
                   std::memcmp(c.v.as<uint8_t>() + slot * slot_bytes, v_before.data() + slot * slot_bytes, slot_bytes) == 0,
               "kv_append wrote slot %lld, which no token maps to", (long long)slot);
  }
}

void fuzz_decode(Reader &in) {
  hope_decode_params_t p{};
  std::memset(&p, 0, sizeof p);
  p.backend = read_backend(in);
  if (p.backend == HOPE_BACKEND_CUDA && have_gpu()) return;
  Rng rng(in.u64());
  Cache c;
  read_cache(in, rng, &c);
  p.cache = c.kv;
  const int32_t Hk = c.kv.num_kv_heads, d = c.kv.head_dim, dt = dtype_valid(c.kv.dtype) ? c.kv.dtype : HOPE_DTYPE_FLOAT32;
  p.batch = in.u8() < 240 ? in.range(0, 4) : in.edge_i32();
  const uint8_t g = in.u8();
  const int64_t hq = c.valid ? static_cast<int64_t>(Hk) * (1 + g % 3) + (g >= 230 ? 1 : 0) : 1;
  p.num_q_heads = g >= 245 ? in.edge_i32() : static_cast<int32_t>(std::min<int64_t>(hq, INT32_MAX));
  p.max_pages_per_seq = in.u8() < 240 ? in.range(0, 4) : in.edge_i32();
  const uint8_t sc = in.u8();
  p.softmax_scale = sc < 180 ? 0.0f : sc < 230 ? 0.2f : in.edge_float();
  const uint8_t ca = in.u8();
  p.causal = ca < 120 ? 0 : 1;
  const uint8_t ns = in.u8();
  p.num_splits = ns < 150 ? 0 : ns < 240 ? ns % 5 : in.edge_i32();
  const uint8_t rot_byte = in.u8();
  const bool rot = (rot_byte & 1) != 0, want_lse = in.flag();
  read_rotary_fields(in, (rot_byte >> 1) != 0, d, &p.rope_pairing, &p.rotary_dim);  // spare bits: SPEC §8 fields
  const bool rotary_ok = c.valid && rotary_fields_valid(p.rope_pairing, p.rotary_dim, d);
  const int32_t rdim = rotary_ok ? (p.rotary_dim != 0 ? p.rotary_dim : d) : 2;
  const uint8_t nulls = in.u8();
  if (p.batch < 0 || p.batch > 8 || p.max_pages_per_seq < 0 || p.max_pages_per_seq > 16) {
    // Shapes this harness does not allocate: only the refusal of a plainly invalid call is checked.
    if (p.batch >= 0 && p.max_pages_per_seq >= 0) return;
    const hope_status_t s = hope_decode_forward(&p, nullptr, 0, nullptr);
    expect_failure_message(s, "hope_decode_forward(negative batch or pages)");
    return;
  }
  const int64_t cap_tokens = c.valid ? static_cast<int64_t>(p.max_pages_per_seq) * c.kv.page_size : 0;
  std::vector<int32_t> cu(p.batch + 1, 0), lens(p.batch), table(static_cast<size_t>(p.batch) * p.max_pages_per_seq);
  bool seq_ok = true;
  int32_t max_q = 0, max_k = 0;
  for (int32_t b = 0; b < p.batch; ++b) {
    const uint8_t nq = in.u8();
    const int32_t n = nq < 230 ? nq % 5 : nq < 245 ? 9 : in.edge_i32();
    cu[b + 1] = static_cast<int32_t>(std::clamp<int64_t>(static_cast<int64_t>(cu[b]) + std::max(n, 0), 0, 4096));
    if (cu[b + 1] - cu[b] > 8) seq_ok = false;  // what the library is given: 0..8 queries per sequence
    max_q = std::max(max_q, cu[b + 1] - cu[b]);
    const uint8_t l = in.u8();
    int64_t len = l < 200 ? (cap_tokens > 0 ? l % (cap_tokens + 1) : 0) : l < 230 ? cap_tokens + 1 : in.edge_i32();
    if (len < cu[b + 1] - cu[b] && l < 200) len = std::min<int64_t>(cu[b + 1] - cu[b], cap_tokens);
    lens[b] = static_cast<int32_t>(len);
    if (len < 0 || len > cap_tokens) seq_ok = false;
    max_k = std::max<int32_t>(max_k, lens[b]);
  }
  for (auto &t : table) {
    const uint8_t v = in.u8();
    t = v < 240 ? (c.valid ? v % c.kv.num_pages : 0) : in.edge_i32();
  }
  bool table_ok = true;
  for (int32_t b = 0; b < p.batch && seq_ok; ++b) {
    const int64_t pages = c.valid && lens[b] > 0 ? (static_cast<int64_t>(lens[b]) + c.kv.page_size - 1) / c.kv.page_size : 0;
    for (int64_t i = 0; i < pages; ++i) {
      const int32_t pg = table[b * p.max_pages_per_seq + i];
      if (pg < 0 || pg >= c.kv.num_pages) table_ok = false;
    }
  }
  const uint8_t mq = in.u8();
  p.max_seqlen_q = mq < 200 ? std::max(max_q, 1) : mq < 230 ? max_q - 1 : in.edge_i32();
  const uint8_t mk = in.u8();
  p.max_seqlen_k = mk < 200 ? max_k : mk < 230 ? max_k - 1 : in.edge_i32();
  const int64_t total_q = cu[p.batch];
  const int64_t qw = p.num_q_heads >= 1 && p.num_q_heads <= 64 && c.valid ? static_cast<int64_t>(p.num_q_heads) * d : 1;
  const int64_t half = rdim / 2;
  Buffer q(static_cast<size_t>(total_q * qw) * dtype_bytes(dt)), out(static_cast<size_t>(total_q * qw) * dtype_bytes(dt));
  Buffer lse(static_cast<size_t>(total_q * (qw / std::max(d, 1))) * 4 * (c.valid ? 1 : 0));
  Buffer cs(static_cast<size_t>(total_q * half) * 4), sn(static_cast<size_t>(total_q * half) * 4);
  Buffer cub(cu.size() * 4), lensb(lens.size() * 4), tableb(table.size() * 4);
  std::memcpy(cub.get(), cu.data(), cub.bytes());
  if (lensb.bytes()) std::memcpy(lensb.get(), lens.data(), lensb.bytes());
  if (tableb.bytes()) std::memcpy(tableb.get(), table.data(), tableb.bytes());
  fill_random(q.get(), dt, total_q * qw, rng);
  fill_cos_sin(cs.as<float>(), sn.as<float>(), total_q * half, rng);
  out.fill(0xff);
  lse.fill(0xff);
  p.cu_seqlens_q = nulls == 3 ? nullptr : cub.as<int32_t>();
  p.seq_lens = nulls == 4 ? nullptr : lensb.as<int32_t>();
  p.page_table = nulls == 5 ? nullptr : tableb.as<int32_t>();
  p.q = nulls == 6 ? nullptr : q.get();
  p.out = nulls == 7 ? nullptr : out.get();
  p.lse = want_lse && c.valid ? lse.as<float>() : nullptr;
  p.cos_q = rot && nulls != 8 ? cs.as<float>() : nullptr;
  p.sin_q = rot && nulls != 9 ? sn.as<float>() : nullptr;

  if (c.valid && p.num_q_heads > 64 && p.num_q_heads % Hk == 0) return;  // valid, but beyond this harness's buffers
  const bool heads_ok = c.valid && p.num_q_heads >= 1 && p.num_q_heads % Hk == 0;
  const bool scal_ok = p.backend == HOPE_BACKEND_CPU && heads_ok && rotary_ok && std::isfinite(p.softmax_scale) &&
                       p.num_splits >= 0;
  const bool maxes_ok = p.max_seqlen_q >= max_q && p.max_seqlen_q <= 8 && p.max_seqlen_k >= max_k;
  const bool ptrs_ok = p.cu_seqlens_q && p.seq_lens && p.q && p.out && ((p.cos_q == nullptr) == (p.sin_q == nullptr)) &&
                       (p.page_table || p.max_pages_per_seq == 0);
  const bool valid = scal_ok && seq_ok && table_ok && maxes_ok && ptrs_ok && p.batch >= 1;
  // Allowed refusals of a call that satisfies the header: more splits than the planner supports, seq_len below
  // the query count, max_seqlen_q of 0 with a non-empty batch.
  {
    std::string desc;
    char buf[512];
    std::snprintf(buf, sizeof buf, "decode: backend %d scale %g dtype %d pages %d page_size %d Hk %d d %d batch %d Hq %d max_q %d max_k %d "
                  "pages/seq %d causal %d splits %d rot %d pairing %d rotary_dim %d lse %d nulls %d valid %d (cache %d scal %d seq %d table %d maxes %d ptrs %d);", p.backend, (double)p.softmax_scale, dt, c.kv.num_pages, c.kv.page_size, Hk, d,
                  p.batch, p.num_q_heads, p.max_seqlen_q, p.max_seqlen_k, p.max_pages_per_seq, p.causal, p.num_splits,
                  (int)rot, p.rope_pairing, p.rotary_dim, (int)want_lse, (int)nulls, (int)valid, (int)c.valid, (int)scal_ok, (int)seq_ok, (int)table_ok,
                  (int)maxes_ok, (int)ptrs_ok);
    desc += buf;
    for (int32_t b = 0; b < p.batch; ++b) {
      std::snprintf(buf, sizeof buf, " seq %d: q [%d, %d) len %d pages", b, cu[b], cu[b + 1], lens[b]);
      desc += buf;
      for (int32_t i = 0; i < p.max_pages_per_seq; ++i) {
        std::snprintf(buf, sizeof buf, " %d", table[b * p.max_pages_per_seq + i]);
        desc += buf;
      }
      desc += ";";
    }
    set_context("%s", desc.c_str());
  }
  size_t ws = 0;
  hope_status_t s = hope_decode_workspace_size(&p, &ws);
  if (s != HOPE_SUCCESS) {
    expect_failure_message(s, "hope_decode_workspace_size");
    ws = 0;
  }
  if (ws > (size_t(64) << 20)) return;
  Buffer work(ws);
  const auto out_before = out.snapshot(), lse_before = lse.snapshot();
  const bool small_ws = ws > 0 && in.u8() == 77;
  s = hope_decode_forward(&p, work.get(), small_ws ? ws - 1 : ws, nullptr);
  if (!valid || small_ws) {
    if (p.batch == 0 || (valid && small_ws && s == HOPE_SUCCESS)) {
      check_status_sane(s, "hope_decode_forward(batch 0)");
      return;
    }
    expect_failure_message(s, "hope_decode_forward(invalid)");
    FUZZ_CHECK(out.equals(out_before) && lse.equals(lse_before), "hope_decode_forward wrote out/lse on failure");
    return;
  }
  if (s != HOPE_SUCCESS) {
    expect_failure_message(s, "hope_decode_forward(valid)");
    bool short_len = false;
    for (int32_t b = 0; b < p.batch; ++b) short_len |= lens[b] < cu[b + 1] - cu[b];
    // Tolerated (reported to the lead): max_seqlen_q == 0 when every sequence has 0 queries.
    FUZZ_CHECK(short_len || p.num_splits > 0 || p.max_seqlen_q == 0, "hope_decode_forward refused a valid call with %s",
               hope_status_string(s));
    return;
  }
  // Float64 reference.
  if (p.softmax_scale > 1e6f) return;  // as in fuzz_attention: enormous scales are checked for memory safety only
  const int32_t Hq = p.num_q_heads, group = Hq / Hk, ps = c.kv.page_size;
  const double scale = p.softmax_scale > 0 ? p.softmax_scale : 1.0 / std::sqrt(static_cast<double>(d));
  double num = 0, den = 0, lse_err = 0;
  std::vector<double> qr(d);
  for (int32_t b = 0; b < p.batch; ++b) {
    const int64_t q0 = cu[b], Nq = cu[b + 1] - q0, L = lens[b];
    for (int64_t i = 0; i < Nq; ++i) {
      for (int32_t h = 0; h < Hq; ++h) {
        const int64_t qa = (q0 + i) * qw + static_cast<int64_t>(h) * d;
        // SPEC §4 / §8: rotated in float32, then rounded to the dtype (float16/bfloat16) before the products
        rotate_row_ref(q.get(), dt, qa, d, rot ? cs.as<float>() + (q0 + i) * half : nullptr,
                       rot ? sn.as<float>() + (q0 + i) * half : nullptr, p.rope_pairing, rdim, true, qr.data());
        const int32_t kh = h / group;
        const int64_t visible = p.causal ? std::max<int64_t>(0, std::min<int64_t>(L, L - Nq + i + 1)) : L;
        std::vector<double> s_(static_cast<size_t>(visible));
        double mx = -INFINITY;
        for (int64_t n = 0; n < visible; ++n) {
          const int64_t slot = static_cast<int64_t>(table[b * p.max_pages_per_seq + n / ps]) * ps + n % ps;
          double dot = 0;
          for (int32_t e = 0; e < d; ++e) dot += qr[e] * load(c.k.get(), dt, (slot * Hk + kh) * d + e);
          s_[n] = dot * scale;
          mx = std::max(mx, s_[n]);
        }
        double sum = 0;
        for (int64_t n = 0; n < visible; ++n) sum += std::exp(s_[n] - mx);
        for (int32_t e = 0; e < d; ++e) {
          double o = 0;
          for (int64_t n = 0; n < visible; ++n) {
            const int64_t slot = static_cast<int64_t>(table[b * p.max_pages_per_seq + n / ps]) * ps + n % ps;
            o += std::exp(s_[n] - mx) / sum * load(c.v.get(), dt, (slot * Hk + kh) * d + e);
          }
          const double got = load(out.get(), dt, qa + e);
          FUZZ_CHECK(std::isfinite(got), "decode: out not finite at token %lld head %d", (long long)(q0 + i), h);
          if (visible == 0) FUZZ_CHECK(got == 0.0, "decode: no visible key but out %g", got);
          num += (got - o) * (got - o);
          den += o * o;
        }
        if (p.lse) {
          const float gl = p.lse[h * total_q + q0 + i];
          if (visible == 0) FUZZ_CHECK(std::isinf(gl) && gl < 0, "decode: no visible key but lse %g", (double)gl);
          else lse_err = std::max(lse_err, std::fabs(gl - (mx + std::log(sum))));
        }
      }
    }
  }
  // The SPEC tolerances assume N(0,1) inputs at the default scale (<= 1/sqrt(2)); a fuzzed scale above 1 makes
  // softmax so sharp that dtype rounding of q alone moves lse past them, so only finiteness and the -inf rows
  // count then.
  if (scale > 1.0) return;
  const double rel = den > 0 ? std::sqrt(num / den) : std::sqrt(num);
  const double tol_o = dt == HOPE_DTYPE_FLOAT32 ? 1e-5 : dt == HOPE_DTYPE_FLOAT16 ? 2e-3 : 1e-2;
  const double tol_l = dt == HOPE_DTYPE_FLOAT32 ? 1e-4 : dt == HOPE_DTYPE_FLOAT16 ? 5e-3 : 2e-2;
  FUZZ_CHECK(rel <= tol_o, "decode dtype %d splits %d: relative error %g > %g", dt, p.num_splits, rel, tol_o);
  FUZZ_CHECK(lse_err <= tol_l, "decode dtype %d: lse error %g > %g", dt, lse_err, tol_l);
}

void fuzz_merge(Reader &in) {
  hope_merge_params_t p;
  std::memset(&p, 0, sizeof p);
  p.backend = read_backend(in);
  if (p.backend == HOPE_BACKEND_CUDA && have_gpu()) return;
  p.dtype = in.u8() < 245 ? in.range(0, 2) : in.edge_i32();
  p.num_tokens = in.flag() ? in.range(0, 7) : in.edge_i64();
  p.num_heads = in.u8() < 240 ? in.range(0, 4) : in.edge_i32();
  p.head_dim = in.u8() < 240 ? in.range(0, 33) : in.edge_i32();
  const uint8_t alias = in.u8() % 3;  // 0: separate out, 1: out = o_a, 2: out = o_b
  const bool want_lse = in.flag();
  const uint8_t nulls = in.u8();
  Rng rng(in.u64());
  const bool shape_ok = p.backend == HOPE_BACKEND_CPU && dtype_valid(p.dtype) && p.num_tokens >= 0 &&
                        p.num_heads >= 1 && p.head_dim >= 1;
  const bool fits = shape_ok && p.num_tokens <= 64 && p.num_heads <= 64 && p.head_dim <= 1024;
  if (shape_ok && !fits) return;
  const int32_t dt = dtype_valid(p.dtype) ? p.dtype : HOPE_DTYPE_FLOAT32;
  const int64_t n = fits ? p.num_tokens * p.num_heads * p.head_dim : 1, nl = fits ? p.num_tokens * p.num_heads : 1;
  Buffer oa(static_cast<size_t>(n) * dtype_bytes(dt)), ob(static_cast<size_t>(n) * dtype_bytes(dt));
  Buffer out(static_cast<size_t>(n) * dtype_bytes(dt)), la(static_cast<size_t>(nl) * 4), lb(static_cast<size_t>(nl) * 4);
  Buffer lo(static_cast<size_t>(nl) * 4);
  fill_random(oa.get(), dt, n, rng);
  fill_random(ob.get(), dt, n, rng);
  for (int64_t i = 0; i < nl; ++i) {
    const uint8_t a = in.u8(), b = in.u8();
    la.as<float>()[i] = a < 200 ? rng.normal() * 3 : a < 240 ? -INFINITY : static_cast<float>(a) * 10;
    lb.as<float>()[i] = b < 200 ? rng.normal() * 3 : b < 240 ? -INFINITY : -static_cast<float>(b) * 10;
  }
  out.fill(0xff);
  lo.fill(0xff);
  const auto oa0 = oa.snapshot(), ob0 = ob.snapshot(), out0 = out.snapshot(), lo0 = lo.snapshot();
  p.o_a = nulls == 1 ? nullptr : oa.get();
  p.o_b = nulls == 2 ? nullptr : ob.get();
  p.lse_a = nulls == 3 ? nullptr : la.as<float>();
  p.lse_b = nulls == 4 ? nullptr : lb.as<float>();
  void *out_ptr = alias == 1 ? oa.get() : alias == 2 ? ob.get() : out.get();
  p.out = nulls == 5 ? nullptr : out_ptr;
  p.lse_out = want_lse ? lo.as<float>() : nullptr;
  const bool valid = shape_ok && p.o_a && p.o_b && p.lse_a && p.lse_b && p.out;
  const hope_status_t s = hope_merge_states(&p, nullptr);
  if (shape_ok && p.num_tokens == 0) {
    check_status_sane(s, "hope_merge_states(0 tokens)");
    return;
  }
  if (!valid) {
    expect_failure_message(s, "hope_merge_states(invalid)");
    FUZZ_CHECK(oa.equals(oa0) && ob.equals(ob0) && out.equals(out0) && lo.equals(lo0),
               "hope_merge_states wrote on failure");
    return;
  }
  FUZZ_CHECK(s == HOPE_SUCCESS, "hope_merge_states failed on a valid call");
  const double tol = tol_for(dt);
  for (int64_t t = 0; t < p.num_tokens; ++t) {
    for (int32_t h = 0; h < p.num_heads; ++h) {
      const double a = la.as<float>()[h * p.num_tokens + t], b = lb.as<float>()[h * p.num_tokens + t];
      const double m = std::max(a, b);
      double wa = 0, wb = 0, l = -INFINITY;
      if (m != -INFINITY) {
        l = m + std::log(std::exp(a - m) + std::exp(b - m));
        wa = std::exp(a - l);
        wb = std::exp(b - l);
      }
      if (want_lse) {
        const float gl = lo.as<float>()[h * p.num_tokens + t];
        if (std::isinf(l)) FUZZ_CHECK(gl == l, "merge: lse %g, expected %g", (double)gl, l);
        else FUZZ_CHECK(std::fabs(gl - l) <= 1e-5 * (1 + std::fabs(l)), "merge: lse %g, expected %g", (double)gl, l);
      }
      for (int32_t e = 0; e < p.head_dim; ++e) {
        const int64_t i = (t * p.num_heads + h) * p.head_dim + e;
        const double want = wa * load(oa0.data(), dt, i) + wb * load(ob0.data(), dt, i);
        const double got = load(out_ptr, dt, i);
        FUZZ_CHECK(std::fabs(got - want) <= tol * (1 + std::fabs(want)),
                   "merge dtype %d alias %d: token %lld head %d dim %d: %g, expected %g (lse %g %g)", dt, alias,
                   (long long)t, h, e, got, want, a, b);
      }
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  Reader in(data, size);
  switch (in.u8() % 3) {
    case 0: fuzz_kv_append(in); break;
    case 1: fuzz_decode(in); break;
    default: fuzz_merge(in); break;
  }
  return 0;
}
