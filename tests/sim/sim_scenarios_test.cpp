// Scenario tests: the real core (exchange, filters, selection, servo) keeps a simulated clock;
// each test states the limits the daemon must meet and prints the figures it reached.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>

#include "sim/simulation.hpp"

namespace taid::sim {
namespace {

// Runs the scenario, prints its figures and the wall time it took, and writes the trace to
// $TAID_SIM_CSV_DIR/<test>.csv when that is set.
RunResult run_and_report(const Scenario& scenario, const Criteria& criteria = {}) {
  const auto started = std::chrono::steady_clock::now();
  RunResult result = run(scenario);
  const double wall_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  const Statistics stats = result.statistics(criteria);
  std::cout << scenario.name << " (seed " << scenario.seed << ", " << scenario.duration.seconds()
            << " s simulated in " << wall_s << " s wall, " << result.events
            << " events): " << stats.summary() << '\n';
  if (const char* dir = std::getenv("TAID_SIM_CSV_DIR")) {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    std::ofstream csv(std::string(dir) + "/" + info->name() + ".csv");
    result.write_csv(csv);
  }
  return result;
}

void print_warnings(const RunResult& result, std::size_t at_most = 20) {
  std::size_t shown = 0;
  for (const LogEntry& e : result.log) {
    if (!e.warning) continue;
    if (shown++ == at_most) break;
    std::cout << "  [" << e.t.seconds() << " s] " << e.text << '\n';
  }
}

TEST(SimScenario, Reference) {
  const RunResult result = run_and_report(Scenario::reference());
  const Statistics stats = result.statistics();
  EXPECT_FALSE(result.stopped) << *result.stopped;
  ASSERT_TRUE(stats.sync_time) << "never synchronized";
  // Synchronized (|offset| < 1 ms from then on) within 210 s; 120 s is the aim.
  EXPECT_LE(stats.sync_time->seconds(), 210);
  if (stats.sync_time->seconds() > 120)
    std::cout << "note: synchronized after " << stats.sync_time->seconds()
              << " s, later than the 120 s aimed at\n";
  EXPECT_LE(stats.max_abs_offset_ns, 1e6);
  EXPECT_LE(stats.rms_offset_ns, 300e3);
  EXPECT_LE(stats.rms_frequency_error_ppm, 10);
  ASSERT_FALSE(result.trace.empty());
  EXPECT_TRUE(result.trace.back().synchronized);
  EXPECT_EQ(result.trace.back().marks, "*");
  if (HasFailure()) print_warnings(result);
}

TEST(SimScenario, SameSeedSameRunOtherSeedAnother) {
  Scenario scenario = Scenario::reference();
  scenario.duration = Duration::from_s(2000);
  const RunResult a = run(scenario), b = run(scenario);
  ASSERT_EQ(a.trace.size(), b.trace.size());
  ASSERT_EQ(a.trace.size(), 2001U);
  for (std::size_t i = 0; i < a.trace.size(); ++i) {
    ASSERT_EQ(a.trace[i].offset_ns, b.trace[i].offset_ns) << "at " << i << " s";
    ASSERT_EQ(a.trace[i].frequency_error_ppm, b.trace[i].frequency_error_ppm) << "at " << i << " s";
    ASSERT_EQ(a.trace[i].marks, b.trace[i].marks);
    ASSERT_EQ(a.trace[i].servo_state, b.trace[i].servo_state);
  }
  ASSERT_EQ(a.log.size(), b.log.size());
  for (std::size_t i = 0; i < a.log.size(); ++i) EXPECT_EQ(a.log[i].text, b.log[i].text);
  EXPECT_EQ(a.events, b.events);

  scenario.seed = 2;
  const RunResult c = run(scenario);
  bool differs = false;
  for (std::size_t i = 0; i < std::min(a.trace.size(), c.trace.size()); ++i)
    differs |= a.trace[i].offset_ns != c.trace[i].offset_ns;
  EXPECT_TRUE(differs);
}

TEST(SimScenario, TraceExportsAsCsv) {
  Scenario scenario = Scenario::reference();
  scenario.duration = Duration::from_s(10);
  const RunResult result = run(scenario);
  std::ostringstream csv;
  result.write_csv(csv);
  std::istringstream lines(csv.str());
  std::string header, first;
  std::getline(lines, header);
  std::getline(lines, first);
  EXPECT_EQ(header,
            "t_s,offset_ns,frequency_error_ppm,driver_ppb,servo,synchronized,mark_server,"
            "restarts_server");
  // At t = 0 the clock is exactly 0.1 s ahead and runs 100 ppm fast.
  EXPECT_EQ(first.substr(0, first.find(",", first.find(",") + 1)), "0.000000000,100000000.000");
  std::size_t rows = 1;
  for (std::string line; std::getline(lines, line);) ++rows;
  EXPECT_EQ(rows, 11U);
}

}  // namespace
}  // namespace taid::sim
