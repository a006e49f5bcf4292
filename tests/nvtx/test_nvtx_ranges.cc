// test_nvtx_ranges.cc — every public entry point opens exactly one NVTX range, named after itself, in domain
// "hope_attn", closed again on every path (success, argument errors, the CUDA backend's refusals), properly
// nested in the caller's ranges and balanced per thread; HOPE_NVTX_DISABLE=1 turns them all off.
//
// NVTX_INJECTION64_PATH names nvtx_recorder.c's library (tests/CMakeLists.txt sets it), which records what the
// library's NVTX calls do. The cases below call every function of tests/exports.txt, and a test fails when an
// exported function has no case: a new entry point must open its range (or be added, with a reason, to
// kNoRange). The CUDA-backend cases with valid arguments run where no GPU is visible (NO_DEVICE, or
// NOT_SUPPORTED from a library built without CUDA); with a GPU they would need device buffers and are left to
// the GPU suites, while the CUDA backend's argument errors run everywhere.
#include <nvtx3/nvToolsExt.h>
#include <pthread.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "nvtx/nvtx_recorder.h"
#include "rope_test_util.h"
#include "test_util.h"

namespace {

// Getters that do no work and open no range (documented in the header as plain accessors).
const std::map<std::string, std::string> kNoRange = {
    {"hope_status_string", "a static string per status"},
    {"hope_last_error", "returns the calling thread's message; a range would not change it"},
    {"hope_version", "a compile-time constant"},
};

constexpr char kDomain[] = "hope_attn";

bool nvtx_disabled() {
  const char *v = std::getenv("HOPE_NVTX_DISABLE");
  return v != nullptr && v[0] != '\0' && v[0] != '0';
}

bool gpu_visible() {
  int32_t n = 0;
  return hope_cuda_device_count(&n) == HOPE_SUCCESS && n > 0;
}

std::vector<nvtxrec_event_t> events() {
  std::vector<nvtxrec_event_t> out(static_cast<size_t>(nvtxrec_count()));
  for (size_t i = 0; i < out.size(); ++i) nvtxrec_get(int(i), &out[i]);
  return out;
}

// The events of one measured call (setup and teardown around it are not recorded).
thread_local std::vector<nvtxrec_event_t> t_last;
hope_status_t measured(const std::function<hope_status_t()> &call) {
  nvtxrec_clear();
  const hope_status_t s = call();
  t_last = events();
  return s;
}

// ---- inputs: small and valid, for the CPU backend -----------------------------------------------------------

constexpr int kD = 16, kHalf = kD / 2, kTokens = 5, kHq = 2, kHk = 1;

std::vector<hope_segment_t> segments() {
  return {hope_test::text_segment(3), hope_test::video_segment(2, 2, 2), hope_test::text_segment(2)};
}

hope_rope_config_t rope_config() { return hope_test::config_of(HOPE_ROPE_HOPE, kD); }

// Buffers shared by the tensor calls (float32, all finite).
struct Buffers {
  std::vector<float> q = std::vector<float>(kTokens * kHq * kD, 0.25f);
  std::vector<float> k = std::vector<float>(kTokens * kHk * kD, 0.5f);
  std::vector<float> v = std::vector<float>(kTokens * kHk * kD, 1.0f);
  std::vector<float> out = std::vector<float>(kTokens * kHq * kD);
  std::vector<float> lse = std::vector<float>(kHq * kTokens);
  std::vector<float> cos = std::vector<float>(kTokens * kHalf, 1.0f);
  std::vector<float> sin = std::vector<float>(kTokens * kHalf, 0.0f);
  std::vector<float> k_pages = std::vector<float>(2 * 4 * kHk * kD);
  std::vector<float> v_pages = std::vector<float>(2 * 4 * kHk * kD);
  std::vector<int64_t> slots = {0, 1, 2};
  std::vector<int32_t> cu = {0, kTokens}, cu_one = {0, 1}, seq_lens = {3}, table = {0, 1};
  std::vector<uint8_t> workspace = std::vector<uint8_t>(1 << 16);
};

hope_attention_params_t attention(Buffers &b, int32_t backend) {
  hope_attention_params_t p{};
  p.backend = backend;
  p.dtype = HOPE_DTYPE_FLOAT32;
  p.batch = 1;
  p.num_q_heads = kHq;
  p.num_kv_heads = kHk;
  p.head_dim = kD;
  p.cu_seqlens_q = p.cu_seqlens_k = b.cu.data();
  p.max_seqlen_q = p.max_seqlen_k = kTokens;
  p.q = b.q.data();
  p.k = b.k.data();
  p.v = b.v.data();
  p.out = b.out.data();
  p.lse = b.lse.data();
  p.cos_q = p.cos_k = b.cos.data();
  p.sin_q = p.sin_k = b.sin.data();
  p.causal = 1;
  return p;
}

hope_rope_apply_params_t rope_apply(Buffers &b, int32_t backend) {
  hope_rope_apply_params_t p{};
  p.backend = backend;
  p.dtype = HOPE_DTYPE_FLOAT32;
  p.num_tokens = kTokens;
  p.num_heads = kHq;
  p.head_dim = kD;
  p.x = b.q.data();
  p.out = b.out.data();
  p.cos = b.cos.data();
  p.sin = b.sin.data();
  return p;
}

hope_paged_kv_t paged(Buffers &b) {
  hope_paged_kv_t c{};
  c.dtype = HOPE_DTYPE_FLOAT32;
  c.num_pages = 2;
  c.page_size = 4;
  c.num_kv_heads = kHk;
  c.head_dim = kD;
  c.k_pages = b.k_pages.data();
  c.v_pages = b.v_pages.data();
  return c;
}

hope_kv_append_params_t kv_append(Buffers &b, int32_t backend) {
  hope_kv_append_params_t p{};
  p.backend = backend;
  p.cache = paged(b);
  p.num_tokens = 3;
  p.k = b.k.data();
  p.v = b.v.data();
  p.slot_mapping = b.slots.data();
  p.cos_k = b.cos.data();
  p.sin_k = b.sin.data();
  return p;
}

hope_decode_params_t decode(Buffers &b, int32_t backend) {
  hope_decode_params_t p{};
  p.backend = backend;
  p.cache = paged(b);
  p.batch = 1;
  p.num_q_heads = kHq;
  p.cu_seqlens_q = b.cu_one.data();
  p.max_seqlen_q = 1;
  p.seq_lens = b.seq_lens.data();
  p.max_seqlen_k = 3;
  p.page_table = b.table.data();
  p.max_pages_per_seq = 2;
  p.q = b.q.data();
  p.out = b.out.data();
  p.lse = b.lse.data();
  p.cos_q = b.cos.data();
  p.sin_q = b.sin.data();
  p.causal = 1;
  p.num_splits = 1;
  return p;
}

hope_merge_params_t merge(Buffers &b, int32_t backend) {
  hope_merge_params_t p{};
  p.backend = backend;
  p.dtype = HOPE_DTYPE_FLOAT32;
  p.num_tokens = 2;
  p.num_heads = kHq;
  p.head_dim = kD;
  p.o_a = b.q.data();
  p.o_b = b.q.data() + 2 * kHq * kD;
  p.lse_a = b.lse.data();
  p.lse_b = b.lse.data() + kHq * 2;
  p.out = b.out.data();
  return p;
}

// ---- the cases ------------------------------------------------------------------------------------------------

// kFails: an argument error on the CUDA backend, which is INVALID_VALUE where a GPU is usable, and may be the
// backend's refusal (NO_DEVICE / NOT_SUPPORTED) where none is, since some entry points check the device first.
enum class Expect { kOk, kInvalid, kNotSupported, kNoGpu, kFails };
struct Call {
  std::string what;
  Expect expect;
  bool needs_no_gpu;                   // a valid CUDA-backend call: only where no GPU is visible (host pointers)
  std::function<hope_status_t()> run;  // does its setup, then measured(<the one call>), then its teardown
};
struct EntryPoint {
  std::string name;
  std::vector<Call> calls;
};

hope_status_t expected_status(Expect e) {
  switch (e) {
    case Expect::kOk:
      return HOPE_SUCCESS;
    case Expect::kInvalid:
      return HOPE_ERROR_INVALID_VALUE;
    case Expect::kNotSupported:
      return HOPE_ERROR_NOT_SUPPORTED;
    case Expect::kNoGpu:
      return hope_test::no_gpu_status();
    case Expect::kFails:
      break;
  }
  return HOPE_ERROR_INTERNAL;
}

void expect_status(hope_status_t s, Expect e) {
  if (e == Expect::kFails)
    EXPECT_NE(s, HOPE_SUCCESS);
  else
    EXPECT_EQ(s, expected_status(e)) << hope_status_string(s) << ": " << hope_last_error();
}

std::vector<EntryPoint> entry_points() {
  const int32_t kCpu = HOPE_BACKEND_CPU, kCuda = HOPE_BACKEND_CUDA;
  std::vector<EntryPoint> eps;
  eps.push_back({"hope_cuda_device_count",
                 {{"count", Expect::kOk, false,
                   [] {
                     int32_t n;
                     return measured([&] { return hope_cuda_device_count(&n); });
                   }},
                  {"NULL", Expect::kInvalid, false, [] {
                     return measured([] { return hope_cuda_device_count(nullptr); });
                   }}}});
  eps.push_back({"hope_build_info",
                 {{"info", Expect::kOk, false,
                   [] {
                     const char *s;
                     return measured([&] { return hope_build_info(&s); });
                   }},
                  {"NULL", Expect::kInvalid, false, [] {
                     return measured([] { return hope_build_info(nullptr); });
                   }}}});
  eps.push_back({"hope_positions_count",
                 {{"segments", Expect::kOk, false,
                   [] {
                     auto s = segments();
                     int64_t n;
                     return measured([&] { return hope_positions_count(s.data(), int32_t(s.size()), &n); });
                   }},
                  {"negative count", Expect::kInvalid, false, [] {
                     auto s = segments();
                     int64_t n;
                     return measured([&] { return hope_positions_count(s.data(), -1, &n); });
                   }}}});
  eps.push_back({"hope_positions_build",
                 {{"diagonal", Expect::kOk, false,
                   [] {
                     auto s = segments();
                     std::vector<float> pos(3 * 13);
                     float next;
                     return measured([&] {
                       return hope_positions_build(s.data(), 3, HOPE_LAYOUT_DIAGONAL, 1.f, 0.f, pos.data(), 13, &next);
                     });
                   }},
                  {"wrong num_tokens", Expect::kInvalid, false, [] {
                     auto s = segments();
                     std::vector<float> pos(3 * 13);
                     return measured([&] {
                       return hope_positions_build(s.data(), 3, HOPE_LAYOUT_DIAGONAL, 1.f, 0.f, pos.data(), 12,
                                                   nullptr);
                     });
                   }}}});
  eps.push_back({"hope_positions_build_ex",
                 {{"timed M-RoPE", Expect::kOk, false,
                   [] {
                     auto s = segments();
                     std::vector<float> pos(3 * 13), secs(3, 0.5f);
                     hope_positions_params_t p{};
                     p.layout = HOPE_LAYOUT_MROPE_TIMED;
                     p.seconds_per_grid = secs.data();
                     p.tokens_per_second = 2.f;
                     float next;
                     return measured([&] { return hope_positions_build_ex(&p, s.data(), 3, pos.data(), 13, &next); });
                   }},
                  {"NULL params", Expect::kInvalid, false, [] {
                     auto s = segments();
                     std::vector<float> pos(3 * 13);
                     return measured([&] { return hope_positions_build_ex(nullptr, s.data(), 3, pos.data(), 13, nullptr); });
                   }}}});
  eps.push_back({"hope_positions_generated",
                 {{"four tokens", Expect::kOk, false,
                   [] {
                     std::vector<float> pos(3 * 4);
                     return measured([&] { return hope_positions_generated(10.f, 0, 4, pos.data()); });
                   }},
                  {"NULL positions", Expect::kInvalid, false, [] {
                     return measured([] { return hope_positions_generated(10.f, 0, 4, nullptr); });
                   }}}});
  eps.push_back(
      {"hope_segment_from_vision_grid",
       {{"video", Expect::kOk, false,
         [] {
           hope_segment_t s;
           return measured([&] { return hope_segment_from_vision_grid(HOPE_SEGMENT_VIDEO, 4, 8, 8, 2, 0.f, &s); });
         }},
        {"merge size does not divide", Expect::kInvalid, false, [] {
           hope_segment_t s;
           return measured([&] { return hope_segment_from_vision_grid(HOPE_SEGMENT_VIDEO, 4, 9, 8, 2, 0.f, &s); });
         }}}});
  eps.push_back(
      {"hope_segment_from_vision_grid_ex",
       {{"video, temporal merge 2", Expect::kOk, false,
         [] {
           hope_segment_t s;
           return measured([&] { return hope_segment_from_vision_grid_ex(HOPE_SEGMENT_VIDEO, 4, 8, 8, 2, 2, 0.f, &s); });
         }},
        {"temporal merge does not divide", Expect::kInvalid, false, [] {
           hope_segment_t s;
           return measured([&] { return hope_segment_from_vision_grid_ex(HOPE_SEGMENT_VIDEO, 3, 8, 8, 2, 2, 0.f, &s); });
         }}}});
  eps.push_back({"hope_temporal_scales_select",
                 {{"fixed", Expect::kOk, false,
                   [] {
                     auto s = segments();
                     hope_scale_params_t p{};
                     p.policy = HOPE_SCALE_FIXED;
                     p.fixed_scale = 0.75f;
                     return measured([&] { return hope_temporal_scales_select(&p, s.data(), 3, nullptr); });
                   }},
                  {"NULL params", Expect::kInvalid, false, [] {
                     auto s = segments();
                     return measured([&] { return hope_temporal_scales_select(nullptr, s.data(), 3, nullptr); });
                   }}}});
  eps.push_back({"hope_rope_components",
                 {{"hope", Expect::kOk, false,
                   [] {
                     const auto c = rope_config();
                     std::vector<int32_t> comp(kHalf);
                     return measured([&] { return hope_rope_components(&c, comp.data()); });
                   }},
                  {"odd head_dim", Expect::kInvalid, false, [] {
                     auto c = rope_config();
                     c.head_dim = 15;
                     std::vector<int32_t> comp(kHalf);
                     return measured([&] { return hope_rope_components(&c, comp.data()); });
                   }}}});
  eps.push_back({"hope_rope_cos_sin",
                 {{"host tables", Expect::kOk, false,
                   [] {
                     const auto c = rope_config();
                     std::vector<float> pos(3 * kTokens, 7.f), cs(kTokens * kHalf), sn(kTokens * kHalf);
                     return measured([&] { return hope_rope_cos_sin(&c, pos.data(), kTokens, cs.data(), sn.data()); });
                   }},
                  {"NULL positions", Expect::kInvalid, false, [] {
                     const auto c = rope_config();
                     std::vector<float> cs(kTokens * kHalf), sn(kTokens * kHalf);
                     return measured([&] { return hope_rope_cos_sin(&c, nullptr, kTokens, cs.data(), sn.data()); });
                   }}}});
  eps.push_back({"hope_rope_cache_create",
                 {{"host cache", Expect::kOk, false,
                   [] {
                     const auto c = rope_config();
                     hope_rope_cache_t cache = nullptr;
                     const hope_status_t s =
                         measured([&] { return hope_rope_cache_create(&c, 8, HOPE_MEMORY_HOST, &cache); });
                     hope_rope_cache_destroy(cache);
                     return s;
                   }},
                  {"capacity 0", Expect::kInvalid, false,
                   [] {
                     const auto c = rope_config();
                     hope_rope_cache_t cache = nullptr;
                     return measured([&] { return hope_rope_cache_create(&c, 0, HOPE_MEMORY_HOST, &cache); });
                   }},
                  {"device cache", Expect::kNoGpu, true, [] {
                     const auto c = rope_config();
                     hope_rope_cache_t cache = nullptr;
                     return measured([&] { return hope_rope_cache_create(&c, 8, HOPE_MEMORY_DEVICE, &cache); });
                   }}}});
  // The cache calls get a host cache made (and destroyed) outside the measured call.
  const auto with_cache = [](std::function<hope_status_t(hope_rope_cache_t)> f) {
    return [f] {
      const auto c = rope_config();
      hope_rope_cache_t cache = nullptr;
      EXPECT_EQ(hope_rope_cache_create(&c, 8, HOPE_MEMORY_HOST, &cache), HOPE_SUCCESS);
      const hope_status_t s = f(cache);
      hope_rope_cache_destroy(cache);
      return s;
    };
  };
  eps.push_back({"hope_rope_cache_fill",
                 {{"host positions", Expect::kOk, false, with_cache([](hope_rope_cache_t cache) {
                     std::vector<float> pos(3 * 4, 3.f);
                     return measured(
                         [&] { return hope_rope_cache_fill(cache, 0, pos.data(), 4, 0, HOPE_MEMORY_HOST, nullptr); });
                   })},
                  {"negative offset", Expect::kInvalid, false, with_cache([](hope_rope_cache_t cache) {
                     std::vector<float> pos(3 * 4, 3.f);
                     return measured(
                         [&] { return hope_rope_cache_fill(cache, -1, pos.data(), 4, 0, HOPE_MEMORY_HOST, nullptr); });
                   })},
                  {"device positions", Expect::kNoGpu, true, with_cache([](hope_rope_cache_t cache) {
                     std::vector<float> pos(3 * 4, 3.f);
                     return measured(
                         [&] { return hope_rope_cache_fill(cache, 0, pos.data(), 4, 0, HOPE_MEMORY_DEVICE, nullptr); });
                   })}}});
  eps.push_back({"hope_rope_cache_get",
                 {{"tables", Expect::kOk, false, with_cache([](hope_rope_cache_t cache) {
                     const float *cs, *sn;
                     return measured([&] { return hope_rope_cache_get(cache, &cs, &sn, nullptr, nullptr); });
                   })},
                  {"NULL cache", Expect::kInvalid, false, [] {
                     return measured([] { return hope_rope_cache_get(nullptr, nullptr, nullptr, nullptr, nullptr); });
                   }}}});
  eps.push_back({"hope_rope_cache_destroy",
                 {{"host cache", Expect::kOk, false,
                   [] {
                     const auto c = rope_config();
                     hope_rope_cache_t cache = nullptr;
                     EXPECT_EQ(hope_rope_cache_create(&c, 8, HOPE_MEMORY_HOST, &cache), HOPE_SUCCESS);
                     return measured([&] { return hope_rope_cache_destroy(cache); });
                   }},
                  {"NULL (a no-op)", Expect::kOk, false, [] {
                     return measured([] { return hope_rope_cache_destroy(nullptr); });
                   }}}});
  // Tensor calls: a valid CPU call, an argument error, a CUDA-backend argument error, a valid CUDA-backend call.
  const auto tensor_calls = [&](auto make, auto call, auto spoil) {
    std::vector<Call> calls;
    for (int32_t be : {kCpu, kCuda}) {
      const std::string where = be == kCpu ? "CPU" : "CUDA";
      calls.push_back({where + " valid", be == kCpu ? Expect::kOk : Expect::kNoGpu, be == kCuda, [=] {
                         Buffers b;
                         auto p = make(b, be);
                         return measured([&] { return call(p, b); });
                       }});
      calls.push_back({where + " invalid", be == kCpu ? Expect::kInvalid : Expect::kFails, false, [=] {
                         Buffers b;
                         auto p = make(b, be);
                         spoil(p);
                         return measured([&] { return call(p, b); });
                       }});
    }
    return calls;
  };
  eps.push_back({"hope_rope_apply",
                 tensor_calls(
                     rope_apply, [](hope_rope_apply_params_t &p, Buffers &) { return hope_rope_apply(&p, nullptr); },
                     [](hope_rope_apply_params_t &p) { p.head_dim = 15; })});
  eps.push_back(
      {"hope_attention_forward",
       tensor_calls(
           attention, [](hope_attention_params_t &p, Buffers &) { return hope_attention_forward(&p, nullptr); },
           [](hope_attention_params_t &p) { p.num_kv_heads = 3; })});
  {
    auto ws = [](hope_attention_params_t &p, Buffers &) {
      size_t n;
      return hope_attention_unfused_workspace_size(&p, &n);
    };
    auto fwd = [](hope_attention_params_t &p, Buffers &b) {
      return hope_attention_forward_unfused(&p, b.workspace.data(), b.workspace.size(), nullptr);
    };
    auto spoil = [](hope_attention_params_t &p) {
      p.num_kv_heads = 3;
    };
    for (auto &ep : {EntryPoint{"hope_attention_unfused_workspace_size", tensor_calls(attention, ws, spoil)},
                     EntryPoint{"hope_attention_forward_unfused", tensor_calls(attention, fwd, spoil)}}) {
      EntryPoint e = ep;
      e.calls[0].expect = Expect::kNotSupported;  // the unfused path is CUDA-only: the CPU backend refuses it
      eps.push_back(e);
    }
  }
  eps.push_back({"hope_kv_append",
                 tensor_calls(
                     kv_append, [](hope_kv_append_params_t &p, Buffers &) { return hope_kv_append(&p, nullptr); },
                     [](hope_kv_append_params_t &p) { p.num_tokens = -1; })});
  eps.push_back({"hope_decode_workspace_size", tensor_calls(
                                                   decode,
                                                   [](hope_decode_params_t &p, Buffers &) {
                                                     size_t n;
                                                     return hope_decode_workspace_size(&p, &n);
                                                   },
                                                   [](hope_decode_params_t &p) { p.num_q_heads = 0; })});
  eps.push_back({"hope_decode_forward", tensor_calls(
                                            decode,
                                            [](hope_decode_params_t &p, Buffers &b) {
                                              return hope_decode_forward(&p, b.workspace.data(), b.workspace.size(),
                                                                         nullptr);
                                            },
                                            [](hope_decode_params_t &p) { p.num_q_heads = 0; })});
  eps.push_back(
      {"hope_merge_states", tensor_calls(
                                merge, [](hope_merge_params_t &p, Buffers &) { return hope_merge_states(&p, nullptr); },
                                [](hope_merge_params_t &p) { p.head_dim = 0; })});
  return eps;
}

std::vector<std::string> exported_functions() {
  std::ifstream in(HOPE_EXPORTS_TXT);
  std::vector<std::string> names;
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) names.push_back(line);
  return names;
}

