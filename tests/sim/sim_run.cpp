// sim_run: one simulator run from the command line — the reference scenario with overrides —
// printing its figures and log, and writing the trace as CSV (for comparing servos and settings
// by hand; the pass limits live in sim_scenarios_test).
//
//   sim_run [--seed N] [--duration S] [--servo estimate|pi] [--servers N] [--liar MS]
//           [--step-at S --step S] [--makestep T L] [--minpoll P] [--maxpoll P] [--loss P] [--freq-ppm F] [--wander W] [--csv FILE] [--log]
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <string>
#include <string_view>

#include "sim/simulation.hpp"

namespace {

[[noreturn]] void usage(const char* why) {
  std::cerr << "sim_run: " << why
            << "\nusage: sim_run [--seed N] [--duration S] [--servo estimate|pi] [--servers N]"
               " [--liar MS] [--step-at S --step S] [--makestep T L] [--minpoll P] [--maxpoll P] [--loss P] [--freq-ppm F] [--wander W]"
               " [--csv FILE] [--log]\n";
  std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
  using namespace taid;
  sim::Scenario scenario = sim::Scenario::reference();
  int servers = 1;
  double liar_ms = 0, step_at_s = -1, step_s = 0;
  std::string csv;
  bool show_log = false;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    const auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage("missing value");
      return argv[++i];
    };
    if (arg == "--seed") {
      scenario.seed = std::stoull(value());
    } else if (arg == "--duration") {
      scenario.duration = Duration::from_seconds(std::stod(value()));
    } else if (arg == "--servo") {
      const auto kind = servo::parse_kind(value());
      if (!kind) usage("unknown servo");
      scenario.settings.servo_kind = *kind;
    } else if (arg == "--servers") {
      servers = std::stoi(value());
    } else if (arg == "--liar") {
      liar_ms = std::stod(value());
    } else if (arg == "--step-at") {
      step_at_s = std::stod(value());
    } else if (arg == "--step") {
      step_s = std::stod(value());
    } else if (arg == "--minpoll") {
      scenario.sources[0].config.minpoll = std::stoi(value());
    } else if (arg == "--maxpoll") {
      scenario.sources[0].config.maxpoll = std::stoi(value());
    } else if (arg == "--freq-ppm") {
      scenario.clock.frequency_ppm = std::stod(value());
    } else if (arg == "--wander") {
      scenario.clock.wander = std::stod(value());
    } else if (arg == "--makestep") {
      scenario.settings.servo.makestep_threshold = Duration::from_seconds(std::stod(value()));
      scenario.settings.servo.makestep_limit = std::stoi(value());
    } else if (arg == "--loss") {
      scenario.sources[0].path.loss = std::stod(value());
    } else if (arg == "--csv") {
      csv = value();
    } else if (arg == "--log") {
      show_log = true;
    } else {
      usage("unknown option");
    }
  }
  if (servers < 1) usage("--servers must be at least 1");
  const sim::SourceSetup one = scenario.sources[0];
  scenario.sources.clear();
  for (int i = 1; i <= servers; ++i) {
    sim::SourceSetup s = one;
    s.config.name = "s" + std::to_string(i);
    scenario.sources.push_back(s);
  }
  if (liar_ms != 0) {
    // The last server lies (with one server, the only one).
    scenario.sources.back().server.kind = sim::ServerModel::Kind::lying;
    scenario.sources.back().server.offset = Duration::from_seconds(liar_ms / 1e3);
  }
  if (step_at_s >= 0)
    scenario.events.push_back({sim::ClockEvent::Kind::step, Duration::from_seconds(step_at_s),
                               Duration::from_seconds(step_s)});

  const sim::RunResult result = sim::run(scenario);
  if (show_log)
    for (const sim::LogEntry& e : result.log)
      std::printf("[%10.3f s]%s %s\n", e.t.seconds(), e.warning ? " warning:" : "", e.text.c_str());
  std::printf("servo %s, seed %llu, %.0f s, %d server(s): %s\n",
              std::string(servo::to_string(scenario.settings.servo_kind)).c_str(),
              static_cast<unsigned long long>(scenario.seed), scenario.duration.seconds(), servers,
              result.statistics().summary().c_str());
  if (result.stopped) std::printf("stopped: %s\n", result.stopped->c_str());
  if (!csv.empty()) {
    std::ofstream out(csv);
    result.write_csv(out);
    if (!out) {
      std::perror(csv.c_str());
      return 1;
    }
  }
  return 0;
}
