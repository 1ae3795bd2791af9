// bench/estimators: the per-source offset/frequency estimators scored against the simulator's
// truth on identical sample streams — the delay envelope with its fixed window, the envelope with
// the adaptive window, and a regression as chrony's sourcestats does it.
//
// Open loop: nothing steers the clock. lib/sim's SimClock free-runs (a frequency offset, a random
// walk of frequency, a temperature sinusoid, or a linear frequency ramp) and SimPath delays each
// packet (base + Exp queueing each way) to a truthful server; every estimator gets the same
// (θ, δ, T1, T4) of every exchange, and after each sample its offset at the newest T4 and its
// frequency are compared with the clock's true offset at that instant and its true frequency then.
//
//   estimators [--seeds N] [--csv FILE] [--only SUBSTRING] [--factors 3,5,8]
//
// --factors adds one adaptive envelope per width-loss factor (the sweep that chose the default).
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <iostream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "core/time.hpp"
#include "filter/delay_envelope.hpp"
#include "filter/regression_estimate.hpp"
#include "sim/random.hpp"
#include "sim/sim_clock.hpp"
#include "sim/sim_network.hpp"

namespace {

using taid::Duration;
using taid::UtcTime;

struct Condition {
  std::string name;
  double poll_s = 1;
  double wander = 0;           // s/s per √s (SimClock's)
  double temperature_ppm = 0;  // amplitude
  double temperature_period_s = 86400;
  double ramp_ppb_per_s = 0;  // a linear frequency drift
  double duration_s = 6144;
};

struct Sample {
  Duration offset, delay;
  UtcTime t1, t4;
  double truth_offset_s;   // source − local at T4 (the estimators' sign)
  double truth_frequency;  // d(truth)/d(local time)
};

constexpr double kWarmup_s = 2048;  // scored from here: every window full
constexpr double kBaseFrequency_ppm = 10;
const UtcTime kStart = UtcTime::from_unix_ns(1798761600LL * 1000000000);

std::vector<Sample> generate(const Condition& c, uint64_t seed) {
  taid::sim::ClockModel model;
  model.initial_offset = Duration::from_ms(1);
  model.frequency_ppm = kBaseFrequency_ppm;
  model.wander = c.wander;
  model.temperature_amplitude_ppm = c.temperature_ppm;
  model.temperature_period = Duration::from_seconds(c.temperature_period_s);
  taid::sim::SimClock clock(model, kStart, taid::sim::derive_seed(seed, 0));
  taid::sim::PathModel path_model;  // 100 µs + 100 µs·Exp(1) each way
  taid::sim::SimPath path(path_model, taid::sim::derive_seed(seed, 1));
  const int64_t processing_ns = 10000;

  // The ramp moves the oscillator every whole second (as the wander does).
  int64_t next_ramp_ns = 1000000000;
  const auto advance = [&](int64_t to_ns) {
    while (c.ramp_ppb_per_s != 0 && next_ramp_ns <= to_ns) {
      clock.advance_to(next_ramp_ns);
      clock.change_oscillator_frequency_ppb(c.ramp_ppb_per_s);
      next_ramp_ns += 1000000000;
    }
    clock.advance_to(to_ns);
  };

  std::vector<Sample> samples;
  const int64_t poll_ns = std::llround(c.poll_s * 1e9);
  for (int64_t t1 = 500000; t1 < std::llround(c.duration_s * 1e9); t1 += poll_ns) {
    advance(t1);
    const UtcTime T1 = clock.local();
    const auto t2 = path.transit(taid::sim::Direction::to_server, t1);
    const int64_t t3 = *t2 + processing_ns;
    const auto t4 = path.transit(taid::sim::Direction::to_client, t3);
    advance(*t4);
    const UtcTime T4 = clock.local();
    const UtcTime T2 = kStart + Duration::from_ns(*t2), T3 = kStart + Duration::from_ns(t3);
    const Duration theta = ((T2 - T1) + (T3 - T4)) / 2;
    const Duration delta = (T4 - T1) - (T3 - T2);
    const double f = clock.total_frequency_ppb() * 1e-9;
    samples.push_back({theta, delta, T1, T4, -clock.error_ns() * 1e-9, -f / (1 + f)});
  }
  return samples;
}

struct Output {
  double offset_s, frequency;
  std::size_t samples;
};

struct Estimator {
  std::string name;
  std::function<std::optional<Output>(const Sample&)> add;
};

std::vector<Estimator> make_estimators(const std::vector<double>& factors) {
  std::vector<Estimator> out;
  const auto envelope = [](std::string name, taid::filter::EnvelopeOptions options) {
    auto e = std::make_shared<taid::filter::DelayEnvelope>(options);
    return Estimator{std::move(name), [e](const Sample& s) -> std::optional<Output> {
                       const auto r = e->add(s.offset, s.delay, s.t1, s.t4);
                       if (!r) return std::nullopt;
                       return Output{r->offset.seconds(), r->frequency, r->samples};
                     }};
  };
  const auto regression = [](std::string name, taid::filter::RegressionOptions options) {
    auto e = std::make_shared<taid::filter::RegressionEstimator>(options);
    return Estimator{std::move(name), [e](const Sample& s) -> std::optional<Output> {
                       const auto r = e->add(s.offset, s.delay, s.t1, s.t4);
                       if (!r) return std::nullopt;
                       return Output{r->offset.seconds(), r->frequency, r->samples};
                     }};
  };
  out.push_back(envelope("envelope-fixed", {.adaptive_window = false}));
  out.push_back(envelope("envelope-adaptive", {.adaptive_window = true}));
  // The review's claim: a fixed window of 256 to 512 samples.
  out.push_back(envelope("envelope-fixed-256", {.adaptive_window = false, .max_samples = 256}));
  out.push_back(envelope("envelope-fixed-512", {.adaptive_window = false, .max_samples = 512}));
  // The adaptive window over a span of up to 16384 s (at most 1024 samples still).
  out.push_back(envelope("envelope-adapt-16ks",
                         {.adaptive_window = true, .max_span = Duration::from_s(16384)}));
  for (double k : factors) {
    std::ostringstream name;
    name << "envelope-k" << k;
    out.push_back(envelope(name.str(), {.adaptive_window = true, .width_loss_factor = k}));
  }
  out.push_back(regression("regress-64", {.max_samples = 64}));
  out.push_back(regression("regress-1024", {.max_samples = 1024}));
  return out;
}

struct Score {
  double offset_sq = 0, offset_max = 0, frequency_sq = 0, samples_sum = 0;
  std::size_t n = 0;
  void add(double offset_error, double frequency_error, std::size_t samples) {
    offset_sq += offset_error * offset_error;
    offset_max = std::max(offset_max, std::abs(offset_error));
    frequency_sq += frequency_error * frequency_error;
    samples_sum += static_cast<double>(samples);
    ++n;
  }
  void merge(const Score& o) {
    offset_sq += o.offset_sq;
    offset_max = std::max(offset_max, o.offset_max);
    frequency_sq += o.frequency_sq;
    samples_sum += o.samples_sum;
    n += o.n;
  }
  double count() const { return static_cast<double>(n); }
  double rms_offset_ns() const { return n ? std::sqrt(offset_sq / count()) * 1e9 : NAN; }
  double rms_frequency_ppb() const { return n ? std::sqrt(frequency_sq / count()) * 1e9 : NAN; }
  double mean_samples() const { return n ? samples_sum / count() : NAN; }
};

std::vector<Condition> conditions() {
  std::vector<Condition> out;
  for (double poll : {1.0, 16.0, 64.0}) {
    const double duration = poll == 64 ? kWarmup_s + 200 * poll : 6144;
    const std::string p = "poll " + std::to_string(static_cast<int>(poll)) + " s";
    out.push_back({p + ", wander 0", poll, 0, 0, 86400, 0, duration});
    out.push_back({p + ", wander 1e-9", poll, 1e-9, 0, 86400, 0, duration});
    out.push_back({p + ", wander 1e-7", poll, 1e-7, 0, 86400, 0, duration});
    out.push_back({p + ", temp 1 ppm/24 h", poll, 0, 1, 86400, 0, duration});
    out.push_back({p + ", temp 0.1 ppm/1 h", poll, 0, 0.1, 3600, 0, duration});
  }
  // The review's model: 1 s polls, the frequency drifting 20 ppb over the 1024 s window.
  out.push_back({"poll 1 s, ramp 20 ppb/1024 s", 1, 0, 0, 86400, 20.0 / 1024, 6144});
  return out;
}

std::vector<double> parse_list(const std::string& s) {
  std::vector<double> out;
  std::stringstream in(s);
  std::string item;
  while (std::getline(in, item, ',')) out.push_back(std::stod(item));
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  int seeds = 5;
  std::string csv_path = "estimators.csv", only;
  std::vector<double> factors;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::cerr << arg << " needs a value\n";
        std::exit(2);
      }
      return argv[++i];
    };
    if (arg == "--seeds")
      seeds = std::stoi(value());
    else if (arg == "--csv")
      csv_path = value();
    else if (arg == "--only")
      only = value();
    else if (arg == "--factors")
      factors = parse_list(value());
    else {
      std::cerr << "usage: estimators [--seeds N] [--csv FILE] [--only SUBSTRING] "
                   "[--factors K,K,...]\n";
      return 2;
    }
  }
  std::ofstream csv(csv_path);
  csv << "condition,poll_s,wander,temperature_ppm,temperature_period_s,ramp_ppb_per_s,"
         "estimator,seed,scored,rms_offset_ns,max_offset_ns,rms_frequency_ppb,mean_samples\n";
  std::printf(
      "Open loop, clock +%g ppm, path 100 us + 100 us*Exp(1) each way, %d seeds, scored "
      "from %g s\n",
      kBaseFrequency_ppm, seeds, kWarmup_s);
  std::printf("%-32s %-18s %12s %12s %12s %8s\n", "condition", "estimator", "RMS off ns",
              "max off ns", "RMS f ppb", "window");
  for (const Condition& c : conditions()) {
    if (!only.empty() && c.name.find(only) == std::string::npos) continue;
    std::vector<std::string> names;
    std::vector<Score> totals;
    for (int seed = 1; seed <= seeds; ++seed) {
      const std::vector<Sample> samples = generate(c, static_cast<uint64_t>(seed));
      std::vector<Estimator> estimators = make_estimators(factors);
      std::vector<Score> scores(estimators.size());
      for (const Sample& s : samples) {
        const bool scored = (s.t4 - kStart).seconds() >= kWarmup_s;
        for (std::size_t e = 0; e < estimators.size(); ++e) {
          const auto out = estimators[e].add(s);
          if (scored && out)
            scores[e].add(out->offset_s - s.truth_offset_s, out->frequency - s.truth_frequency,
                          out->samples);
        }
      }
      if (totals.empty()) {
        totals.resize(estimators.size());
        for (const Estimator& e : estimators) names.push_back(e.name);
      }
      for (std::size_t e = 0; e < estimators.size(); ++e) {
        totals[e].merge(scores[e]);
        csv << '"' << c.name << "\"," << c.poll_s << ',' << c.wander << ',' << c.temperature_ppm
            << ',' << c.temperature_period_s << ',' << c.ramp_ppb_per_s << ',' << names[e] << ','
            << seed << ',' << scores[e].n << ',' << scores[e].rms_offset_ns() << ','
            << scores[e].offset_max * 1e9 << ',' << scores[e].rms_frequency_ppb() << ','
            << scores[e].mean_samples() << '\n';
      }
    }
    for (std::size_t e = 0; e < totals.size(); ++e) {
      std::printf("%-32s %-18s %12.1f %12.1f %12.3f %8.1f\n", c.name.c_str(), names[e].c_str(),
                  totals[e].rms_offset_ns(), totals[e].offset_max * 1e9,
                  totals[e].rms_frequency_ppb(), totals[e].mean_samples());
      csv << '"' << c.name << "\"," << c.poll_s << ',' << c.wander << ',' << c.temperature_ppm
          << ',' << c.temperature_period_s << ',' << c.ramp_ppb_per_s << ',' << names[e] << ",all,"
          << totals[e].n << ',' << totals[e].rms_offset_ns() << ',' << totals[e].offset_max * 1e9
          << ',' << totals[e].rms_frequency_ppb() << ',' << totals[e].mean_samples() << '\n';
    }
    std::fflush(stdout);
  }
  return 0;
}