// Exactly one range, in domain hope_attn, named `fn`, on this thread: opened at depth 1, closed back to 0.
void expect_one_range(const std::vector<nvtxrec_event_t> &ev, const std::string &fn) {
  ASSERT_EQ(ev.size(), 2u) << "expected one push and one pop, got " << ev.size() << " events";
  const uint64_t self = uint64_t(pthread_self());
  EXPECT_EQ(ev[0].kind, NVTXREC_PUSH);
  EXPECT_STREQ(ev[0].domain, kDomain);
  EXPECT_EQ(ev[0].name, fn);
  EXPECT_EQ(ev[0].depth, 1) << "the range nests in an open range of domain hope_attn";
  EXPECT_EQ(ev[0].thread, self);
  EXPECT_EQ(ev[1].kind, NVTXREC_POP) << "the range was not closed";
  EXPECT_STREQ(ev[1].domain, kDomain);
  EXPECT_EQ(ev[1].depth, 0) << "the pop did not close the range it opened";
  EXPECT_EQ(ev[1].thread, self);
}

class NvtxRanges : public ::testing::Test {
 protected:
  void SetUp() override {
    if (nvtx_disabled()) GTEST_SKIP() << "HOPE_NVTX_DISABLE is set: NvtxDisabled.* runs instead";
    const char *info = nullptr;
    ASSERT_EQ(hope_build_info(&info), HOPE_SUCCESS);
    ASSERT_NE(std::string(info).find("\nnvtx=on\n"), std::string::npos) << "library built without NVTX:\n" << info;
  }
};

