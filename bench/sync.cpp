// bench/sync: the servo strategies (estimate, pi) over a matrix of simulated scenarios and seeds,
// judged against the reference limits; prints a table, writes per-run and summary CSV, and plots
// offset over time per scenario (seed 1, both servos) with gnuplot when it is installed.
//
//   sync [--seeds N] [--out DIR] [--only SCENARIO] [--no-plot]
//
// Every run is lib/sim's deterministic simulator driving the real timekeeping core; a scenario is
// Scenario::reference() (one stratum-1 server 100 µs + Exp(100 µs) each way, the client 0.1 s
// ahead at +100 ppm, wander 1e-9/√s, minpoll 6 maxpoll 10 iburst, 10 000 s) with one change.
// Limits (the reference scenario test's): sync ≤ 210 s after the scenario's origin (0, or the
// event), and from origin + 210 s: max |offset| ≤ 1 ms, RMS offset ≤ 300 µs, RMS frequency
// error ≤ 10 ppm. A scenario passes for a servo when every seed passes.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "sim/simulation.hpp"

namespace {

using namespace taid;

struct Case {
  std::string name;         // short, used in file names
  std::string description;  // for the table's legend
  Duration origin;          // limits count from here (the event, for the step)
  sim::Scenario scenario;   // seed set per run
  // The limits for this scenario (the reference's unless it says otherwise).
  double sync_limit_s = 210, max_offset_limit_us = 1000, rms_offset_limit_us = 300;
};

constexpr double kSyncLimitS = 210, kMaxOffsetLimitUs = 1000, kRmsOffsetLimitUs = 300;
constexpr double kRmsFrequencyLimitPpm = 10;

std::vector<Case> matrix() {
  std::vector<Case> cases;
  const auto add = [&](std::string name, std::string description, sim::Scenario s,
                       Duration origin = {}) {
    s.name = name;
    cases.push_back({std::move(name), std::move(description), origin, std::move(s)});
  };
  add("reference", "Scenario::reference()", sim::Scenario::reference());
  {
    sim::Scenario s = sim::Scenario::reference();
    s.sources[0].config.minpoll = s.sources[0].config.maxpoll = 4;
    add("poll16", "minpoll 4 maxpoll 4 (16 s)", s);
  }
  {
    sim::Scenario s = sim::Scenario::reference();
    s.clock.wander = 1e-7;
    add("wander", "frequency random walk 1e-7/sqrt(s) (100x the reference; limits 5 ms max, 1 ms RMS)", s);
    cases.back().max_offset_limit_us = 5000;
    cases.back().rms_offset_limit_us = 1000;
  }
  {
    sim::Scenario s = sim::Scenario::reference();
    s.clock.frequency_ppm = 5000;
    add("freq5e-3", "oscillator +5e-3 (5000 ppm) fast (sync within 1000 s)", s);
    cases.back().sync_limit_s = 1000;
  }
  {
    sim::Scenario s = sim::Scenario::reference();
    s.settings.servo.makestep_limit = -1;  // makestep 1 -1
    s.events.push_back(
        {sim::ClockEvent::Kind::step, Duration::from_s(3000), Duration::from_s(10), 0});
    add("step10s", "+10 s step by another process at 3000 s, makestep 1 -1 (limits from 3000 s)",
        s, Duration::from_s(3000));
  }
  {
    sim::Scenario s = sim::Scenario::reference();
    s.sources[0].path.loss = 0.33;
    add("loss33", "33 % of packets lost each way (55 % of exchanges)", s);
  }
  {
    sim::Scenario s = sim::Scenario::reference();
    const sim::SourceSetup one = s.sources[0];
    s.sources.clear();
    for (int i = 1; i <= 5; ++i) {
      sim::SourceSetup source = one;
      source.config.name = "s" + std::to_string(i);
      if (i >= 4) {
        source.server.kind = sim::ServerModel::Kind::lying;
        source.server.offset = Duration::from_s(i - 3);  // +1 s, +2 s
      }
      s.sources.push_back(source);
    }
    add("falsetickers", "5 servers, 2 false (+1 s, +2 s)", s);
  }
  {
    sim::Scenario s = sim::Scenario::reference();
    s.sources[0].path.asymmetry = Duration::from_us(400);
    add("asymmetry", "400 us more delay towards the server (a 200 us bias no method sees)", s);
  }
  {
    sim::Scenario s = sim::Scenario::reference();
    s.clock.temperature_amplitude_ppm = 1;
    s.clock.temperature_period = Duration::from_s(86400);
    s.duration = Duration::from_s(86400);
    add("temperature", "1 ppm sinusoid over 1 day, run for 1 day", s);
  }
  return cases;
}

struct Run {
  std::string scenario, servo;
  uint64_t seed = 0;
  std::optional<double> sync_s;  // after the origin; nullopt: never
  double max_offset_us = 0, rms_offset_us = 0, rms_frequency_ppm = 0;
  uint64_t steps = 0, updates = 0;
  bool pass = false;
};

Run judge(const Case& c, std::string_view servo, uint64_t seed, const sim::RunResult& result) {
  sim::Criteria criteria;
  criteria.settled = c.origin + Duration::from_seconds(c.sync_limit_s);
  // Synchronized means within the scenario's own max |offset| limit from then on, as in the
  // scenario tests and chrony's find_sync (time_max_limit): 5 ms for wander 1e-7.
  criteria.max_offset = Duration::from_seconds(c.max_offset_limit_us * 1e-6);
  const sim::Statistics stats = result.statistics(criteria);
  Run run;
  run.scenario = c.name;
  run.servo = std::string(servo);
  run.seed = seed;
  if (stats.sync_time) run.sync_s = std::max(0.0, (*stats.sync_time - c.origin).seconds());
  run.max_offset_us = stats.max_abs_offset_ns / 1e3;
  run.rms_offset_us = stats.rms_offset_ns / 1e3;
  run.rms_frequency_ppm = stats.rms_frequency_error_ppm;
  run.steps = stats.steps;
  run.updates = stats.clock_updates;
  run.pass = run.sync_s && *run.sync_s <= c.sync_limit_s &&
             run.max_offset_us <= c.max_offset_limit_us &&
             run.rms_offset_us <= c.rms_offset_limit_us &&
             run.rms_frequency_ppm <= kRmsFrequencyLimitPpm && !result.stopped;
  return run;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  if (n == 0) return 0;
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

struct Summary {
  std::string scenario, servo;
  std::size_t seeds = 0, passed = 0;
  double sync_med = 0, sync_max = 0;  // infinity: never
  double max_offset_med = 0, max_offset_max = 0;
  double rms_offset_med = 0, rms_offset_max = 0;
  double rms_frequency_med = 0, rms_frequency_max = 0;
};

Summary summarize(const std::vector<Run>& runs) {
  Summary s;
  s.scenario = runs.front().scenario;
  s.servo = runs.front().servo;
  s.seeds = runs.size();
  std::vector<double> sync, max_offset, rms_offset, rms_frequency;
  for (const Run& r : runs) {
    sync.push_back(r.sync_s.value_or(std::numeric_limits<double>::infinity()));
    max_offset.push_back(r.max_offset_us);
    rms_offset.push_back(r.rms_offset_us);
    rms_frequency.push_back(r.rms_frequency_ppm);
    s.passed += r.pass;
  }
  s.sync_med = median(sync);
  s.sync_max = *std::max_element(sync.begin(), sync.end());
  s.max_offset_med = median(max_offset);
  s.max_offset_max = *std::max_element(max_offset.begin(), max_offset.end());
  s.rms_offset_med = median(rms_offset);
  s.rms_offset_max = *std::max_element(rms_offset.begin(), rms_offset.end());
  s.rms_frequency_med = median(rms_frequency);
  s.rms_frequency_max = *std::max_element(rms_frequency.begin(), rms_frequency.end());
  return s;
}

// A figure for the table: "never" for infinity, else 3 significant digits or whole numbers.
std::string figure(double v) {
  if (std::isinf(v)) return "never";
  char buf[32];
  if (std::fabs(v) >= 100)
    std::snprintf(buf, sizeof buf, "%.0f", v);
  else if (std::fabs(v) >= 10)
    std::snprintf(buf, sizeof buf, "%.1f", v);
  else
    std::snprintf(buf, sizeof buf, "%.3g", v);
  return buf;
}

std::string pair(double median, double max) { return figure(median) + " / " + figure(max); }

std::string csv_figure(double v) {
  if (std::isinf(v)) return "";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.6g", v);
  return buf;
}

// gnuplot: the offset of seed 1 for both servos, the whole run above, ±1.5 ms below.
void write_plot_script(const std::filesystem::path& dir, const Case& c,
                       const std::vector<std::string>& servos) {
  std::ofstream gp(dir / (c.name + ".gp"));
  gp << "# offset over time, " << c.name << " (seed 1): gnuplot " << c.name << ".gp\n"
     << "set terminal pngcairo size 1100,800 font ',10'\n"
     << "set output '" << c.name << ".png'\n"
     << "set datafile separator ','\n"
     << "set key autotitle columnhead top right\n"
     << "set multiplot layout 2,1 title '" << c.name << ": " << c.description
     << " (seed 1)'\n"
     << "set grid\nset xlabel 'true time (s)'\nset ylabel 'offset, local - true (ms)'\n";
  // At most ~10 000 points a line (a day-long trace has 86 400): gnuplot stays quick.
  const int64_t stride = std::max<int64_t>(
      1, c.scenario.duration.ns() / c.scenario.trace_interval.ns() / 10000);
  const auto plot = [&](const std::string& title) {
    gp << "set title '" << title << "'\n plot ";
    for (std::size_t i = 0; i < servos.size(); ++i)
      gp << (i ? ", " : "") << "'trace-" << c.name << "-" << servos[i] << ".csv' every "
         << stride << " using 1:($2/1e6) with lines lw 1 title '" << servos[i] << "'";
    gp << "\n";
  };
  gp << "set autoscale y\n";
  plot("whole run");
  gp << "set yrange [-1.5:1.5]\n";
  plot("within +-1.5 ms (the limit is +-1 ms)");
  gp << "unset multiplot\n";
}

[[noreturn]] void usage(const char* why) {
  std::cerr << "sync: " << why
            << "\nusage: sync [--seeds N] [--out DIR] [--only SCENARIO] [--no-plot]\n";
  std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
  uint64_t seeds = 5;
  std::filesystem::path out = "build/bench-sync";
  std::string only;
  bool plot = true;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    const auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage("missing value");
      return argv[++i];
    };
    if (arg == "--seeds") {
      seeds = std::stoull(value());
      if (seeds < 1) usage("--seeds must be at least 1");
    } else if (arg == "--out") {
      out = value();
    } else if (arg == "--only") {
      only = value();
    } else if (arg == "--no-plot") {
      plot = false;
    } else {
      usage("unknown option");
    }
  }
  std::filesystem::create_directories(out);
  const std::vector<std::string> servos = {"estimate", "pi"};
  const auto started = std::chrono::steady_clock::now();

