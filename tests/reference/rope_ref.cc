// rope_ref.cc — the float64 (long double where it matters) reference of SPEC §3 and §4, written from the SPEC
// text alone. It deliberately builds the component map section by section rather than pair by pair, and
// evaluates the angles in long double, so it shares neither structure nor rounding with csrc/rope.c.
#include <cmath>
#include <stdexcept>

#include "reference/reference.h"

namespace hope_ref {

int rotary_dim(const hope_rope_config_t &config) {
  const int r = config.rotary_dim != 0 ? config.rotary_dim : config.head_dim;
  if (r < 2 || r % 2 != 0 || r > config.head_dim) throw std::invalid_argument("rotary_dim");
  return r;
}

std::vector<int> components(const hope_rope_config_t &config) {
  if (config.head_dim < 2 || config.head_dim % 2 != 0) throw std::invalid_argument("head_dim");
  const int half = rotary_dim(config) / 2;
  const int st = config.sections[0], sh = config.sections[1], sw = config.sections[2];
  std::vector<int> c(half, HOPE_COMPONENT_T);  // vanilla and every default below
  switch (config.kind) {
    case HOPE_ROPE_VANILLA: break;
    case HOPE_ROPE_MROPE: {
      // Consecutive blocks: st pairs of t, then sh of h, then the rest w.
      int i = st;
      for (int k = 0; k < sh && i < half; ++k) c[i++] = HOPE_COMPONENT_H;
      for (; i < half; ++i) c[i] = HOPE_COMPONENT_W;
      break;
    }
    case HOPE_ROPE_MROPE_INTERLEAVED: {
      // Triples (t, h, w) per group q: slot 1 of group q is h while q < sh, slot 2 is w while q < sw.
      for (int q = 0; 3 * q < half; ++q) {
        if (3 * q + 1 < half && q < sh) c[3 * q + 1] = HOPE_COMPONENT_H;
        if (3 * q + 2 < half && q < sw) c[3 * q + 2] = HOPE_COMPONENT_W;
      }
      break;
    }
    case HOPE_ROPE_VIDEOROPE:
    case HOPE_ROPE_HOPE: {
      // The first sh + sw pairs (the highest frequencies) alternate h, w; the rest is t (VideoRoPE) or a zero
      // frequency (HoPE).
      const int spatial = sh + sw;
      for (int k = 0; k < half; ++k) {
        if (k >= spatial) c[k] = config.kind == HOPE_ROPE_HOPE ? HOPE_COMPONENT_NONE : HOPE_COMPONENT_T;
        else c[k] = (k & 1) ? HOPE_COMPONENT_W : HOPE_COMPONENT_H;
      }
      break;
    }
    default: throw std::invalid_argument("kind");
  }
  return c;
}

std::vector<long double> inv_freq(const hope_rope_config_t &config) {
  const int r = rotary_dim(config), half = r / 2;
  std::vector<long double> inv(half);
  const long double log_theta = std::log(static_cast<long double>(config.theta));
  for (int i = 0; i < half; ++i) {
    if (!config.model_exact_freqs) {
      inv[i] = std::exp(-(2.0L * i / r) * log_theta);  // theta^(-2i/r) = exp(-(2i/r) ln theta)
      continue;
    }
    // PyTorch in float32: the exponent 2i / r is a correctly rounded float32 quotient; the float32 base raised to
    // it is rounded to float32 (here from a long double power); the reciprocal is a float32 division.
    const float exponent = static_cast<float>(static_cast<long double>(2 * i) / r);
    const float base = static_cast<float>(config.theta);
    const float power = static_cast<float>(std::pow(static_cast<long double>(base), static_cast<long double>(exponent)));
    inv[i] = static_cast<float>(1.0L / static_cast<long double>(power));
  }
  return inv;
}

void cos_sin(const hope_rope_config_t &config, const float *positions, int64_t n, std::vector<double> *cos_out,
             std::vector<double> *sin_out) {
  const std::vector<int> comp = components(config);
  const std::vector<long double> inv_all = inv_freq(config);
  const int half = rotary_dim(config) / 2;
  cos_out->assign(static_cast<size_t>(n) * half, 0.0);
  sin_out->assign(static_cast<size_t>(n) * half, 0.0);
  for (int i = 0; i < half; ++i) {
    const long double inv = inv_all[i];
    for (int64_t k = 0; k < n; ++k) {
      const size_t o = static_cast<size_t>(k) * half + i;
      if (comp[i] == HOPE_COMPONENT_NONE) {
        (*cos_out)[o] = 1.0;
        (*sin_out)[o] = 0.0;
        continue;
      }
      const long double angle = static_cast<long double>(positions[comp[i] * n + k]) * inv;
      (*cos_out)[o] = static_cast<double>(std::cos(angle));
      (*sin_out)[o] = static_cast<double>(std::sin(angle));
    }
  }
}

std::vector<double> rotate(const std::vector<double> &x, int64_t tokens, int heads, int head_dim,
                           const std::vector<double> &cos, const std::vector<double> &sin, int pairing,
                           int rotary_dim) {
  const int rot = rotary_dim != 0 ? rotary_dim : head_dim;
  if (rot < 2 || rot % 2 != 0 || rot > head_dim) throw std::invalid_argument("rotary_dim");
  const int half = rot / 2;
  std::vector<double> out(x.size());
  for (int64_t t = 0; t < tokens; ++t) {
    for (int h = 0; h < heads; ++h) {
      const size_t base = (static_cast<size_t>(t) * heads + h) * head_dim;
      for (int d = 0; d < head_dim; ++d) {
        if (d >= rot) {  // past the rotary dimension: unchanged
          out[base + d] = x[base + d];
          continue;
        }
        // out = x * cos + rotate(x) * sin, written as the models write it. Rotate-half (Qwen, HoPE):
        // rotate(x) = (-x[half:rot], x[:half]) and dim d uses frequency d % half. Interleaved (GLM, ERNIE, GPT-J):
        // rotate(x) = stack(-x[1::2], x[0::2]) flattened and dim d uses frequency d / 2.
        int i;
        double partner;
        if (pairing == HOPE_PAIRING_INTERLEAVED) {
          i = d / 2;
          partner = d % 2 == 0 ? -x[base + d + 1] : x[base + d - 1];
        } else {
          i = d % half;
          partner = d < half ? -x[base + d + half] : x[base + d - half];
        }
        const double c = cos[static_cast<size_t>(t) * half + i], s = sin[static_cast<size_t>(t) * half + i];
        out[base + d] = x[base + d] * c + partner * s;
      }
    }
  }
  return out;
}

}  // namespace hope_ref
