// The system tests' shared fixture (skip rule, namespaces, daemons) and JSON/text helpers.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "tests/system/netns.hpp"
#include "tests/system/peers.hpp"
#include "tests/system/process.hpp"

namespace taid::system_test {

// An integer member of a JSON object, nullopt if missing or not an integer.
std::optional<std::int64_t> int_field(const nlohmann::json& object, const char* key);
// A string member of a JSON object, "" if missing or not a string.
std::string str_field(const nlohmann::json& object, const char* key);
bool contains(const std::string& text, const std::string& needle);
// stdout + stderr of a command run inside `ns`.
std::string in_ns(const std::string& ns, const std::vector<std::string>& argv);
// What the kernel shows on the client end of `net`: tc ingress filters, qdiscs, `ip link`.
std::string tc_ingress_filters(const NetnsPair& net);
std::string tc_qdiscs(const NetnsPair& net);
std::string ip_link(const NetnsPair& net);
// The entry of `sources` for `address`: taictl may print it bare or as "addr:port".
std::optional<nlohmann::json> find_source(const nlohmann::json& sources,
                                          const std::string& address);
// Polls taid's sources every 250 ms until the entry for `address` satisfies `done`, `timeout`
// passes, or taid exits; `source` keeps the last entry seen. True only if `done` held while taid
// still ran.
bool wait_for_source(TaidDaemon& taid, const std::string& address,
                     std::chrono::milliseconds timeout, nlohmann::json& source,
                     const std::function<bool(const nlohmann::json&)>& done);
int count_lines_containing(const std::string& text, const std::string& needle);
bool exited_zero(int wait_status);
bool killed_by(int wait_status, int signal);

// Root only: skips with the reason elsewhere, fails under CI=true. Each test gets a temp dir and
// a fresh namespace pair; the daemons it starts are stopped before those are removed.
class SystemTest : public ::testing::Test {
 protected:
  void SetUp() override;
  // On failure prints each daemon's state and every log in the temp dir: the best diagnosis.
  void TearDown() override;

  // How SetUp makes net_: a derived fixture's constructor may change it (e.g. ipv6 = true).
  NetnsOptions net_options_;
  // Declared in construction order; destroyed in reverse: daemons, then namespaces, then files.
  std::optional<TempDir> dir_;
  std::optional<NetnsPair> net_;
  std::optional<ChronydServer> chronyd_;
  std::optional<TaidDaemon> taid_;
};

}  // namespace taid::system_test