  std::vector<Case> cases = matrix();
  std::vector<Run> runs;
  std::vector<Summary> summaries;
  for (Case& c : cases) {
    if (!only.empty() && c.name != only) continue;
    for (const std::string& servo_name : servos) {
      c.scenario.settings.servo_kind = *taid::servo::parse_kind(servo_name);
      std::vector<Run> these;
      for (uint64_t seed = 1; seed <= seeds; ++seed) {
        c.scenario.seed = seed;
        const sim::RunResult result = sim::run(c.scenario);
        these.push_back(judge(c, servo_name, seed, result));
        if (seed == 1) {
          std::ofstream trace(out / ("trace-" + c.name + "-" + servo_name + ".csv"));
          result.write_csv(trace);
        }
      }
      summaries.push_back(summarize(these));
      runs.insert(runs.end(), these.begin(), these.end());
    }
    write_plot_script(out, c, servos);
  }
  if (summaries.empty()) usage("no such scenario");
  const double elapsed_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();

  {
    std::ofstream csv(out / "runs.csv");
    csv << "scenario,servo,seed,sync_s,max_abs_offset_us,rms_offset_us,rms_frequency_error_ppm,"
           "steps,clock_updates,pass\n";
    for (const Run& r : runs)
      csv << r.scenario << ',' << r.servo << ',' << r.seed << ','
          << (r.sync_s ? csv_figure(*r.sync_s) : "") << ',' << csv_figure(r.max_offset_us) << ','
          << csv_figure(r.rms_offset_us) << ',' << csv_figure(r.rms_frequency_ppm) << ','
          << r.steps << ',' << r.updates << ',' << (r.pass ? 1 : 0) << '\n';
  }
  {
    std::ofstream csv(out / "summary.csv");
    csv << "scenario,servo,seeds,passed,sync_s_median,sync_s_max,max_abs_offset_us_median,"
           "max_abs_offset_us_max,rms_offset_us_median,rms_offset_us_max,"
           "rms_frequency_error_ppm_median,rms_frequency_error_ppm_max,pass\n";
    for (const Summary& s : summaries)
      csv << s.scenario << ',' << s.servo << ',' << s.seeds << ',' << s.passed << ','
          << csv_figure(s.sync_med) << ',' << csv_figure(s.sync_max) << ','
          << csv_figure(s.max_offset_med) << ',' << csv_figure(s.max_offset_max) << ','
          << csv_figure(s.rms_offset_med) << ',' << csv_figure(s.rms_offset_max) << ','
          << csv_figure(s.rms_frequency_med) << ',' << csv_figure(s.rms_frequency_max) << ','
          << (s.passed == s.seeds ? "pass" : "FAIL") << '\n';
  }

