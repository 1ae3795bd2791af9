// taid without -x steers the clock and so needs CAP_SYS_TIME: without it, it says so in one
// line and exits, before anything else is set up. The suite runs without the capability
// (scripts/test), which is exactly that situation; with it this test refuses to start the
// daemon, which would then discipline this machine's clock.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <fstream>
#include <string>

#include "clock/adjtimex_driver.hpp"

namespace {

struct Outcome {
  int exit_code = -1;
  std::string output;
};

// Runs the daemon with stderr captured (popen runs it through /bin/sh).
Outcome run(const std::string& command) {
  Outcome outcome;
  FILE* pipe = popen((command + " 2>&1").c_str(), "r");
  if (!pipe) return outcome;
  std::array<char, 512> buffer{};
  while (fgets(buffer.data(), buffer.size(), pipe)) outcome.output += buffer.data();
  const int status = pclose(pipe);
  if (WIFEXITED(status)) outcome.exit_code = WEXITSTATUS(status);
  return outcome;
}

TEST(DaemonPrivilege, WithoutCapSysTimeTaidSaysSoInOneLineAndExits) {
  if (taid::clock::check_clock_privilege()) {
    GTEST_FAIL() << "refusing: this process holds CAP_SYS_TIME, and taid without -x would steer "
                    "this machine's clock; run the suite through scripts/test";
  }
  const std::string config = ::testing::TempDir() + "/taid-privilege.conf";
  std::ofstream(config) << "server 127.0.0.1 iburst\nbindcmdaddress " << ::testing::TempDir()
                        << "/taid-privilege.sock\n";
  const Outcome outcome = run(std::string(TAID_BIN) + " -f " + config);
  EXPECT_EQ(outcome.exit_code, 1) << outcome.output;
  EXPECT_EQ(outcome.output,
            "taid: disciplining the clock needs CAP_SYS_TIME: run taid as root or with that "
            "capability, or with -x to observe only\n");
}

}  // namespace
