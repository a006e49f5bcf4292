// test_build_info.cc — hope_build_info: every documented key once, values that agree with the build this suite
// was configured with (HOPE_TEST_WITH_CUDA / HOPE_TEST_WITH_NVTX from tests/CMakeLists.txt), with the other entry
// points (version, device count) and, on x86 Linux, cpu_features with the kernel's /proc/cpuinfo flags.
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <thread>

#include "test_util.h"

#ifndef HOPE_TEST_WITH_CUDA
#define HOPE_TEST_WITH_CUDA 1
#endif
#ifndef HOPE_TEST_WITH_NVTX
#define HOPE_TEST_WITH_NVTX 1
#endif

namespace {

std::map<std::string, std::string> build_info() {
  const char *info = nullptr;
  EXPECT_EQ(hope_build_info(&info), HOPE_SUCCESS) << hope_last_error();
  std::map<std::string, std::string> kv;
  if (info == nullptr) return kv;
  const std::string text = info;
  EXPECT_FALSE(text.empty());
  EXPECT_EQ(text.back(), '\n') << "every line ends in a newline";
  std::istringstream lines(text);
  std::string line;
  while (std::getline(lines, line)) {
    const size_t eq = line.find('=');
    EXPECT_NE(eq, std::string::npos) << "not key=value: '" << line << "'";
    if (eq == std::string::npos) continue;
    const std::string key = line.substr(0, eq);
    EXPECT_EQ(kv.count(key), 0u) << "key " << key << " appears twice";
    kv[key] = line.substr(eq + 1);
  }
  return kv;
}

std::set<std::string> split(const std::string &s, char sep) {
  std::set<std::string> out;
  std::istringstream in(s);
  std::string item;
  while (std::getline(in, item, sep))
    if (!item.empty()) out.insert(item);
  return out;
}

TEST(BuildInfo, HasEveryDocumentedKey) {
  const auto kv = build_info();
  for (const char *key : {"version", "cuda", "cuda_version", "cuda_architectures", "cuda_devices", "attention_families", "nvtx",
                          "cpu_isa_paths", "cpu_isa_selected", "cpu_features", "compiler", "build_type", "system"})
    EXPECT_EQ(kv.count(key), 1u) << "missing key " << key;
}

TEST(BuildInfo, MatchesTheTestBuild) {
  const auto kv = build_info();
  std::ostringstream version;
  version << HOPE_VERSION_MAJOR << "." << HOPE_VERSION_MINOR << "." << HOPE_VERSION_PATCH;
  EXPECT_EQ(kv.at("version"), version.str());
  EXPECT_EQ(kv.at("cuda"), HOPE_TEST_WITH_CUDA ? "on" : "off");
  EXPECT_EQ(hope_test::library_has_cuda(), bool(HOPE_TEST_WITH_CUDA));
  EXPECT_EQ(kv.at("nvtx"), HOPE_TEST_WITH_NVTX ? "on" : "off");
  if (HOPE_TEST_WITH_CUDA) {
    EXPECT_FALSE(kv.at("cuda_version").empty());
    EXPECT_FALSE(kv.at("cuda_architectures").empty());
    EXPECT_EQ(split(kv.at("attention_families"), ',').count("sm80"), 1u) << kv.at("attention_families");
    EXPECT_EQ(split(kv.at("attention_families"), ',').count("sm90"), hope_test::library_has_sm90() ? 1u : 0u);
  } else {
    EXPECT_EQ(kv.at("cuda_version"), "");
    EXPECT_EQ(kv.at("cuda_architectures"), "");
    EXPECT_EQ(kv.at("attention_families"), "");
  }
  int32_t devices = -1;
  ASSERT_EQ(hope_cuda_device_count(&devices), HOPE_SUCCESS);
  EXPECT_EQ(kv.at("cuda_devices"), std::to_string(devices));
  if (!HOPE_TEST_WITH_CUDA) EXPECT_EQ(devices, 0);
  // The selected CPU path is one of those compiled in.
  EXPECT_EQ(split(kv.at("cpu_isa_paths"), ',').count(kv.at("cpu_isa_selected")), 1u)
      << kv.at("cpu_isa_selected") << " not in " << kv.at("cpu_isa_paths");
}

TEST(BuildInfo, SameStaticStringOnEveryThreadAndNullIsInvalid) {
  const char *a = nullptr, *b = nullptr;
  ASSERT_EQ(hope_build_info(&a), HOPE_SUCCESS);
  std::thread t([&] { EXPECT_EQ(hope_build_info(&b), HOPE_SUCCESS); });
  t.join();
  EXPECT_EQ(a, b);
  EXPECT_HOPE_FAIL(hope_build_info(nullptr), HOPE_ERROR_INVALID_VALUE);
  EXPECT_NE(std::string(hope_last_error()).find("hope_build_info"), std::string::npos) << hope_last_error();
}

// cpu_features against the kernel's own view of the CPU (x86 Linux): each reported feature present, and each
// feature the kernel lists reported.
TEST(BuildInfo, CpuFeaturesMatchProcCpuinfo) {
#if defined(__x86_64__) && defined(__linux__)
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::string line, flags;
  while (std::getline(cpuinfo, line))
    if (line.rfind("flags", 0) == 0) {
      flags = line.substr(line.find(':') + 1);
      break;
    }
  if (flags.empty()) GTEST_SKIP() << "/proc/cpuinfo has no flags line";
  const std::set<std::string> kernel = split(flags, ' ');
  const std::set<std::string> reported = split(build_info().at("cpu_features"), ',');
  const std::map<std::string, std::string> names = {
      {"sse4.2", "sse4_2"},     {"avx", "avx"},           {"avx2", "avx2"},         {"fma", "fma"},
      {"f16c", "f16c"},         {"avx512f", "avx512f"},   {"avx512bw", "avx512bw"}, {"avx512dq", "avx512dq"},
      {"avx512vl", "avx512vl"}, {"avx512vnni", "avx512_vnni"}, {"avx512bf16", "avx512_bf16"}};
  for (const auto &n : names)
    EXPECT_EQ(reported.count(n.first), kernel.count(n.second))
        << n.first << ": reported " << reported.count(n.first) << ", /proc/cpuinfo " << kernel.count(n.second);
  for (const std::string &f : reported) EXPECT_EQ(names.count(f), 1u) << "unexpected feature name " << f;
#else
  GTEST_SKIP() << "checked against /proc/cpuinfo on x86-64 Linux only";
#endif
}

}  // namespace