TEST_F(NvtxRanges, RecorderIsAttachedToTheLibrary) {
  auto s = segments();
  int64_t n = 0;
  ASSERT_EQ(measured([&] { return hope_positions_count(s.data(), 3, &n); }), HOPE_SUCCESS);
  EXPECT_GE(nvtxrec_clients(), 1) << "NVTX did not load the recorder: is NVTX_INJECTION64_PATH set?";
  EXPECT_TRUE(nvtxrec_domain_created(kDomain));
  expect_one_range(t_last, "hope_positions_count");
  EXPECT_EQ(nvtxrec_problems(), 0);
}

TEST_F(NvtxRanges, EveryExportedFunctionHasACase) {
  const std::vector<std::string> exported = exported_functions();
  ASSERT_FALSE(exported.empty()) << "cannot read " << HOPE_EXPORTS_TXT;
  std::set<std::string> covered;
  for (const EntryPoint &e : entry_points()) covered.insert(e.name);
  for (const std::string &fn : exported)
    EXPECT_TRUE(covered.count(fn) + kNoRange.count(fn) == 1)
        << fn << " is exported but this test does not call it: add a case (every entry point opens a range)";
  const std::set<std::string> exported_set(exported.begin(), exported.end());
  for (const std::string &fn : covered) EXPECT_EQ(exported_set.count(fn), 1u) << fn << " is not exported";
  for (const auto &x : kNoRange) EXPECT_EQ(exported_set.count(x.first), 1u) << x.first << " is not exported";
}

