// attention_ref.cc — float64 reference of SPEC §5 (attention) and of state merging, written from the SPEC
// alone. Deliberately plain: one query row at a time, two passes (max, then sum), no tiling.
#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

#include "reference/reference.h"

namespace hope_ref {

namespace {
constexpr double kNegInf = -std::numeric_limits<double>::infinity();

void check(bool cond, const std::string &what) {
  if (!cond) throw std::invalid_argument("hope_ref::" + what);
}
}  // namespace

void attention(const AttentionProblem &p, const std::vector<double> &q, const std::vector<double> &k,
               const std::vector<double> &v, std::vector<double> *out, std::vector<double> *lse) {
  check(p.batch >= 0, "attention: batch < 0");
  check(p.num_q_heads >= 1 && p.num_kv_heads >= 1 && p.num_q_heads % p.num_kv_heads == 0,
        "attention: bad head counts");
  check(p.head_dim >= 1, "attention: head_dim < 1");
  check(p.cu_seqlens_q.size() == static_cast<size_t>(p.batch) + 1 &&
            p.cu_seqlens_k.size() == static_cast<size_t>(p.batch) + 1,
        "attention: cu_seqlens must have batch + 1 entries");
  const int hq = p.num_q_heads, hk = p.num_kv_heads, d = p.head_dim, group = hq / hk;
  const int64_t total_q = p.cu_seqlens_q[p.batch], total_k = p.cu_seqlens_k[p.batch];
  check(q.size() == static_cast<size_t>(total_q * hq * d), "attention: q size");
  check(k.size() == static_cast<size_t>(total_k * hk * d), "attention: k size");
  check(v.size() == static_cast<size_t>(total_k * hk * d), "attention: v size");
  const double scale = p.softmax_scale > 0.0 ? p.softmax_scale : 1.0 / std::sqrt(static_cast<double>(d));

  out->assign(static_cast<size_t>(total_q * hq * d), 0.0);
  lse->assign(static_cast<size_t>(hq * total_q), kNegInf);
  std::vector<double> s;
  for (int b = 0; b < p.batch; ++b) {
    const int64_t q0 = p.cu_seqlens_q[b], k0 = p.cu_seqlens_k[b];
    const int64_t nq = p.cu_seqlens_q[b + 1] - q0, nk = p.cu_seqlens_k[b + 1] - k0;
    check(nq >= 0 && nk >= 0, "attention: cu_seqlens decrease");
    for (int j = 0; j < hq; ++j) {
      const int kvh = j / group;
      for (int64_t i = 0; i < nq; ++i) {
        // Keys 0..last are visible; bottom-right causal: n <= i + nk - nq.
        int64_t last = nk - 1;
        if (p.causal) last = std::min(last, i + nk - nq);
        if (last < 0) continue;  // no visible key: out 0, lse -inf (already set)
        const double *qi = &q[static_cast<size_t>(((q0 + i) * hq + j) * d)];
        s.assign(static_cast<size_t>(last + 1), 0.0);
        double m = kNegInf;
        for (int64_t n = 0; n <= last; ++n) {
          const double *kn = &k[static_cast<size_t>(((k0 + n) * hk + kvh) * d)];
          double dot = 0.0;
          for (int c = 0; c < d; ++c) dot += qi[c] * kn[c];
          s[n] = scale * dot;
          m = std::max(m, s[n]);
        }
        double sum = 0.0;
        for (int64_t n = 0; n <= last; ++n) {
          s[n] = std::exp(s[n] - m);
          sum += s[n];
        }
        double *oi = &(*out)[static_cast<size_t>(((q0 + i) * hq + j) * d)];
        for (int64_t n = 0; n <= last; ++n) {
          const double w = s[n] / sum;
          const double *vn = &v[static_cast<size_t>(((k0 + n) * hk + kvh) * d)];
          for (int c = 0; c < d; ++c) oi[c] += w * vn[c];
        }
        (*lse)[static_cast<size_t>(j * total_q + q0 + i)] = m + std::log(sum);
      }
    }
  }
}

void merge_states(int64_t tokens, int heads, int head_dim, const std::vector<double> &o_a,
                  const std::vector<double> &lse_a, const std::vector<double> &o_b,
                  const std::vector<double> &lse_b, std::vector<double> *out, std::vector<double> *lse) {
  check(tokens >= 0 && heads >= 0 && head_dim >= 0, "merge_states: negative size");
  const size_t n_o = static_cast<size_t>(tokens * heads * head_dim), n_l = static_cast<size_t>(heads * tokens);
  check(o_a.size() == n_o && o_b.size() == n_o, "merge_states: o size");
  check(lse_a.size() == n_l && lse_b.size() == n_l, "merge_states: lse size");
  out->assign(n_o, 0.0);
  lse->assign(n_l, kNegInf);
  for (int64_t t = 0; t < tokens; ++t) {
    for (int h = 0; h < heads; ++h) {
      const double la = lse_a[static_cast<size_t>(h * tokens + t)], lb = lse_b[static_cast<size_t>(h * tokens + t)];
      const bool a_empty = la == kNegInf, b_empty = lb == kNegInf;
      if (std::isnan(la) || std::isnan(lb) || la == -kNegInf || lb == -kNegInf) {  // no softmax state: NaN
        (*lse)[static_cast<size_t>(h * tokens + t)] = std::nan("");
        for (int c = 0; c < head_dim; ++c) (*out)[static_cast<size_t>((t * heads + h) * head_dim + c)] = std::nan("");
        continue;
      }
      if (a_empty && b_empty) continue;  // out 0, lse -inf
      double wa, wb, l;
      if (b_empty) {
        wa = 1.0, wb = 0.0, l = la;
      } else if (a_empty) {
        wa = 0.0, wb = 1.0, l = lb;
      } else {
        // log(exp(a) + exp(b)) = m + log1p(exp(-|a - b|)), m = max(a, b).
        const double m = std::max(la, lb);
        l = m + std::log1p(std::exp(-std::fabs(la - lb)));
        wa = std::exp(la - l);
        wb = std::exp(lb - l);
      }
      (*lse)[static_cast<size_t>(h * tokens + t)] = l;
      const size_t base = static_cast<size_t>((t * heads + h) * head_dim);
      for (int c = 0; c < head_dim; ++c) {
        double x = 0.0;
        if (wa != 0.0) x += wa * o_a[base + c];
        if (wb != 0.0) x += wb * o_b[base + c];
        (*out)[base + c] = x;
      }
    }
  }
}

}  // namespace hope_ref
