// taid without -x steers the clock and so needs CAP_SYS_TIME: without it, it says so in one
// line and runs on observing only, as with -x (the issue's bad input: one clear line, taid keeps
// running). The suite runs without the capability (scripts/test), which is exactly that
// situation; with it this test refuses to start the daemon, which would then discipline this
// machine's clock.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

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

TEST(DaemonPrivilege, WithoutCapSysTimeTaidSaysSoInOneLineAndObserves) {
  if (taid::clock::check_clock_privilege()) {
    GTEST_FAIL() << "refusing: this process holds CAP_SYS_TIME, and taid without -x would steer "
                    "this machine's clock; run the suite through scripts/test";
  }
  const std::string dir = ::testing::TempDir();
  const std::string config = dir + "/taid-privilege.conf";
  const std::string socket = dir + "/taid-privilege.sock";
  const std::string log = dir + "/taid-privilege.log";
  ::unlink(socket.c_str());
  // User-space stamps: no eBPF attached to this host's interfaces.
  std::ofstream(config) << "server 127.0.0.1 iburst\ntimestamping user\nbindcmdaddress "
                        << socket << "\n";
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ::dup2(fd, 1);
    ::dup2(fd, 2);
    ::execl(TAID_BIN, "taid", "-f", config.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  // Up within 10 s (the control socket appears), and still running.
  bool up = false, exited = false;
  int status = 0;
  for (int i = 0; i < 200 && !up && !exited; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    exited = ::waitpid(pid, &status, WNOHANG) == pid;
    struct stat st {};
    up = ::stat(socket.c_str(), &st) == 0;
  }
  std::string tracking;
  if (up && !exited) {
    const Outcome o = run(std::string(TAICTL_BIN) + " -s " + socket + " tracking");
    tracking = o.output;
    EXPECT_EQ(o.exit_code, 0) << o.output;
    exited = ::waitpid(pid, &status, WNOHANG) == pid;
  }
  if (!exited) {
    ::kill(pid, SIGTERM);
    ::waitpid(pid, &status, 0);
  }
  std::stringstream output;
  output << std::ifstream(log).rdbuf();
  ASSERT_TRUE(up) << "the daemon did not come up: " << output.str();
  EXPECT_FALSE(exited) << "the daemon exited by itself: " << output.str();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << output.str();
  // One warning says it (no repeats, no error), and the start line names the reason, not -x.
  std::string line;
  int warnings = 0;
  bool start_line = false;
  std::istringstream text(output.str());
  while (std::getline(text, line)) {
    if (line.find("CAP_SYS_TIME") == std::string::npos) continue;
    EXPECT_EQ(line.find("ERROR"), std::string::npos) << line;
    if (line.find("WARN") != std::string::npos) {
      ++warnings;
      EXPECT_NE(line.find("no CAP_SYS_TIME: taid observes only, as with -x, and never writes the "
                          "clock (to discipline it, run taid as root or with CAP_SYS_TIME)"),
                std::string::npos)
          << line;
    }
    start_line |= line.find("taid starting:") != std::string::npos &&
                  line.find("(observe only: no CAP_SYS_TIME)") != std::string::npos;
  }
  EXPECT_EQ(warnings, 1) << output.str();
  EXPECT_TRUE(start_line) << output.str();
  EXPECT_NE(tracking.find("observe (no CAP_SYS_TIME), clock driver null"), std::string::npos)
      << tracking;
}

}  // namespace