TEST_F(NvtxRanges, EachEntryPointOpensOneRangeNamedAfterItself) {
  const bool gpu = gpu_visible();
  int calls = 0, errors = 0;
  for (const EntryPoint &e : entry_points()) {
    bool error_path = false;
    for (const Call &c : e.calls) {
      if (c.needs_no_gpu && gpu) continue;
      SCOPED_TRACE(e.name + ": " + c.what);
      const hope_status_t s = c.run();
      expect_status(s, c.expect);
      expect_one_range(t_last, e.name);
      error_path = error_path || s != HOPE_SUCCESS;
      ++calls;
      errors += s != HOPE_SUCCESS;
    }
    EXPECT_TRUE(error_path || e.name == "hope_rope_cache_destroy")  // a host cache's destroy cannot fail
        << e.name << ": no case takes an error path";
  }
  EXPECT_EQ(nvtxrec_problems(), 0);
  std::printf("checked %d calls (%d of them failing on purpose)%s\n", calls, errors,
              gpu ? "; a GPU is visible: valid CUDA-backend calls skipped" : "");
}

TEST_F(NvtxRanges, DocumentedExceptionsOpenNoRange) {
  measured([] {
    (void)hope_status_string(HOPE_ERROR_INVALID_VALUE);
    (void)hope_last_error();
    (void)hope_version();
    return HOPE_SUCCESS;
  });
  EXPECT_TRUE(t_last.empty()) << t_last.size() << " events from the getters";
}

