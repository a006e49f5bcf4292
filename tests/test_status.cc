// Status strings, the per-thread last error, the version, device discovery.
#include <thread>

#include "test_util.h"

TEST(Status, EveryStatusHasAName) {
  EXPECT_STREQ(hope_status_string(HOPE_SUCCESS), "HOPE_SUCCESS");
  EXPECT_STREQ(hope_status_string(HOPE_ERROR_INVALID_VALUE), "HOPE_ERROR_INVALID_VALUE");
  EXPECT_STREQ(hope_status_string(HOPE_ERROR_NOT_SUPPORTED), "HOPE_ERROR_NOT_SUPPORTED");
  EXPECT_STREQ(hope_status_string(HOPE_ERROR_OUT_OF_MEMORY), "HOPE_ERROR_OUT_OF_MEMORY");
  EXPECT_STREQ(hope_status_string(HOPE_ERROR_CUDA), "HOPE_ERROR_CUDA");
  EXPECT_STREQ(hope_status_string(HOPE_ERROR_NO_DEVICE), "HOPE_ERROR_NO_DEVICE");
  EXPECT_STREQ(hope_status_string(HOPE_ERROR_INTERNAL), "HOPE_ERROR_INTERNAL");
  EXPECT_STREQ(hope_status_string(static_cast<hope_status_t>(77)), "HOPE_ERROR_UNKNOWN_STATUS");
}

TEST(Status, VersionMatchesHeader) {
  EXPECT_EQ(hope_version(), HOPE_VERSION);
  EXPECT_EQ(HOPE_VERSION, HOPE_VERSION_MAJOR * 10000 + HOPE_VERSION_MINOR * 100 + HOPE_VERSION_PATCH);
}

TEST(Status, LastErrorIsPerThread) {
  EXPECT_EQ(hope_cuda_device_count(nullptr), HOPE_ERROR_INVALID_VALUE);
  std::string mine = hope_last_error();
  EXPECT_NE(mine.find("count"), std::string::npos) << mine;
  std::string other = "unset";
  std::thread t([&] { other = hope_last_error(); });
  t.join();
  EXPECT_EQ(other, "");  // a fresh thread has no message
  EXPECT_EQ(mine, hope_last_error());
}

TEST(Status, DeviceCountNeverFails) {
  int32_t n = -1;
  EXPECT_EQ(hope_cuda_device_count(&n), HOPE_SUCCESS);
  EXPECT_GE(n, 0);
}
