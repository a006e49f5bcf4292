// paged_ref.cc — float64 helpers for the paged KV cache and decode tests (see paged_ref.h). Shares no code
// with csrc/ or kernels/.
#include "reference/paged_ref.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <stdexcept>

#include "test_util.h"

namespace hope_ref {

namespace {

void check(bool cond, const std::string &what) {
  if (!cond) throw std::invalid_argument("hope_ref::" + what);
}

// cos/sin rows for positions pos[n] (HoPE-like: pair i < 3/4 of the pairs alternates the h and w
// components, the rest has zero frequency), theta 1e6, computed in double and stored as float.
void cos_sin_rows(const std::vector<double> &pos, int head_dim, std::vector<float> *cs, std::vector<float> *sn) {
  const int half = head_dim / 2;
  const int rotated = (3 * half) / 4;
  cs->assign(pos.size() * half, 1.0f);
  sn->assign(pos.size() * half, 0.0f);
  for (size_t n = 0; n < pos.size(); ++n) {
    const double ph = pos[n] + 3.0, pw = pos[n] - 2.0;
    for (int i = 0; i < rotated; ++i) {
      const double inv = std::pow(1e6, -2.0 * i / head_dim);
      const double a = (i % 2 == 0 ? ph : pw) * inv;
      (*cs)[n * half + i] = static_cast<float>(std::cos(a));
      (*sn)[n * half + i] = static_cast<float>(std::sin(a));
    }
  }
}

}  // namespace

PagedDecodeData make_paged_decode(const PagedDecodeCase &c, uint64_t seed) {
  check(c.nq.size() == c.lens.size(), "make_paged_decode: nq and lens differ in size");
  check(c.hq % c.hk == 0 && c.head_dim % 2 == 0 && c.page_size >= 1, "make_paged_decode: shape");
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.f, 1.f);
  PagedDecodeData d;
  d.batch = static_cast<int>(c.lens.size());
  d.cu_q.assign(d.batch + 1, 0);
  d.cu_k.assign(d.batch + 1, 0);
  int used_pages = 0;
  for (int b = 0; b < d.batch; ++b) {
    check(c.lens[b] >= c.nq[b], "make_paged_decode: lens < nq");
    d.cu_q[b + 1] = d.cu_q[b] + c.nq[b];
    d.cu_k[b + 1] = d.cu_k[b] + c.lens[b];
    d.max_q = std::max(d.max_q, c.nq[b]);
    d.max_k = std::max(d.max_k, c.lens[b]);
    const int pages = (c.lens[b] + c.page_size - 1) / c.page_size;
    d.max_pages = std::max(d.max_pages, pages);
    used_pages += pages;
  }
  if (d.max_q == 0 && d.batch > 0) d.max_q = 1;
  d.max_k += c.max_seqlen_k_slack;
  d.max_pages += 1;  // a spare column of -1 at the end of every row
  d.total_q = d.cu_q[d.batch];
  d.total_k = d.cu_k[d.batch];
  d.num_pages = used_pages + c.extra_pages;
  if (d.num_pages < 1) d.num_pages = 1;

  // Pages in shuffled order.
  std::vector<int32_t> perm(d.num_pages);
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), rng);
  d.page_table.assign(static_cast<size_t>(d.batch) * d.max_pages, -1);
  int next = 0;
  for (int b = 0; b < d.batch; ++b) {
    const int pages = (c.lens[b] + c.page_size - 1) / c.page_size;
    for (int i = 0; i < pages; ++i) d.page_table[static_cast<size_t>(b) * d.max_pages + i] = perm[next++];
  }
  d.slots.resize(d.total_k);
  for (int b = 0; b < d.batch; ++b)
    for (int n = 0; n < c.lens[b]; ++n)
      d.slots[d.cu_k[b] + n] =
          static_cast<int64_t>(d.page_table[static_cast<size_t>(b) * d.max_pages + n / c.page_size]) * c.page_size +
          n % c.page_size;

  auto fill = [&](std::vector<float> *x, size_t n) {
    x->resize(n);
    for (auto &e : *x) e = hope_test::round_to(c.dtype, normal(rng));
  };
  fill(&d.q, static_cast<size_t>(d.total_q) * c.hq * c.head_dim);
  fill(&d.k, static_cast<size_t>(d.total_k) * c.hk * c.head_dim);
  fill(&d.v, static_cast<size_t>(d.total_k) * c.hk * c.head_dim);
  if (c.rope) {
    std::vector<double> pos_q, pos_k;
    for (int b = 0; b < d.batch; ++b) {
      const double base = 100000.0 + 7919.0 * b;
      for (int n = 0; n < c.lens[b]; ++n) pos_k.push_back(base + n);
      for (int i = 0; i < c.nq[b]; ++i) pos_q.push_back(base + (c.lens[b] - c.nq[b] + i));
    }
    cos_sin_rows(pos_q, c.head_dim, &d.cos_q, &d.sin_q);
    cos_sin_rows(pos_k, c.head_dim, &d.cos_k, &d.sin_k);
  }
  return d;
}

std::vector<double> rotate_rows(const std::vector<double> &x, int64_t tokens, int heads, int head_dim,
                                const float *cos, const float *sin) {
  check(static_cast<int64_t>(x.size()) == tokens * heads * head_dim, "rotate_rows: size");
  if (cos == nullptr) return x;
  const int half = head_dim / 2;
  std::vector<double> y(x.size());
  for (int64_t t = 0; t < tokens; ++t)
    for (int h = 0; h < heads; ++h) {
      const size_t o = (static_cast<size_t>(t) * heads + h) * head_dim;
      for (int i = 0; i < half; ++i) {
        const double c = cos[t * half + i], s = sin[t * half + i];
        y[o + i] = x[o + i] * c - x[o + i + half] * s;
        y[o + i + half] = x[o + i + half] * c + x[o + i] * s;
      }
    }
  return y;
}

std::vector<double> gather_pages(const std::vector<double> &pages, const PagedDecodeCase &c,
                                 const PagedDecodeData &data) {
  const size_t row = static_cast<size_t>(c.hk) * c.head_dim;
  check(pages.size() == static_cast<size_t>(data.num_pages) * c.page_size * row, "gather_pages: pages size");
  std::vector<double> out(static_cast<size_t>(data.total_k) * row);
  for (int b = 0; b < data.batch; ++b)
    for (int n = 0; n < c.lens[b]; ++n) {
      const int32_t page = data.page_table[static_cast<size_t>(b) * data.max_pages + n / c.page_size];
      check(page >= 0 && page < data.num_pages, "gather_pages: page index");
      const size_t src = (static_cast<size_t>(page) * c.page_size + n % c.page_size) * row;
      std::copy(pages.begin() + src, pages.begin() + src + row, out.begin() + (data.cu_k[b] + n) * row);
    }
  return out;
}

void paged_decode(const PagedDecodeCase &c, const PagedDecodeData &data, const std::vector<double> &q_rot,
                  const std::vector<double> &k_pages, const std::vector<double> &v_pages, double softmax_scale,
                  std::vector<double> *out, std::vector<double> *lse) {
  AttentionProblem p;
  p.batch = data.batch;
  p.num_q_heads = c.hq;
  p.num_kv_heads = c.hk;
  p.head_dim = c.head_dim;
  p.cu_seqlens_q = data.cu_q;
  p.cu_seqlens_k = data.cu_k;
  p.softmax_scale = softmax_scale;
  p.causal = c.causal;
  attention(p, q_rot, gather_pages(k_pages, c, data), gather_pages(v_pages, c, data), out, lse);
}

}  // namespace hope_ref
