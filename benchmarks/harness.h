// harness.h — a small event-timed benchmark harness for hope_attn (CUDA runtime API only, no framework).
//
// A case is a name, a shape string, a byte or FLOP count and a function run(set) that enqueues one
// iteration on the harness's stream using input set `set`. The harness:
//   - opens an NVTX range named after the case in domain "hope_attn_bench" (nsys/ncu show it);
//   - runs `warmup` iterations, then `reps` iterations, each between its own pair of cudaEvents, rotating
//     through `num_sets` input sets so that consecutive iterations do not find their inputs in L2;
//   - reports the median (and min) of the per-iteration times, GB/s and/or TFLOP/s;
//   - collects results for a printed table and a JSON file (one object per case).
#pragma once

#include <cuda_runtime.h>
#include <nvtx3/nvToolsExt.h>

#include <algorithm>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

namespace hope_bench {

struct Result {
  std::string name, shape, note;
  double median_ms = 0.0, min_ms = 0.0;
  double bytes = 0.0;        // bytes read + written per iteration (0: not a bandwidth case)
  double flops = 0.0;        // FLOPs per iteration (0: not a compute case)
  double gbps = 0.0, tflops = 0.0;
  double fraction_of_copy = 0.0;  // gbps / the D2D copy's gbps (0: not computed)
  int reps = 0;
  bool skipped = false;
};

class Harness {
 public:
  Harness(cudaStream_t stream, int warmup, int reps) : stream_(stream), warmup_(warmup), reps_(reps) {
    domain_ = nvtxDomainCreateA("hope_attn_bench");
  }
  ~Harness() { nvtxDomainDestroy(domain_); }

  // Whether a case name passes --filter (a comma-separated list of substrings; empty passes everything).
  static bool matches(const std::string &name, const std::string &filter) {
    if (filter.empty()) return true;
    size_t start = 0;
    while (start <= filter.size()) {
      size_t end = filter.find(',', start);
      if (end == std::string::npos) end = filter.size();
      const std::string part = filter.substr(start, end - start);
      if (!part.empty() && name.find(part) != std::string::npos) return true;
      start = end + 1;
    }
    return false;
  }

  // Times run(set) as described above. run returns false (with *why) to abandon the case.
  // Returns false when a CUDA call failed (the message is printed and stored in the result's note).
  bool time_case(Result *r, int num_sets, const std::function<bool(int set, std::string *why)> &run) {
    nvtxEventAttributes_t attr = {};
    attr.version = NVTX_VERSION;
    attr.size = NVTX_EVENT_ATTRIB_STRUCT_SIZE;
    attr.messageType = NVTX_MESSAGE_TYPE_ASCII;
    attr.message.ascii = r->name.c_str();
    nvtxDomainRangePushEx(domain_, &attr);
    const bool ok = time_inner(r, num_sets, run);
    nvtxDomainRangePop(domain_);
    return ok;
  }

  void add(const Result &r) { results_.push_back(r); }
  const std::vector<Result> &results() const { return results_; }

  void print_table(FILE *f) const {
    std::fprintf(f, "%-58s %-34s %10s %10s %9s %7s\n", "case", "shape", "median ms", "GB/s", "TFLOP/s", "%copy");
    for (const Result &r : results_) {
      if (r.skipped) {
        std::fprintf(f, "%-58s %-34s %10s  skipped: %s\n", r.name.c_str(), r.shape.c_str(), "-", r.note.c_str());
        continue;
      }
      char gb[32] = "-", tf[32] = "-", fr[32] = "-";
      if (r.gbps > 0) std::snprintf(gb, sizeof gb, "%.1f", r.gbps);
      if (r.tflops > 0) std::snprintf(tf, sizeof tf, "%.2f", r.tflops);
      if (r.fraction_of_copy > 0) std::snprintf(fr, sizeof fr, "%.1f", 100.0 * r.fraction_of_copy);
      std::fprintf(f, "%-58s %-34s %10.4f %10s %9s %7s\n", r.name.c_str(), r.shape.c_str(), r.median_ms, gb, tf, fr);
    }
  }

