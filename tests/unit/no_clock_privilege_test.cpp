// Unit tests never hold the clock privilege: scripts/test runs every test level under
// `capsh --drop=cap_sys_time`, so a regression that makes a driver or a test write the clock
// fails with EPERM instead of moving this machine's clock. This test fails when that guard is
// missing, so it cannot be dropped silently.
#include <gtest/gtest.h>
#include <linux/capability.h>
#include <sys/prctl.h>

#include <cstdint>
#include <fstream>
#include <string>

namespace {

// One capability set from /proc/self/status ("CapEff:\t0000003fffffffff"), as a bit mask.
uint64_t capability_set(const std::string& name) {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind(name + ":", 0) == 0)
      return std::stoull(line.substr(name.size() + 1), nullptr, 16);
  }
  ADD_FAILURE() << name << " not found in /proc/self/status";
  return ~uint64_t{0};
}

constexpr uint64_t kSysTime = uint64_t{1} << CAP_SYS_TIME;

TEST(NoClockPrivilege, TestsRunWithoutCapSysTime) {
  EXPECT_EQ(capability_set("CapEff") & kSysTime, 0u)
      << "this test process may set the clock; run the tests through scripts/test, which drops "
         "it with capsh --drop=cap_sys_time";
  EXPECT_EQ(capability_set("CapPrm") & kSysTime, 0u) << "CAP_SYS_TIME is permitted";
}

TEST(NoClockPrivilege, NoChildCanRegainIt) {
  // Out of the bounding set, not even a set-uid-root or file-capability program we start (a peer,
  // the daemon under test) can get it back.
  EXPECT_EQ(prctl(PR_CAPBSET_READ, CAP_SYS_TIME, 0, 0, 0), 0)
      << "CAP_SYS_TIME is still in the bounding set";
}

}  // namespace