TEST_F(NvtxRanges, NestsInsideTheCallersRanges) {
  nvtxDomainHandle_t mine = nvtxDomainCreateA("hope_test");
  const auto c = rope_config();
  std::vector<float> pos(3 * kTokens, 2.f), cs(kTokens * kHalf), sn(kTokens * kHalf);
  measured([&] {
    nvtxRangePushA("caller");  // the global domain
    nvtxEventAttributes_t a{};
    a.version = NVTX_VERSION;
    a.size = NVTX_EVENT_ATTRIB_STRUCT_SIZE;
    a.messageType = NVTX_MESSAGE_TYPE_ASCII;
    a.message.ascii = "caller in its own domain";
    nvtxDomainRangePushEx(mine, &a);
    const hope_status_t s = hope_rope_cos_sin(&c, pos.data(), kTokens, cs.data(), sn.data());
    const hope_status_t bad = hope_rope_cos_sin(&c, nullptr, kTokens, cs.data(), sn.data());
    nvtxDomainRangePop(mine);
    nvtxRangePop();
    EXPECT_EQ(s, HOPE_SUCCESS);
    EXPECT_EQ(bad, HOPE_ERROR_INVALID_VALUE);
    return s;
  });
  ASSERT_EQ(t_last.size(), 8u);
  const char *want_domain[] = {"", "hope_test", kDomain, kDomain, kDomain, kDomain, "hope_test", ""};
  const int want_kind[] = {NVTXREC_PUSH, NVTXREC_PUSH, NVTXREC_PUSH, NVTXREC_POP,
                           NVTXREC_PUSH, NVTXREC_POP,  NVTXREC_POP,  NVTXREC_POP};
  const int want_depth[] = {1, 1, 1, 0, 1, 0, 0, 0};
  for (size_t i = 0; i < t_last.size(); ++i) {
    SCOPED_TRACE("event " + std::to_string(i));
    EXPECT_STREQ(t_last[i].domain, want_domain[i]);
    EXPECT_EQ(t_last[i].kind, want_kind[i]);
    EXPECT_EQ(t_last[i].depth, want_depth[i]);
  }
  EXPECT_STREQ(t_last[2].name, "hope_rope_cos_sin");
  EXPECT_STREQ(t_last[4].name, "hope_rope_cos_sin");
  EXPECT_EQ(nvtxrec_problems(), 0);
}

