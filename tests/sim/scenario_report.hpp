// What every scenario test does around a run: print its figures and wall time, catch a run gone
// slow, keep its trace as CSV on request, and show its log lines.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <string>

#include "sim/simulation.hpp"

namespace taid::sim {

// Runs the scenario, prints its figures and the wall time it took, and writes the trace to
// $TAID_SIM_CSV_DIR/<test>_<scenario>.csv when that is set.
inline RunResult run_and_report(const Scenario& scenario, const Criteria& criteria = {}) {
  const auto started = std::chrono::steady_clock::now();
  RunResult result = run(scenario);
  const double wall_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  std::cout << scenario.name << " (seed " << scenario.seed << ", " << scenario.duration.seconds()
            << " s simulated in " << wall_s << " s wall, " << result.events
            << " events; figures from " << criteria.settled.seconds()
            << " s): " << result.statistics(criteria).summary() << '\n';
  // 10 000 simulated seconds take about half a second at most; the check is loose (a shared,
  // loaded machine) and catches a loop gone slow by an order of magnitude.
  EXPECT_LE(wall_s, 5.0 * scenario.duration.seconds() / 10000) << scenario.name;
  if (const char* dir = std::getenv("TAID_SIM_CSV_DIR")) {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    std::string file = std::string(info->name()) + "_" + scenario.name + ".csv";
    for (char& c : file)
      if (c == ' ' || c == '/') c = '_';
    std::ofstream csv(std::string(dir) + "/" + file);
    result.write_csv(csv);
  }
  return result;
}

// The run's log lines (warnings only by default), at most `at_most`, from `from` on.
inline void print_log(const RunResult& result, bool warnings_only = true,
                      std::size_t at_most = 25, Duration from = Duration()) {
  std::size_t shown = 0;
  for (const LogEntry& e : result.log) {
    if ((warnings_only && !e.warning) || e.t < from) continue;
    if (shown++ == at_most) break;
    std::cout << "  [" << e.t.seconds() << " s] " << e.text << '\n';
  }
}

}  // namespace taid::sim
