// fuzz_attention.cc — libFuzzer harness for hope_attention_forward on the CPU backend (SPEC §4, §5), plus the
// argument checks of the CUDA backend and of the unfused entry points where no GPU is present.
// Inputs: arbitrary batch/heads/head_dim (GQA ratios that do not divide, odd or huge head_dim), cu_seqlens that
// do not start at 0, decrease, exceed max_seqlen_* or claim totals near INT32_MAX, row strides smaller than a
// row or huge, NULL pointers in every position, half-given cos/sin pairs, NaN/inf/negative softmax scales,
// every dtype, causal or not, optional lse and k_rotated, SPEC §8 pairing and rotary_dim (valid and not).
// Checks: an invalid call fails with a message and writes neither out nor lse nor k_rotated; a valid call
// succeeds, and out, lse and k_rotated match a float64 recomputation within the SPEC §6 tolerances (rows with
// no visible key: out exactly 0 and lse -inf). Every buffer is malloc'ed at exactly the size the call may
// touch, so ASan reports any read or write beyond it.
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

constexpr int64_t kMaxElems = static_cast<int64_t>(kMaxBufferBytes / 4);

// Elements a [tokens] x stride tensor of row width `width` spans: (tokens - 1) * stride + width; -1 if too big.
int64_t span(int64_t tokens, int64_t stride, int64_t width) {
  if (tokens <= 0) return 0;
  int64_t r;
  if (!mul_ok(tokens - 1, stride, &r) || !add_ok(r, width, &r) || r > kMaxElems) return -1;
  return r;
}

struct CuSeqlens {
  std::vector<int32_t> cu;
  bool consistent = true;  // starts at 0, never decreases
  int32_t max_len = 0;
};

CuSeqlens read_cu(Reader &in, int32_t batch) {
  CuSeqlens c;
  c.cu.assign(static_cast<size_t>(batch) + 1, 0);
  for (int32_t b = 0; b < batch; ++b) {
    const uint8_t l = in.u8();
    const int32_t len = l < 160 ? l % 6 : l < 230 ? l % 40 : 0;
    c.cu[b + 1] = c.cu[b] + len;
  }
  const uint8_t corrupt = in.u8();
  if (corrupt >= 220) {  // break one entry
    const int32_t at = in.range(0, 255) % (batch + 1);
    c.cu[at] = in.edge_i32();
  }
  for (int32_t b = 0; b < batch; ++b) {
    const int64_t len = static_cast<int64_t>(c.cu[b + 1]) - c.cu[b];
    if (len < 0) c.consistent = false;
    else c.max_len = static_cast<int32_t>(std::min<int64_t>(std::max<int64_t>(c.max_len, len), INT32_MAX));
  }
  if (c.cu[0] != 0) c.consistent = false;
  return c;
}

int32_t read_max(Reader &in, int32_t actual) {
  const uint8_t m = in.u8();
  if (m < 170) return actual;
  if (m < 220) return static_cast<int32_t>(std::min<int64_t>(static_cast<int64_t>(actual) + m % 4, INT32_MAX));
  if (m < 235) return actual - 1;  // actual >= 0
  return in.edge_i32();
}