TEST_F(NvtxRanges, EveryThreadBalancesItsOwnRanges) {
  constexpr int kThreads = 4, kIterations = 25;
  nvtxrec_clear();
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([] {
      Buffers b;
      auto s = segments();
      const auto c = rope_config();
      std::vector<float> pos(3 * kTokens, 5.f), cs(kTokens * kHalf), sn(kTokens * kHalf);
      for (int i = 0; i < kIterations; ++i) {
        int64_t n;
        EXPECT_EQ(hope_positions_count(s.data(), 3, &n), HOPE_SUCCESS);
        EXPECT_EQ(hope_rope_cos_sin(&c, nullptr, kTokens, cs.data(), sn.data()), HOPE_ERROR_INVALID_VALUE);
        auto p = attention(b, HOPE_BACKEND_CPU);
        EXPECT_EQ(hope_attention_forward(&p, nullptr), HOPE_SUCCESS);
      }
    });
  for (std::thread &th : threads) th.join();
  const std::vector<nvtxrec_event_t> ev = events();
  ASSERT_EQ(nvtxrec_dropped(), 0);
  EXPECT_EQ(ev.size(), size_t(kThreads * kIterations * 3 * 2));
  std::map<uint64_t, std::vector<nvtxrec_event_t>> per_thread;
  for (const nvtxrec_event_t &e : ev) per_thread[e.thread].push_back(e);
  EXPECT_EQ(per_thread.size(), size_t(kThreads));
  const char *order[] = {"hope_positions_count", "hope_rope_cos_sin", "hope_attention_forward"};
  for (const auto &t : per_thread) {
    ASSERT_EQ(t.second.size(), size_t(kIterations * 3 * 2));
    for (size_t i = 0; i < t.second.size(); i += 2) {
      const nvtxrec_event_t &push = t.second[i], &pop = t.second[i + 1];
      ASSERT_TRUE(push.kind == NVTXREC_PUSH && push.depth == 1 && pop.kind == NVTXREC_POP && pop.depth == 0)
          << "thread events " << i << ", " << i + 1 << " are not one closed range";
      ASSERT_STREQ(push.name, order[(i / 2) % 3]);
      ASSERT_STREQ(push.domain, kDomain);
    }
  }
  EXPECT_EQ(nvtxrec_problems(), 0);
}