  bool write_json(const std::string &path, const std::string &gpu_name) const {
    FILE *f = std::fopen(path.c_str(), "w");
    if (f == nullptr) return false;
    std::fprintf(f, "[\n");
    for (size_t i = 0; i < results_.size(); ++i) {
      const Result &r = results_[i];
      std::fprintf(f,
                   "  {\"name\": \"%s\", \"shape\": \"%s\", \"gpu\": \"%s\", \"skipped\": %s, \"note\": \"%s\", "
                   "\"reps\": %d, \"median_ms\": %.6f, \"min_ms\": %.6f, \"bytes\": %.0f, \"flops\": %.0f, "
                   "\"gbps\": %.3f, \"tflops\": %.4f, \"fraction_of_copy\": %.4f}%s\n",
                   escape(r.name).c_str(), escape(r.shape).c_str(), escape(gpu_name).c_str(),
                   r.skipped ? "true" : "false", escape(r.note).c_str(), r.reps, r.median_ms, r.min_ms, r.bytes,
                   r.flops, r.gbps, r.tflops, r.fraction_of_copy, i + 1 < results_.size() ? "," : "");
    }
    std::fprintf(f, "]\n");
    return std::fclose(f) == 0;
  }

 private:
  static std::string escape(const std::string &s) {
    std::string o;
    for (char c : s) {
      if (c == '"' || c == '\\') o += '\\';
      if (static_cast<unsigned char>(c) < 0x20) continue;
      o += c;
    }
    return o;
  }

  bool check(cudaError_t e, const char *what, Result *r) {
    if (e == cudaSuccess) return true;
    r->skipped = true;
    r->note = std::string(what) + ": " + cudaGetErrorString(e);
    std::fprintf(stderr, "%s: %s\n", r->name.c_str(), r->note.c_str());
    return false;
  }

  bool time_inner(Result *r, int num_sets, const std::function<bool(int, std::string *)> &run) {
    std::string why;
    for (int i = 0; i < warmup_; ++i)
      if (!run(i % num_sets, &why)) {
        r->skipped = true;
        r->note = why;
        return true;
      }
    if (!check(cudaStreamSynchronize(stream_), "warm-up", r)) return false;
    std::vector<cudaEvent_t> ev(2 * static_cast<size_t>(reps_), nullptr);
    bool ok = true;
    for (cudaEvent_t &e : ev) ok = ok && check(cudaEventCreate(&e), "cudaEventCreate", r);
    for (int i = 0; ok && i < reps_; ++i) {
      ok = check(cudaEventRecord(ev[2 * i], stream_), "cudaEventRecord", r);
      if (ok && !run((warmup_ + i) % num_sets, &why)) {
        r->skipped = true;
        r->note = why;
        ok = false;
      }
      ok = ok && check(cudaEventRecord(ev[2 * i + 1], stream_), "cudaEventRecord", r);
    }
    ok = ok && check(cudaStreamSynchronize(stream_), "timed runs", r);
    std::vector<double> ms;
    for (int i = 0; ok && i < reps_; ++i) {
      float t = 0.0f;
      ok = check(cudaEventElapsedTime(&t, ev[2 * i], ev[2 * i + 1]), "cudaEventElapsedTime", r);
      ms.push_back(t);
    }
    for (cudaEvent_t e : ev)
      if (e != nullptr) cudaEventDestroy(e);
    if (!ok) return r->skipped && r->note == why;  // a case's own refusal is not a failure
    std::sort(ms.begin(), ms.end());
    r->reps = reps_;
    r->median_ms = ms.size() % 2 ? ms[ms.size() / 2] : 0.5 * (ms[ms.size() / 2 - 1] + ms[ms.size() / 2]);
    r->min_ms = ms.front();
    if (r->bytes > 0) r->gbps = r->bytes / (r->median_ms * 1e-3) / 1e9;
    if (r->flops > 0) r->tflops = r->flops / (r->median_ms * 1e-3) / 1e12;
    return true;
  }

  cudaStream_t stream_;
  int warmup_, reps_;
  nvtxDomainHandle_t domain_;
  std::vector<Result> results_;
};

}  // namespace hope_bench