std::string join(const std::vector<int32_t> &v) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) s += (i ? " " : "") + std::to_string(v[i]);
  return s;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  Reader in(data, size);
  hope_attention_params_t p{};
  std::memset(&p, 0, sizeof p);
  const uint8_t be = in.u8();
  p.backend = be < 235 ? HOPE_BACKEND_CPU : be < 250 ? HOPE_BACKEND_CUDA : in.edge_i32();
  if (p.backend == HOPE_BACKEND_CUDA && have_gpu()) return 0;  // device pointers would be needed
  p.dtype = in.u8() < 245 ? in.range(0, 2) : in.edge_i32();
  const uint8_t bs = in.u8();
  p.batch = bs < 240 ? bs % 5 : in.edge_i32();
  const uint8_t hk = in.u8();
  p.num_kv_heads = hk < 240 ? 1 + hk % 3 : in.edge_i32();
  const uint8_t g = in.u8();
  const int64_t hq = static_cast<int64_t>(p.num_kv_heads) * (1 + g % 4) + (g >= 220 ? 1 : 0);
  p.num_q_heads = g >= 240 ? in.edge_i32() : hq >= INT32_MIN && hq <= INT32_MAX ? static_cast<int32_t>(hq) : p.num_kv_heads;
  const uint8_t hd = in.u8();
  p.head_dim = hd < 230 ? 2 * (1 + hd % 24) : hd < 240 ? 1 + 2 * (hd % 3) : in.edge_i32();
  const uint8_t sc = in.u8();
  p.softmax_scale = sc < 150 ? 0.0f : sc < 200 ? 0.1f * static_cast<float>(sc % 7) : sc < 230 ? -1.0f : in.edge_float();
  const uint8_t ca = in.u8();
  p.causal = ca < 120 ? 0 : ca < 250 ? 1 : in.edge_i32();

  const bool heads_ok = p.num_q_heads >= 1 && p.num_kv_heads >= 1 && p.num_q_heads % p.num_kv_heads == 0;
  const bool dim_ok = p.head_dim >= 2 && p.head_dim <= 1024 && p.head_dim % 2 == 0;
  const int64_t q_width = heads_ok && dim_ok ? static_cast<int64_t>(p.num_q_heads) * p.head_dim : 1;
  const int64_t kv_width = heads_ok && dim_ok ? static_cast<int64_t>(p.num_kv_heads) * p.head_dim : 1;
  auto read_stride = [&](int64_t width) -> int64_t {
    const uint8_t s = in.u8();
    return s < 150 ? 0 : s < 225 ? width + s % 5 : s < 235 ? width - 1 : in.edge_i64();
  };
  p.q_row_stride = read_stride(q_width);
  p.k_row_stride = read_stride(kv_width);
  p.v_row_stride = read_stride(kv_width);

  const int32_t stored_batch = p.batch >= 0 && p.batch <= 16 ? p.batch : 0;
  CuSeqlens cq = read_cu(in, stored_batch), ck = read_cu(in, stored_batch);
  p.max_seqlen_q = read_max(in, cq.max_len);
  p.max_seqlen_k = read_max(in, ck.max_len);
  const uint8_t opts = in.u8();  // rotation, lse, k_rotated; spare bits (0 in the older seeds): SPEC §8 fields
  const bool rot_q = opts & 1, rot_k = opts & 2, want_lse = opts & 4, want_krot = opts & 8;
  read_rotary_fields(in, (opts >> 4) != 0, p.head_dim, &p.rope_pairing, &p.rotary_dim);
  const bool rotary_ok = rotary_fields_valid(p.rope_pairing, p.rotary_dim, p.head_dim);
  const int32_t rdim = dim_ok && rotary_ok ? (p.rotary_dim != 0 ? p.rotary_dim : p.head_dim) : 2;
  const int64_t half = rdim / 2;  // cos/sin values per token
  const uint8_t nulls = in.u8();
  Rng rng(in.u64());
  if (p.batch > 16) return 0;  // cu_seqlens arrays of that size are not worth the memory

  // Validity per SPEC §5 and the header.
  const bool backend_ok = p.backend == HOPE_BACKEND_CPU;
  const bool dtype_ok = dtype_valid(p.dtype);
  auto stride_ok = [](int64_t s, int64_t w) { return s == 0 || s >= w; };
  const bool strides_ok = stride_ok(p.q_row_stride, q_width) && stride_ok(p.k_row_stride, kv_width) &&
                          stride_ok(p.v_row_stride, kv_width);
  const bool scalars_ok = backend_ok && dtype_ok && p.batch >= 0 && heads_ok && dim_ok && rotary_ok && strides_ok &&
                          p.max_seqlen_q >= 0 && p.max_seqlen_k >= 0;
  auto cu_ok = [&](const CuSeqlens &c, int32_t max_seqlen) {
    if (!c.consistent) return false;
    for (int32_t b = 0; b < p.batch; ++b)
      if (c.cu[b + 1] - c.cu[b] > max_seqlen) return false;
    return true;
  };
  const bool cus_ok = cu_ok(cq, p.max_seqlen_q) && cu_ok(ck, p.max_seqlen_k);
  const int64_t total_q = p.batch > 0 && cq.cu[p.batch] >= 0 ? cq.cu[p.batch] : 0;
  const int64_t total_k = p.batch > 0 && ck.cu[p.batch] >= 0 ? ck.cu[p.batch] : 0;
  const int64_t qs = p.q_row_stride ? p.q_row_stride : q_width, ks = p.k_row_stride ? p.k_row_stride : kv_width,
                vs = p.v_row_stride ? p.v_row_stride : kv_width;

  // Buffers of exactly the size the call may touch (or a minimal one when that is not computable/too big).
  const int32_t dt = dtype_ok ? p.dtype : HOPE_DTYPE_FLOAT32;
  const size_t eb = dtype_bytes(dt);
  const int64_t nq = span(total_q, qs, q_width), nk = span(total_k, ks, kv_width), nv = span(total_k, vs, kv_width);
  const int64_t no = span(total_q, q_width, q_width), nl = span(p.num_q_heads > 0 ? p.num_q_heads : 1, total_q, total_q);
  const int64_t ncq = span(total_q, half, half), nck = span(total_k, half, half), nkr = span(total_k, kv_width, kv_width);
  const bool sizes_known = nq >= 0 && nk >= 0 && nv >= 0 && no >= 0 && nl >= 0 && ncq >= 0 && nck >= 0 && nkr >= 0;
  auto sz = [&](int64_t n) { return static_cast<size_t>(n >= 0 ? n : 1); };
  Buffer q(sz(nq) * eb), k(sz(nk) * eb), v(sz(nv) * eb), out(sz(no) * eb), lse(sz(nl) * 4);
  Buffer cos_q(sz(ncq) * 4), sin_q(sz(ncq) * 4), cos_k(sz(nck) * 4), sin_k(sz(nck) * 4), krot(sz(nkr) * eb);
  Buffer cuq(static_cast<size_t>(stored_batch + 1) * 4), cuk(static_cast<size_t>(stored_batch + 1) * 4);
  std::memcpy(cuq.get(), cq.cu.data(), cuq.bytes());
  std::memcpy(cuk.get(), ck.cu.data(), cuk.bytes());
  fill_random(q.get(), dt, sz(nq), rng);
  fill_random(k.get(), dt, sz(nk), rng);
  fill_random(v.get(), dt, sz(nv), rng);
  fill_cos_sin(cos_q.as<float>(), sin_q.as<float>(), sz(ncq), rng);
  fill_cos_sin(cos_k.as<float>(), sin_k.as<float>(), sz(nck), rng);
  out.fill(0xff);
  lse.fill(0xff);
  krot.fill(0xff);
  const auto out_before = out.snapshot(), lse_before = lse.snapshot(), krot_before = krot.snapshot();

  const int which_null = nulls < 200 ? -1 : nulls % 12;
  p.cu_seqlens_q = which_null == 0 ? nullptr : cuq.as<int32_t>();
  p.cu_seqlens_k = which_null == 1 ? nullptr : cuk.as<int32_t>();
  p.q = which_null == 2 ? nullptr : q.get();
  p.k = which_null == 3 ? nullptr : k.get();
  p.v = which_null == 4 ? nullptr : v.get();
  p.out = which_null == 5 ? nullptr : out.get();
  p.lse = want_lse ? lse.as<float>() : nullptr;
  p.cos_q = rot_q && which_null != 6 ? cos_q.as<float>() : nullptr;
  p.sin_q = rot_q && which_null != 7 ? sin_q.as<float>() : nullptr;
  p.cos_k = rot_k && which_null != 8 ? cos_k.as<float>() : nullptr;
  p.sin_k = rot_k && which_null != 9 ? sin_k.as<float>() : nullptr;
  p.k_rotated = want_krot ? krot.get() : nullptr;
  const bool pairs_ok = (p.cos_q == nullptr) == (p.sin_q == nullptr) && (p.cos_k == nullptr) == (p.sin_k == nullptr);
  const bool ptrs_ok = p.cu_seqlens_q && p.cu_seqlens_k && p.q && p.k && p.v && p.out && pairs_ok;
  const bool valid = scalars_ok && (p.batch == 0 || (ptrs_ok && cus_ok)) && std::isfinite(p.softmax_scale);
  const bool null_params = which_null == 10;
  if (valid && !null_params && !sizes_known) return 0;  // valid but too large for a fuzz iteration
  if (valid && !null_params && p.batch > 0) {
    // Valid but too much arithmetic for one fuzz iteration (a 65536 x 65536 sequence ran for minutes under the
    // sanitizers and libFuzzer's 30 s timeout): the harness and the reference below are O(Nq * Nk * Hq * d).
    double work = 0.0;
    for (int32_t b = 0; b < stored_batch; ++b)
      work += static_cast<double>(cq.cu[b + 1] - cq.cu[b]) * (ck.cu[b + 1] - ck.cu[b]);
    if (work * p.num_q_heads * p.head_dim > 4.0e6) return 0;
  }

  set_context("attention: backend %d dtype %d batch %d Hq %d Hk %d d %d strides %lld %lld %lld max_q %d max_k %d "
              "scale %g causal %d rot_q %d rot_k %d pairing %d rotary_dim %d lse %d krot %d null %d valid %d cu_q [%s] "
              "cu_k [%s]", p.backend, p.dtype, p.batch, p.num_q_heads, p.num_kv_heads, p.head_dim,
              (long long)p.q_row_stride, (long long)p.k_row_stride, (long long)p.v_row_stride, p.max_seqlen_q,
              p.max_seqlen_k, (double)p.softmax_scale, p.causal, (int)rot_q, (int)rot_k, p.rope_pairing, p.rotary_dim,
              (int)want_lse, (int)want_krot, which_null,
              (int)valid, join(cq.cu).c_str(), join(ck.cu).c_str());
  hope_status_t s;
  if (which_null == 11 && p.backend == HOPE_BACKEND_CPU) {  // the unfused path is CUDA-only: CPU must refuse
    size_t ws = 12345;
    s = hope_attention_unfused_workspace_size(&p, &ws);
    if (s != HOPE_SUCCESS) expect_failure_message(s, "hope_attention_unfused_workspace_size(CPU)");
    s = hope_attention_forward_unfused(&p, nullptr, 0, nullptr);
    if (p.batch > 0) expect_failure_message(s, "hope_attention_forward_unfused(CPU)");
    return 0;
  }
  s = hope_attention_forward(null_params ? nullptr : &p, nullptr);
  if (null_params || !valid) {
    // batch 0 is a no-op: a non-finite scale or the CUDA backend without a GPU may go unnoticed then.
    const bool scalars_but_backend_ok = dtype_ok && heads_ok && dim_ok && rotary_ok && strides_ok &&
                                        p.max_seqlen_q >= 0 && p.max_seqlen_k >= 0 && p.backend == HOPE_BACKEND_CUDA;
    if (!null_params && (scalars_ok || scalars_but_backend_ok) && p.batch == 0) {
      check_status_sane(s, "hope_attention_forward(batch 0, bad scale)");
      return 0;
    }
    expect_failure_message(s, "hope_attention_forward(invalid)");
    FUZZ_CHECK(out.equals(out_before) && lse.equals(lse_before) && krot.equals(krot_before),
               "hope_attention_forward wrote an output on failure");
    return 0;
  }
  // The CPU backend packs q into rows and K/V into panels of 16 keys for every kv head at once, head_dim padded to a
  // multiple of 32 (up to 4 bytes a value): 16x the input at head_dim 2, 16x again for one-key sequences. A valid
  // call whose copy passes the 256 MB allocation cap this harness gives ASan (fuzz_util.h) may be refused with
  // OUT_OF_MEMORY, a message and nothing written (found: 98991 heads, head_dim 2, 5 keys: 304 MB of K panels).
  if (s == HOPE_ERROR_OUT_OF_MEMORY) {
    double chunks = 0;
    for (int32_t b = 0; b < p.batch; ++b) chunks += (ck.cu[b + 1] - ck.cu[b] + 15) / 16;
    const double dp = (p.head_dim + 31) / 32 * 32.0;
    const double packed = std::max(chunks * p.num_kv_heads * 16, static_cast<double>(total_q) * p.num_q_heads) * dp * 4;
    if (packed > 256.0 * (1 << 20)) {
      expect_failure_message(s, "hope_attention_forward(valid, packed copies past the allocation cap)");
      FUZZ_CHECK(out.equals(out_before) && lse.equals(lse_before) && krot.equals(krot_before),
                 "hope_attention_forward wrote an output on failure");
      return 0;
    }
  }
  FUZZ_CHECK(s == HOPE_SUCCESS, "hope_attention_forward(dtype %d, batch %d, Hq %d, Hk %d, d %d) failed on a valid call",
             p.dtype, p.batch, p.num_q_heads, p.num_kv_heads, p.head_dim);
  if (p.batch == 0) {
    FUZZ_CHECK(out.equals(out_before), "hope_attention_forward(batch 0) wrote out");
    return 0;
  }
  // Known, reported to the lead: a finite but enormous softmax_scale (e.g. FLT_MAX) overflows the float32 scores
  // and gives NaN instead of a refusal or the arg-max limit. Such scales are only checked for memory safety here.
  if (p.softmax_scale > 1e6f) return 0;

  // Float64 reference (skip when too much work for one iteration).
  int64_t work = 0;
  for (int32_t b = 0; b < p.batch; ++b)
    work += static_cast<int64_t>(cq.cu[b + 1] - cq.cu[b]) * (ck.cu[b + 1] - ck.cu[b]) * q_width;
  if (work > 2000000) return 0;
  const int32_t d = p.head_dim, Hq = p.num_q_heads, Hk = p.num_kv_heads, group = Hq / Hk;
  const bool round = p.dtype != HOPE_DTYPE_FLOAT32;
  const double scale = p.softmax_scale > 0 ? p.softmax_scale : 1.0 / std::sqrt(static_cast<double>(d));
  const double tol_o = p.dtype == HOPE_DTYPE_FLOAT32 ? 1e-5 : p.dtype == HOPE_DTYPE_FLOAT16 ? 2e-3 : 1e-2;
  const double rot_round_eps =
      round && scale > 1.0 && (p.cos_q != nullptr || p.cos_k != nullptr) ? 2 * dtype_eps(p.dtype) : 0.0;
  std::vector<double> ref_o(static_cast<size_t>(total_q * q_width), 0.0), got_o(ref_o.size()), floor_o(ref_o.size());
  std::vector<double> qr(d), kr(static_cast<size_t>(total_k * kv_width));
  for (int64_t n = 0; n < total_k; ++n)
    for (int32_t h = 0; h < Hk; ++h)
      rotate_row_ref(k.get(), p.dtype, n * ks + h * d, d, p.cos_k ? p.cos_k + n * half : nullptr,
                     p.sin_k ? p.sin_k + n * half : nullptr, p.rope_pairing, rdim, round, &kr[(n * Hk + h) * d]);
  double lse_err = 0;
  for (int32_t b = 0; b < p.batch; ++b) {
    const int64_t q0 = cq.cu[b], Nq = cq.cu[b + 1] - q0, k0 = ck.cu[b], Nk = ck.cu[b + 1] - k0;
    for (int64_t i = 0; i < Nq; ++i) {
      for (int32_t h = 0; h < Hq; ++h) {
        rotate_row_ref(q.get(), p.dtype, (q0 + i) * qs + static_cast<int64_t>(h) * d, d,
                       p.cos_q ? p.cos_q + (q0 + i) * half : nullptr, p.sin_q ? p.sin_q + (q0 + i) * half : nullptr,
                       p.rope_pairing, rdim, round, qr.data());
        const int32_t kh = h / group;
        const int64_t visible = p.causal ? std::min<int64_t>(Nk, std::max<int64_t>(0, i + Nk - Nq + 1)) : Nk;
        double mx = -INFINITY, score_err = 0;
        std::vector<double> sc(static_cast<size_t>(visible));
        for (int64_t n = 0; n < visible; ++n) {
          double dot = 0, mag = 0;
          for (int32_t e = 0; e < d; ++e) {
            dot += qr[e] * kr[((k0 + n) * Hk + kh) * d + e];
            mag += std::fabs(qr[e] * kr[((k0 + n) * Hk + kh) * d + e]);
          }
          sc[n] = dot * scale;
          mx = std::max(mx, sc[n]);
          // A float32 dot product of d terms is off by up to about (d + 2) 2^-24 sum |q_e k_e|, and the scale
          // multiplies that: with scale 1e6 a score of 1e6 can be off by ~0.1 in any float32 attention. lse moves
          // by at most the largest score error, so that much is allowed on top of the dtype's tolerance. In float16 /
          // bfloat16 the rotated q and k are rounded to the dtype from float32 (SPEC §4): where the library's
          // float32 rotation and this float64 one straddle a rounding boundary, an element lands one dtype ulp
          // (<= eps |x|) away, which moves a score by up to 2 eps scale sum |q_e k_e| more. At scales up to 1 the
          // dtype's tolerance absorbs those rare flips; above, lse follows the largest score and shows one directly
          // (found at scale 1e6, float16, rotated k: lse 229 off), so there it is allowed too.
          score_err = std::max(score_err, ((d + 2) * 0x1p-24 + rot_round_eps) * scale * mag);
        }
        double sum = 0;
        for (int64_t n = 0; n < visible; ++n) sum += std::exp(sc[n] - mx);
        double *o = &ref_o[((q0 + i) * Hq + h) * d], *fl = &floor_o[((q0 + i) * Hq + h) * d];
        for (int64_t n = 0; n < visible; ++n) {
          const double w = std::exp(sc[n] - mx) / sum;
          for (int32_t e = 0; e < d; ++e) {
            const double x = load(v.get(), p.dtype, (k0 + n) * vs + kh * d + e);
            o[e] += w * x;
            fl[e] += w * std::fabs(x);
          }
        }
        // A float32 sum of `visible` terms w_n v_n carries rounding noise of about sqrt(visible) 2^-24 sum w_n |v_n|:
        // where the terms cancel (thousands of keys, a flat softmax: out near 0) that noise is the whole relative
        // error (found: 65536 keys, d 2, float32: 1.1e-5). Each element's size in the relative error is taken as at
        // least the one at which that noise would be the dtype's tolerance.
        for (int32_t e = 0; e < d; ++e) fl[e] *= std::sqrt(static_cast<double>(visible)) * 0x1p-24 / tol_o;
        for (int32_t e = 0; e < d; ++e) got_o[((q0 + i) * Hq + h) * d + e] = load(out.get(), p.dtype, ((q0 + i) * Hq + h) * d + e);
        if (visible == 0) {
          for (int32_t e = 0; e < d; ++e)
            FUZZ_CHECK(got_o[((q0 + i) * Hq + h) * d + e] == 0.0, "row %lld head %d has no visible key but out != 0",
                       (long long)(q0 + i), h);
        }
        if (want_lse) {
          const float gl = lse.as<float>()[h * total_q + q0 + i];
          if (visible == 0) {
            FUZZ_CHECK(std::isinf(gl) && gl < 0, "row %lld head %d has no visible key but lse %g", (long long)(q0 + i), h,
                       (double)gl);
          } else {
            const double rl = mx + std::log(sum);
            FUZZ_CHECK(std::isfinite(gl), "lse not finite at row %lld head %d", (long long)(q0 + i), h);
            lse_err = std::max(lse_err, std::fabs(gl - rl) - score_err);
          }
        }
      }
    }
  }
  double num = 0, den = 0;
  for (size_t i = 0; i < ref_o.size(); ++i) {
    FUZZ_CHECK(std::isfinite(got_o[i]), "out[%zu] is not finite", i);
    num += (got_o[i] - ref_o[i]) * (got_o[i] - ref_o[i]);
    den += std::max(ref_o[i] * ref_o[i], floor_o[i] * floor_o[i]);
  }
  const double rel = den > 0 ? std::sqrt(num / den) : std::sqrt(num);
  const double tol_l = p.dtype == HOPE_DTYPE_FLOAT32 ? 1e-4 : p.dtype == HOPE_DTYPE_FLOAT16 ? 5e-3 : 2e-2;
  FUZZ_CHECK(rel <= tol_o, "dtype %d: relative error of out %g > %g", p.dtype, rel, tol_o);
  FUZZ_CHECK(lse_err <= tol_l, "dtype %d: lse error %g > %g", p.dtype, lse_err, tol_l);
  if (want_krot) {
    for (int64_t i = 0; i < total_k * kv_width; ++i) {
      const double got = load(krot.get(), p.dtype, i);
      FUZZ_CHECK(std::fabs(got - kr[i]) <= 2 * dtype_eps(p.dtype) * (1 + std::fabs(kr[i])),
                 "k_rotated[%lld] = %g, expected %g", (long long)i, got, kr[i]);
    }
  }
  return 0;
}
