// System tests: taid against a real chronyd 4.3 over a veth pair between two network namespaces.
//
// Root only. Both ends share one kernel clock, so the true offset is 0 and any offset taid
// reports is measurement error. Every peer runs without clock control (-x, CAP_SYS_TIME dropped).
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>

#include "tests/system/fixture.hpp"

namespace taid::system_test {
namespace {

using json = nlohmann::json;

// The harness itself, independent of taid: chronyd in one namespace answers NTPsec's ntpdig in
// the other. If this fails, the taid tests below say nothing about taid.
TEST_F(SystemTest, ChronydAnswersNtpdigAcrossNamespaces) {
  chronyd_.emplace(*net_, dir_->path());
  const NtpdigReply reply = ntpdig(net_->client_ns(), chronyd_->address());
  std::cout << "ntpdig " << chronyd_->address() << " from " << net_->client_ns() << ": "
            << reply.json << "\n";
  RecordProperty("ntpdig_offset_ns", std::to_string(static_cast<long long>(reply.offset_s * 1e9)));
  EXPECT_EQ(reply.stratum, 10);  // "local stratum 10" in its config
  // ntpdig is Python: its own latency dominates, but one kernel clock keeps it under 10 ms.
  EXPECT_LT(std::abs(reply.offset_s), 0.010);
  const std::string stats = chronyd_->chronyc("serverstats");
  EXPECT_NE(stats.find("NTP packets received       : 1"), std::string::npos) << stats;
}

TEST_F(SystemTest, SyncsToChronyd) {
  chronyd_.emplace(*net_, dir_->path());
  const std::string address = chronyd_->address();
  taid_.emplace(net_->client_ns(), dir_->path(),
                std::vector<std::string>{"server " + address + " iburst minpoll 4 maxpoll 6"});

  json source;
  const bool enough = wait_for_source(*taid_, address, 30s, source, [](const json& s) {
    return int_field(s, "samples").value_or(0) >= 8;
  });
  ASSERT_FALSE(taid_->process().exited()) << "taid ended early: " << taid_->process().describe();
  ASSERT_TRUE(enough) << "fewer than 8 samples in 30 s; last source: " << source.dump()
                      << "; last error: " << taid_->last_error();

  std::cout << "taid source after " << source.value("samples", 0) << " samples: " << source.dump()
            << "\n";
  for (const char* key :
       {"offset_ns", "last_offset_ns", "delay_ns", "last_delay_ns", "jitter_ns"}) {
    if (const auto value = int_field(source, key)) RecordProperty(key, std::to_string(*value));
  }
  const auto offset_ns = int_field(source, "offset_ns");
  const auto last_offset_ns = int_field(source, "last_offset_ns");
  const auto delay_ns = int_field(source, "delay_ns");
  ASSERT_TRUE(offset_ns && last_offset_ns && delay_ns) << "missing fields: " << source.dump();
  // One kernel clock on both ends: truth is 0, so 100 µs is a generous bound for veth.
  EXPECT_LT(std::llabs(*offset_ns), 100'000) << source.dump();
  EXPECT_LT(std::llabs(*last_offset_ns), 100'000) << source.dump();
  EXPECT_GT(*delay_ns, 0) << source.dump();
  EXPECT_EQ(source.value("timestamp_source", ""), "kernel") << source.dump();

  // With 8 samples the delay envelope has fitted a line: near 0 offset and frequency (one clock),
  // a band no wider than the smallest round trip. Whether it is what tracking reports depends on
  // whose error bound is smaller (Exchange::offset_estimate); either way tracking and sources
  // name the same estimator.
  ASSERT_TRUE(source.contains("envelope")) << source.dump();
  const json& envelope = source["envelope"];
  EXPECT_GE(int_field(envelope, "samples").value_or(0), 8) << envelope.dump();
  EXPECT_LT(std::llabs(int_field(envelope, "offset_ns").value_or(1'000'000)), 100'000);
  EXPECT_LT(std::llabs(int_field(envelope, "frequency_ppb").value_or(1'000'000)), 50'000);
  const auto half_min_delay = int_field(envelope, "half_min_delay_ns");
  ASSERT_TRUE(half_min_delay) << envelope.dump();
  EXPECT_GT(*half_min_delay, 0);
  EXPECT_LE(*half_min_delay, *delay_ns / 2 + 1);
  const auto tracking = taid_->tracking();
  ASSERT_TRUE(tracking);
  std::cout << "taid tracking: " << tracking->dump() << "\n";
  const std::string estimator = tracking->value("estimator", "");
  EXPECT_TRUE(estimator == "delay_envelope" || estimator == "clock_filter") << tracking->dump();
  EXPECT_EQ(source.value("estimator", ""), estimator) << source.dump();
  EXPECT_TRUE(int_field(*tracking, "offset_ns").has_value()) << tracking->dump();
  EXPECT_TRUE(int_field(*tracking, "frequency_ppb").has_value()) << tracking->dump();

  const int status = taid_->process().stop();
  EXPECT_TRUE(exited_zero(status))
      << "SIGTERM should end taid cleanly: " << taid_->process().describe();
  EXPECT_GE(count_lines_containing(taid_->process().log(), "sample"), 8)
      << "expected one stderr line per sample";
}

TEST_F(SystemTest, UnansweredServerBacksOff) {
  // An address in the veth subnet that no host has: requests go out and nothing comes back.
  const std::string address = net_->unused_address();
  taid_.emplace(net_->client_ns(), dir_->path(),
                std::vector<std::string>{"server " + address + " minpoll 4 maxpoll 6"});

  json source;
  const auto backed_off = [&] {
    const auto sources = taid_->sources();
    if (!sources) return false;
    const auto found = find_source(*sources, address);
    if (!found) return false;
    source = *found;
    return int_field(source, "poll_log2_s").value_or(0) > 4 &&
           int_field(source, "reach").value_or(-1) == 0 &&
           taid_->process().log().find("unreachable") != std::string::npos;
  };
  const bool done =
      wait_until(45s, 500ms, [&] { return taid_->process().exited() || backed_off(); });
  ASSERT_FALSE(taid_->process().exited()) << "taid ended: " << taid_->process().describe();
  EXPECT_TRUE(done) << "no back-off within 45 s; last source: " << source.dump()
                    << "; last error: " << taid_->last_error();
  std::cout << "taid source for unanswered " << address << ": " << source.dump() << "\n";
  EXPECT_GT(int_field(source, "poll_log2_s").value_or(0), 4);
  EXPECT_EQ(int_field(source, "reach").value_or(-1), 0);
  EXPECT_EQ(int_field(source, "samples").value_or(-1), 0);
  EXPECT_NE(taid_->process().log().find("unreachable"), std::string::npos);

  EXPECT_FALSE(taid_->process().exited()) << "taid must survive an unanswered source";
  const int status = taid_->process().stop();
  EXPECT_TRUE(exited_zero(status)) << taid_->process().describe();
}

}  // namespace
}  // namespace taid::system_test