// Run with HOPE_NVTX_DISABLE=1 (tests/CMakeLists.txt): no entry point opens a range, and the library never
// even creates its domain; the test's own range shows the recorder is attached.
TEST(NvtxDisabled, NoEntryPointOpensARange) {
  if (!nvtx_disabled()) GTEST_SKIP() << "run with HOPE_NVTX_DISABLE=1";
  const bool gpu = gpu_visible();
  nvtxrec_clear();
  int calls = 0;
  for (const EntryPoint &e : entry_points())
    for (const Call &c : e.calls) {
      if (c.needs_no_gpu && gpu) continue;
      SCOPED_TRACE(e.name + ": " + c.what);
      expect_status(c.run(), c.expect);
      EXPECT_TRUE(t_last.empty()) << t_last.size() << " events";
      ++calls;
    }
  EXPECT_FALSE(nvtxrec_domain_created(kDomain)) << "the library created its NVTX domain";
  nvtxDomainHandle_t mine = nvtxDomainCreateA("hope_test");
  nvtxEventAttributes_t a{};
  a.version = NVTX_VERSION;
  a.size = NVTX_EVENT_ATTRIB_STRUCT_SIZE;
  a.messageType = NVTX_MESSAGE_TYPE_ASCII;
  a.message.ascii = "recorder check";
  measured([&] {
    nvtxDomainRangePushEx(mine, &a);
    nvtxDomainRangePop(mine);
    return HOPE_SUCCESS;
  });
  EXPECT_GE(nvtxrec_clients(), 1);
  ASSERT_EQ(t_last.size(), 2u) << "the recorder is not attached, so the check above proves nothing";
  EXPECT_STREQ(t_last[0].name, "recorder check");
  std::printf("checked %d calls: no range\n", calls);
}

}  // namespace