  // The table (Markdown, so docs/SERVO.md can carry it as printed).
  std::printf("| scenario | servo | seeds | sync s med / max | max abs offset us med / max "
              "| RMS offset us med / max | RMS freq err ppm med / max | result |\n"
              "|---|---|---|---|---|---|---|---|\n");
  for (const Summary& s : summaries)
    std::printf("| %s | %s | %zu | %s | %s | %s | %s | %s |\n", s.scenario.c_str(),
                s.servo.c_str(), s.seeds, pair(s.sync_med, s.sync_max).c_str(),
                pair(s.max_offset_med, s.max_offset_max).c_str(),
                pair(s.rms_offset_med, s.rms_offset_max).c_str(),
                pair(s.rms_frequency_med, s.rms_frequency_max).c_str(),
                s.passed == s.seeds ? "pass"
                                    : ("FAIL " + std::to_string(s.passed) + "/" +
                                       std::to_string(s.seeds))
                                          .c_str());
  std::printf("\nLimits unless a scenario says otherwise: sync <= %.0f s after the origin; from "
              "origin + %.0f s max |offset| <= %.0f us, RMS offset <= %.0f us, RMS frequency "
              "error <= %.0f ppm (every seed).\n",
              kSyncLimitS, kSyncLimitS, kMaxOffsetLimitUs, kRmsOffsetLimitUs,
              kRmsFrequencyLimitPpm);
  for (const Case& c : cases)
    if (only.empty() || c.name == only)
      std::printf("  %-12s %s\n", c.name.c_str(), c.description.c_str());
  std::printf("%zu runs in %.1f s; CSV in %s (runs.csv, summary.csv, trace-*.csv)\n", runs.size(),
              elapsed_s, out.string().c_str());

  if (plot) {
    if (std::system("command -v gnuplot >/dev/null 2>&1") != 0) {
      std::printf("plots skipped: gnuplot is not installed (scripts/setup installs gnuplot-nox); "
                  "the traces and the .gp scripts are in %s\n",
                  out.string().c_str());
      return 0;
    }
    int made = 0;
    for (const Case& c : cases) {
      if (!only.empty() && c.name != only) continue;
      const std::string command = "cd '" + out.string() + "' && gnuplot '" + c.name + ".gp'";
      if (std::system(command.c_str()) == 0)
        ++made;
      else
        std::fprintf(stderr, "sync: gnuplot failed for %s\n", c.name.c_str());
    }
    std::printf("%d PNG plots (offset over time, seed 1, both servos) in %s\n", made,
                out.string().c_str());
  }
  return 0;
}
