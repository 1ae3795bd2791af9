// The issue's scenarios as tests: the real timekeeping core keeps a simulated clock through each
// one (poll 16 s, falsetickers, no majority, wander, large frequency errors, a foreign step with
// makestep 1 -1, loss, a dying system peer, an asymmetric path against the reported bound, no
// envelope restart from our own steering, bad input); each asserts its limits and prints its
// figures, and the figures of every run of a test are printed as a table at the end.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "sim/simulation.hpp"
#include "tests/sim/scenario_report.hpp"

namespace taid::sim {
namespace {

// The issue's pass limits: synchronized (|offset| < 1 ms, |frequency error| < 500 ppm from then
// on) by sync_by, and from criteria.settled on: max |offset|, RMS offset, RMS frequency error.
struct Limits {
  Criteria criteria;
  double sync_by_s = 210;
  double max_offset_ns = 1e6;
  double rms_offset_ns = 300e3;
  double rms_frequency_ppm = 10;
};

// One line of the table printed when the test program ends.
std::vector<std::string>& table() {
  static std::vector<std::string> rows;
  return rows;
}

void add_row(const std::string& name, const Statistics& s) {
  char buf[240];
  std::snprintf(buf, sizeof buf, "| %-30s | %6s | %10.1f | %9.1f | %8.3f | %8llu | %5llu |",
                name.c_str(), s.sync_time ? std::to_string(static_cast<int>(s.sync_time->seconds())).c_str() : "never",
                s.max_abs_offset_ns / 1e3, s.rms_offset_ns / 1e3, s.rms_frequency_error_ppm,
                static_cast<unsigned long long>(s.envelope_restarts),
                static_cast<unsigned long long>(s.steps));
  table().push_back(buf);
}

class PrintTable : public ::testing::Environment {
 public:
  void TearDown() override {
    if (table().empty()) return;
    std::cout << "| scenario                           | sync (s) | max |o| us | RMS o us | RMS ppm  "
                 "| restarts | steps |\n";
    for (const std::string& row : table()) std::cout << row << '\n';
  }
};
[[maybe_unused]] ::testing::Environment* const kPrintTable =
    ::testing::AddGlobalTestEnvironment(new PrintTable);

// A run, reported, with its row in the summary table.
RunResult run_and_tabulate(const Scenario& scenario, const Criteria& criteria = {}) {
  RunResult result = run_and_report(scenario, criteria);
  add_row(scenario.name, result.statistics(criteria));
  return result;
}

// Trace points from `from` to `to`, one every `stride`, for a failure's report.
void print_trace(const RunResult& result, Duration from, Duration to, Duration stride) {
  std::cout << "  trace " << from.seconds() << "-" << to.seconds()
            << " s: t_s offset_us freq_err_ppm driver_ppm servo sync marks bound_us\n";
  for (const TracePoint& p : result.trace) {
    if (p.t < from || p.t > to) continue;
    if ((p.t.ns() % stride.ns()) != 0) continue;
    char buf[200];
    std::snprintf(buf, sizeof buf, "  %7.0f %12.1f %10.4f %10.4f %-8s %d %s %.1f\n",
                  p.t.seconds(), p.offset_ns / 1e3, p.frequency_error_ppm,
                  p.driver_frequency_ppb / 1e3, std::string(servo::to_string(p.servo_state)).c_str(),
                  p.synchronized ? 1 : 0, p.marks.c_str(), p.error_bound_ns / 1e3);
    std::cout << buf;
  }
}

// The trace point with the largest |offset| from `from` on.
const TracePoint* worst_point(const RunResult& result, Duration from) {
  const TracePoint* worst = nullptr;
  for (const TracePoint& p : result.trace)
    if (p.t >= from && (!worst || std::abs(p.offset_ns) > std::abs(worst->offset_ns))) worst = &p;
  return worst;
}

// Asserts the limits and, when one fails, prints the warnings and the trace around the worst
// offset.
Statistics expect_limits(const RunResult& result, const Limits& limits, const std::string& what) {
  const Statistics s = result.statistics(limits.criteria);
  EXPECT_FALSE(result.stopped) << what << ": " << result.stopped.value_or("");
  EXPECT_TRUE(s.sync_time) << what << ": never synchronized";
  if (s.sync_time) {
    EXPECT_LE(s.sync_time->seconds(), limits.sync_by_s) << what;
    if (limits.sync_by_s == 210 && s.sync_time->seconds() < 120)
      std::cout << "note: " << what << " synchronized at " << s.sync_time->seconds()
                << " s, earlier than chrony's 120-210 s\n";
  }
  EXPECT_LE(s.max_abs_offset_ns, limits.max_offset_ns) << what;
  EXPECT_LE(s.rms_offset_ns, limits.rms_offset_ns) << what;
  EXPECT_LE(s.rms_frequency_error_ppm, limits.rms_frequency_ppm) << what;
  if (::testing::Test::HasFailure()) {
    print_log(result);
    if (const TracePoint* worst = worst_point(result, limits.criteria.settled))
      print_trace(result, worst->t - Duration::from_s(600), worst->t + Duration::from_s(600),
                  Duration::from_s(60));
  }
  return s;
}


std::size_t count_logged(const RunResult& result, const std::string& text, Duration from = {}) {
  return static_cast<std::size_t>(std::count_if(result.log.begin(), result.log.end(), [&](auto& e) {
    return e.t >= from && e.text.find(text) != std::string::npos;
  }));
}

const TracePoint& point_at(const RunResult& result, double t_s) {
  const auto index = static_cast<std::size_t>(t_s);  // one point a second from 0
  return result.trace.at(std::min(index, result.trace.size() - 1));
}

Scenario poll_16() {
  Scenario scenario = Scenario::reference();
  scenario.name = "reference at poll 16 s";
  scenario.sources[0].config.minpoll = 4;
  scenario.sources[0].config.maxpoll = 4;
  return scenario;
}

Scenario with_frequency(double ppm) {
  Scenario scenario = Scenario::reference();
  scenario.name = "frequency " + std::to_string(static_cast<int>(ppm)) + " ppm";
  scenario.clock.frequency_ppm = ppm;
  return scenario;
}

// 1. The reference at poll 16 s (minpoll 4 maxpoll 4).
TEST(SimIssueScenario, ReferenceAtPoll16) {
  const RunResult result = run_and_tabulate(poll_16());
  const Statistics s = expect_limits(result, {}, "poll 16 s");
  std::cout << "goal RMS offset <= 9 us: " << (s.rms_offset_ns <= 9e3 ? "met" : "NOT met") << " ("
            << s.rms_offset_ns / 1e3 << " us)\n";
}

// 2. Five servers, two false by +1 s and +2 s: the clock follows the three true ones.
TEST(SimIssueScenario, TwoFalseOfFive) {
  Scenario scenario = Scenario::with_servers("2 false of 5", 5);
  for (int i : {3, 4}) {
    scenario.sources[i].server.kind = ServerModel::Kind::lying;
    scenario.sources[i].server.offset = Duration::from_s(i - 2);
  }
  const RunResult result = run_and_tabulate(scenario);
  expect_limits(result, {}, "2 false of 5");
  ASSERT_FALSE(result.trace.empty());
  const std::string& marks = result.trace.back().marks;
  std::cout << "marks at the end: " << marks << '\n';
  EXPECT_EQ(marks[3], 'x');
  EXPECT_EQ(marks[4], 'x');
  EXPECT_NE(marks.substr(0, 3).find('*'), std::string::npos);
  EXPECT_EQ(result.steps, 0U);
}

// 3. Five servers, three false by +1 s, +2 s and +3 s (agreeing with nobody): no majority, so the
// clock is never updated and runs free on its initial error.
TEST(SimIssueScenario, ThreeFalseOfFiveIsNoMajority) {
  Scenario scenario = Scenario::with_servers("3 false of 5", 5);
  for (int i : {2, 3, 4}) {
    scenario.sources[i].server.kind = ServerModel::Kind::lying;
    scenario.sources[i].server.offset = Duration::from_s(i - 1);
  }
  const RunResult result = run_and_tabulate(scenario);
  EXPECT_EQ(result.clock_updates, 0U);
  EXPECT_EQ(result.steps, 0U);
  EXPECT_GE(count_logged(result, "no majority"), 1U);
  ASSERT_FALSE(result.trace.empty());
  bool ever_synchronized = false, frequency_changed = false;
  for (const TracePoint& p : result.trace) {
    ever_synchronized |= p.synchronized;
    frequency_changed |= p.driver_frequency_ppb != 0;
  }
  EXPECT_FALSE(ever_synchronized);
  EXPECT_FALSE(frequency_changed);
  // Free running: 0.1 s + 100 ppm × 10 000 s = 1.1 s ahead; the 1e-9/√s wander moves that by
  // about half a millisecond.
  const TracePoint& end = result.trace.back();
  std::cout << "offset at the end " << end.offset_ns / 1e6 << " ms, marks " << end.marks << '\n';
  EXPECT_NEAR(end.offset_ns, 1.1e9, 5e6);
  EXPECT_EQ(end.marks, "xxxxx");
  print_log(result, true, 5);
  if (HasFailure()) print_trace(result, Duration(), Duration::from_s(12), Duration::from_s(1));
}

// 4. A wander of 1e-7 per √s: 5 ms at most, 1 ms RMS.
// The poll comes down each time the envelope's samples stop fitting one line (the oscillator
// wanders faster than the poll follows); before that rule the poll stayed at 1024 s and this
// failed (max 6.4 ms, RMS 1.7 ms).
TEST(SimIssueScenario, Wander1e7) {
  Scenario scenario = Scenario::reference();
  scenario.name = "wander 1e-7";
  scenario.clock.wander = 1e-7;
  Limits limits;
  limits.criteria.max_offset = Duration::from_ms(5);
  limits.max_offset_ns = 5e6;
  limits.rms_offset_ns = 1e6;
  const RunResult result = run_and_tabulate(scenario, limits.criteria);
  expect_limits(result, limits, "wander 1e-7");
}

// 5. Large oscillator errors: synchronized within 1000 s, the limits from 1000 s on.
class SimFrequencyOffset : public ::testing::TestWithParam<double> {};

TEST_P(SimFrequencyOffset, SynchronizesWithin1000s) {
  const Scenario scenario = with_frequency(GetParam());
  Limits limits;
  limits.criteria.settled = Duration::from_s(1000);
  limits.sync_by_s = 1000;
  const RunResult result = run_and_tabulate(scenario, limits.criteria);
  expect_limits(result, limits, scenario.name);
  if (HasFailure()) print_trace(result, Duration(), Duration::from_s(300), Duration::from_s(20));
}

INSTANTIATE_TEST_SUITE_P(SimIssueScenario, SimFrequencyOffset,
                         ::testing::Values(5000.0, -5000.0, 50000.0, -50000.0),
                         [](const auto& param_info) {
                           const int ppm = static_cast<int>(param_info.param);
                           return (ppm < 0 ? "minus" : "plus") + std::to_string(std::abs(ppm)) +
                                  "ppm";
                         });

// 6. Another process steps the clock by 10 s at 3000 s; with makestep 1 -1 the core steps back.
// Five seeds: the step costs the estimators their samples, not the frequency they learnt (on
// seeds 3 and 4 it once did: the servo forgot its base at the loss of sync, and the burst's
// 2 s slopes set it 17–35 ppm off, 1.9 ms at worst).
TEST(SimIssueScenario, ForeignStepWithMakestepAlways) {
  for (uint64_t seed = 1; seed <= 5; ++seed) {
    Scenario scenario = Scenario::reference();
    scenario.name = "10 s step, makestep 1 -1, seed " + std::to_string(seed);
    scenario.seed = seed;
    scenario.settings.servo.makestep_limit = -1;
    scenario.events.push_back(
        {ClockEvent::Kind::step, Duration::from_s(3000), Duration::from_s(10)});
    Limits limits;
    limits.criteria.settled = Duration::from_s(3300);
    limits.sync_by_s = 3300;
    const RunResult result = run_and_tabulate(scenario, limits.criteria);
    expect_limits(result, limits, scenario.name);
    EXPECT_GE(result.steps, 1U);
    // The error bound after taid's own step covers the clock without the 10 s it stepped away
    // (it once said 11.9 s until the next update).
    const auto stepped_back = std::find_if(result.trace.begin(), result.trace.end(), [](auto& p) {
      return p.t > Duration::from_s(3000) && std::abs(p.offset_ns) < 1e9;
    });
    ASSERT_NE(stepped_back, result.trace.end());
    const TracePoint& after = *stepped_back;
    EXPECT_LT(after.error_bound_ns, 10e6) << scenario.name;
    EXPECT_GE(after.error_bound_ns + 500e-6 * after.since_update_s * 1e9, std::abs(after.offset_ns))
        << scenario.name;
    if (seed == 1) {
      std::cout << "steps by the daemon: " << result.steps << "; log from 3000 s:\n";
      print_log(result, false, 8, Duration::from_s(3000));
    }
    if (HasFailure()) {
      print_trace(result, Duration::from_s(2990), Duration::from_s(3540), Duration::from_s(30));
      break;
    }
  }
}

// 7. 33 % of exchanges lost: each direction loses p with 1 − (1 − p)² = 0.33.
TEST(SimIssueScenario, LossOf33Percent) {
  Scenario scenario = Scenario::reference();
  scenario.name = "33 % loss";
  scenario.sources[0].path.loss = 1 - std::sqrt(0.67);
  const RunResult result = run_and_tabulate(scenario);
  expect_limits(result, {}, scenario.name);
}

// 8. The system peer of three dies at 3000 s: another is selected, the limits hold. s1 has the
// shortest path so it is the one selected before.
TEST(SimIssueScenario, SystemPeerDiesAndAnotherIsSelected) {
  Scenario scenario = Scenario::with_servers("system peer of 3 dies", 3);
  scenario.sources[1].path.base_delay = Duration::from_us(400);
  scenario.sources[2].path.base_delay = Duration::from_us(500);
  scenario.sources[0].server.kind = ServerModel::Kind::dying;
  scenario.sources[0].server.at = Duration::from_s(3000);
  const RunResult result = run_and_tabulate(scenario);
  expect_limits(result, {}, scenario.name);
  const std::string before = point_at(result, 2999).marks;
  const std::string after = result.trace.back().marks;
  std::cout << "marks at 2999 s: " << before << ", at the end: " << after << '\n';
  EXPECT_EQ(before[0], '*');
  EXPECT_NE(after[0], '*');
  EXPECT_NE(after.substr(1).find('*'), std::string::npos);
  EXPECT_TRUE(result.trace.back().synchronized);
}

// 9. 300 µs more on the way to the server: the offset is biased by 150 µs, which the bound taid
// reports (|offset| + root delay / 2 + root dispersion) must cover at every point after sync.
TEST(SimIssueScenario, AsymmetricPathStaysWithinTheReportedBound) {
  Scenario scenario = Scenario::reference();
  scenario.name = "asymmetry 300 us";
  scenario.sources[0].path.asymmetry = Duration::from_us(300);
  const RunResult result = run_and_tabulate(scenario);
  const Statistics s = expect_limits(result, {}, scenario.name);
  ASSERT_TRUE(s.sync_time);
  double worst_ratio = 0, worst_kernel_ratio = 0;
  const TracePoint* worst = nullptr;
  std::size_t over = 0;
  for (const TracePoint& p : result.trace) {
    if (p.t < *s.sync_time) continue;
    ASSERT_GT(p.error_bound_ns, 0) << "at " << p.t.seconds() << " s";
    const double ratio = std::abs(p.offset_ns) / p.error_bound_ns;
    // The kernel's maxerror: the bound plus 500 ppm of the time since the update.
    const double kernel_ratio =
        std::abs(p.offset_ns) / (p.error_bound_ns + 500e3 * p.since_update_s);
    worst_kernel_ratio = std::max(worst_kernel_ratio, kernel_ratio);
    if (ratio > worst_ratio) {
      worst_ratio = ratio;
      worst = &p;
    }
    if (ratio > 1) ++over;
  }
  ASSERT_NE(worst, nullptr);
  std::cout << "worst |offset| / error bound after sync: " << worst_ratio << " at "
            << worst->t.seconds() << " s (|offset| " << std::abs(worst->offset_ns) / 1e3
            << " us, bound " << worst->error_bound_ns / 1e3 << " us); with the kernel's growth "
            << worst_kernel_ratio << "; " << over << " points over\n";
  EXPECT_LE(worst_ratio, 1.0);
  if (worst_ratio > 1)
    print_trace(result, worst->t - Duration::from_s(300), worst->t + Duration::from_s(300),
                Duration::from_s(20));
}

// 10. Our own steering never restarts a source's envelope.
TEST(SimIssueScenario, OwnSteeringNeverRestartsTheEnvelope) {
  for (const Scenario& scenario :
       {Scenario::reference(), poll_16(), with_frequency(50000), with_frequency(-50000)}) {
    const RunResult result = run_and_tabulate(scenario);
    ASSERT_FALSE(result.trace.empty());
    // Counted from synchronisation on: before it, a clock 5 % off is beyond the ±500 ppm any
    // line of the envelope may have, and the envelope starts over on the oscillator's own
    // error, not on anything taid did (taid then catches the frequency from pairs of samples).
    const auto sync = result.statistics().sync_time;
    ASSERT_TRUE(sync) << scenario.name;
    const TracePoint* at_sync = nullptr;
    for (const TracePoint& p : result.trace)
      if (!at_sync && p.t >= *sync) at_sync = &p;
    ASSERT_NE(at_sync, nullptr);
    for (std::size_t i = 0; i < result.source_names.size(); ++i)
      EXPECT_EQ(result.trace.back().envelope_restarts[i] - at_sync->envelope_restarts[i], 0U)
          << scenario.name << ": " << result.source_names[i] << " (before sync: "
          << at_sync->envelope_restarts[i] << ")";
    if (std::abs(scenario.clock.frequency_ppm) < 500) {
      EXPECT_EQ(at_sync->envelope_restarts[0], 0U) << scenario.name;
    }
  }
}

// 11a. One of three servers steps by an hour at 3000 s: it becomes a falseticker, the clock is not
// stepped, the limits hold.
TEST(SimIssueScenario, ServerSteppingByAnHourIsOutvoted) {
  Scenario scenario = Scenario::with_servers("1 of 3 steps by +3600 s", 3);
  scenario.sources[2].server.kind = ServerModel::Kind::stepping;
  scenario.sources[2].server.at = Duration::from_s(3000);
  scenario.sources[2].server.offset = Duration::from_s(3600);
  const RunResult result = run_and_tabulate(scenario);
  expect_limits(result, {}, scenario.name);
  EXPECT_EQ(result.steps, 0U);
  const std::string marks = result.trace.back().marks;
  std::cout << "marks at the end: " << marks << '\n';
  EXPECT_EQ(marks[2], 'x');
  EXPECT_NE(marks.substr(0, 2).find('*'), std::string::npos);
}

// 11b. Every server lost at 3000 s: one "cannot synchronise" line (not one a poll), the clock
// unsynchronized, the run goes on to the end on the frequency it had.
TEST(SimIssueScenario, EveryServerLost) {
  Scenario scenario = Scenario::with_servers("all 3 die at 3000 s", 3);
  for (SourceSetup& s : scenario.sources) {
    s.server.kind = ServerModel::Kind::dying;
    s.server.at = Duration::from_s(3000);
  }
  const RunResult result = run_and_tabulate(scenario);
  EXPECT_FALSE(result.stopped);
  EXPECT_EQ(result.ended, scenario.duration);
  const std::size_t lines = count_logged(result, "cannot synchronise", Duration::from_s(3000));
  std::cout << "\"cannot synchronise\" lines after 3000 s: " << lines << "; warnings:\n";
  print_log(result, true, 10, Duration::from_s(3000));
  EXPECT_EQ(lines, 1U);
  ASSERT_FALSE(result.trace.empty());
  EXPECT_FALSE(result.trace.back().synchronized);
  const double before_ppb = point_at(result, 3000).driver_frequency_ppb;
  const double end_ppb = result.trace.back().driver_frequency_ppb;
  std::cout << "driver frequency at 3000 s " << before_ppb / 1e3 << " ppm, at the end "
            << end_ppb / 1e3 << " ppm\n";
  EXPECT_NEAR(end_ppb, before_ppb, 1000);
}

// 11d. maxchange 0.1 1 3 (chrony's 131-maxchange): the only server steps by +1 s at 3000 s. Each
// of the next three updates is ignored with a line, the fourth stops taid as chrony exits, and
// the clock never follows the server.
TEST(SimIssueScenario, MaxchangeIgnoresThriceThenStops) {
  Scenario scenario = Scenario::reference();
  scenario.name = "only server steps by +1 s, maxchange 0.1 1 3";
  scenario.settings.servo.maxchange_offset = Duration::from_ms(100);
  scenario.settings.servo.maxchange_start = 1;
  scenario.settings.servo.maxchange_ignore = 3;
  scenario.sources[0].server.kind = ServerModel::Kind::stepping;
  scenario.sources[0].server.at = Duration::from_s(3000);
  scenario.sources[0].server.offset = Duration::from_s(1);
  const RunResult result = run_and_tabulate(scenario);
  std::cout << "log from 3000 s:\n";
  print_log(result, true, 10, Duration::from_s(3000));
  EXPECT_EQ(count_logged(result, "ignoring an offset of", Duration::from_s(3000)), 3U);
  ASSERT_TRUE(result.stopped);
  EXPECT_NE(result.stopped->find("exceeds the allowed maximum after 3 ignored"), std::string::npos)
      << *result.stopped;
  EXPECT_GT(result.ended, Duration::from_s(3000));
  EXPECT_LT(result.ended, scenario.duration);
  EXPECT_EQ(result.steps, 0U);
  ASSERT_FALSE(result.trace.empty());
  EXPECT_LT(std::abs(result.trace.back().offset_ns), 1e6);  // never followed the server
}

// 11c. The only server steps by an hour at 3000 s: it is the majority of one. Not asserted (chrony
// would slew for hours, makestep 1 3 having been used up); printed.
TEST(SimIssueScenario, OnlyServerSteppingByAnHourIsReported) {
  Scenario scenario = Scenario::reference();
  scenario.name = "only server steps by +3600 s";
  scenario.sources[0].server.kind = ServerModel::Kind::stepping;
  scenario.sources[0].server.at = Duration::from_s(3000);
  scenario.sources[0].server.offset = Duration::from_s(3600);
  const RunResult result = run_and_tabulate(scenario);
  std::cout << "what happens: steps " << result.steps << ", updates " << result.clock_updates
            << (result.stopped ? ", stopped: " + *result.stopped : std::string(", ran to the end"))
            << '\n';
  for (double t : {2999.0, 3100.0, 3500.0, 4000.0, 6000.0, 8000.0, 10000.0}) {
    const TracePoint& p = point_at(result, t);
    std::printf("  %6.0f s: offset %+.3f s, frequency error %+.1f ppm, driver %+.1f ppm, "
                "synchronized %d, mark %s\n",
                p.t.seconds(), p.offset_ns / 1e9, p.frequency_error_ppm,
                p.driver_frequency_ppb / 1e3, p.synchronized ? 1 : 0, p.marks.c_str());
  }
  std::fflush(stdout);
  std::cout << "log from 3000 s:\n";
  print_log(result, false, 10, Duration::from_s(3000));
}

}  // namespace
}  // namespace taid::sim
