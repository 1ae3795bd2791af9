// The scenario runner: a discrete-event loop that carries out the real core's actions on the
// simulated clock, network and servers (see simulation.hpp).
#include "sim/simulation.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <memory>
#include <ostream>
#include <queue>
#include <utility>
#include <variant>

#include <sys/timex.h>

#include "core/strcat.hpp"
#include "sim/random.hpp"
#include "sim/sim_clock_driver.hpp"

namespace taid::sim {

Scenario Scenario::with_servers(std::string name, int n) {
  Scenario scenario = reference();
  scenario.name = std::move(name);
  const SourceSetup one = scenario.sources.front();
  scenario.sources.clear();
  for (int i = 1; i <= n; ++i) {
    SourceSetup s = one;
    s.config.name = "s" + std::to_string(i);
    scenario.sources.push_back(s);
  }
  return scenario;
}

void Scenario::use_leap_table(const timescale::LeapTable& table) {
  const int64_t start_s = floor_div(start.unix_ns(), 1000000000);
  if (const auto offset = table.offset_at(start_s)) true_tai_offset_s = *offset;
  true_leaps.clear();
  for (std::size_t i = 1; i < table.entries.size(); ++i) {
    const timescale::LeapEntry& e = table.entries[i];
    const int32_t change = e.tai_offset_s - table.entries[i - 1].tai_offset_s;
    if (e.utc_s <= start_s || change == 0) continue;
    true_leaps.push_back({UtcTime::from_unix_ns(e.utc_s * 1000000000), change > 0 ? 1 : -1});
  }
}

Scenario Scenario::reference() {
  Scenario s;
  s.name = "reference";
  s.clock.initial_offset = Duration::from_ms(100);
  s.clock.frequency_ppm = 100;
  s.clock.wander = 1e-9;
  SourceSetup server;
  server.path.base_delay = Duration::from_us(100);
  server.path.jitter_to_server = server.path.jitter_to_client = Duration::from_us(100);
  server.config.name = "server";
  server.config.minpoll = 6;
  server.config.maxpoll = 10;
  server.config.iburst = true;
  s.sources.push_back(server);
  return s;
}

namespace {

constexpr int8_t kStampPrecisionLog2 = -20;

// Random streams of a run (derive_seed's `stream`): one for the clock, one per path and one per
// source's request cookies, so adding a source does not change the others' draws.
constexpr uint64_t kClockStream = 0;
constexpr uint64_t kPathStream = 1000;
constexpr uint64_t kCookieStream = 2000;

class Runner {
 public:
  explicit Runner(const Scenario& scenario);
  RunResult run();

 private:
  struct Source {
    Source(const SourceSetup& setup, const Truth& truth, uint64_t seed, std::size_t index)
        : server(setup.server, truth),
          path(setup.path, derive_seed(seed, kPathStream + index)),
          cookies(derive_seed(seed, kCookieStream + index)) {}
    timekeeping::SourceId id = 0;
    SimServer server;
    SimPath path;
    Random cookies;
    uint64_t timer_generation = 0;
    bool demobilized = false;
  };

  // Events, ordered by true time and then by the order they were scheduled.
  struct SourceTimer {
    std::size_t source;
    uint64_t generation;
    Duration target_monotonic;
  };
  struct CoreTimer {
    uint64_t generation;
    Duration target_monotonic;
  };
  struct AtServer {
    std::size_t source;
    std::vector<uint8_t> bytes;
  };
  struct AtClient {
    std::size_t source;
    std::vector<uint8_t> bytes;
  };
  struct Trace {};
  struct SignProbe {};
  struct Interference {
    std::size_t event;
  };
  using Payload =
      std::variant<SourceTimer, CoreTimer, AtServer, AtClient, Trace, Interference, SignProbe>;
  struct Event {
    int64_t at_ns;
    uint64_t sequence;
    Payload payload;
    bool operator>(const Event& o) const {
      return at_ns != o.at_ns ? at_ns > o.at_ns : sequence > o.sequence;
    }
  };

  void schedule(int64_t at_ns, Payload payload) {
    queue_.push(Event{at_ns, next_sequence_++, std::move(payload)});
  }
  // The true time at which CLOCK_MONOTONIC reaches `target` if the frequency stays as it is now
  // (a timer that fires early is scheduled again for the rest).
  int64_t when_monotonic_reaches(Duration target) const;
  // A local stamp as the engine hands it in: through the core's cooked scale.
  ntp::LocalTimestamp stamp() const {
    return core_.cook(
        {clock_.local(), ntp::TimestampSource::kernel, kStampPrecisionLog2, clock_.monotonic()});
  }
  Duration since_start() const { return Duration::from_ns(clock_.true_ns()); }
  void log(bool warning, std::string text) {
    result_.log.push_back({since_start(), warning, std::move(text)});
  }

  void handle(const Event& event);
  void poll(std::size_t index);
  void on_reply(std::size_t index, const std::vector<uint8_t>& bytes);
  void carry_out(std::size_t index, const ntp::Actions& actions);
  void carry_out_clock(const timekeeping::Actions& actions);
  void record_trace();
  int64_t next_trace_ns() const;

  const Scenario& scenario_;
  SimClock clock_;
  SimClockDriver driver_;
  timekeeping::Timekeeper core_;
  std::vector<std::unique_ptr<Source>> sources_;
  std::priority_queue<Event, std::vector<Event>, std::greater<>> queue_;
  uint64_t next_sequence_ = 0;
  uint64_t core_timer_generation_ = 0;
  RunResult result_;
};

timekeeping::Settings core_settings(const Scenario& scenario, const clock::ClockDriver& driver) {
  // As the engine does: the scenario's (config's) settings, the driver's range.
  timekeeping::Settings settings = scenario.settings;
  settings.max_frequency_ppb = driver.max_frequency_ppb();
  settings.kernel_tai_offset_s = scenario.clock.initial_tai_offset_s;
  return settings;
}

double driver_frequency(clock::ClockDriver& driver) {
  auto frequency = driver.frequency_ppb();
  return frequency ? *frequency : 0;
}

Runner::Runner(const Scenario& scenario)
    : scenario_(scenario),
      clock_(scenario.clock, scenario.truth(), derive_seed(scenario.seed, kClockStream)),
      driver_(clock_),
      core_(core_settings(scenario, driver_), driver_frequency(driver_)) {
  for (std::size_t i = 0; i < scenario.sources.size(); ++i) {
    const SourceSetup& setup = scenario.sources[i];
    auto source = std::make_unique<Source>(setup, clock_.truth(), scenario.seed, i);
    Random* cookies = &source->cookies;
    source->id =
        core_.add_source(setup.config, setup.options, [cookies] { return cookies->u64(); });
    sources_.push_back(std::move(source));
    result_.source_names.push_back(setup.config.name);
  }
}

int64_t Runner::when_monotonic_reaches(Duration target) const {
  const int64_t remaining_ns = (target - clock_.monotonic()).ns();
  if (remaining_ns <= 0) return clock_.true_ns();
  const double rate = 1 + clock_.total_frequency_ppb() * 1e-9;
  const auto true_ns = static_cast<int64_t>(std::ceil(static_cast<double>(remaining_ns) / rate));
  return clock_.true_ns() + std::max<int64_t>(true_ns, 1);
}

RunResult Runner::run() {
  // The engine's start: the core's first actions, then every source polled at once.
  carry_out_clock(core_.start(clock_.local()));
  for (std::size_t i = 0; i < sources_.size(); ++i)
    schedule(0, SourceTimer{i, sources_[i]->timer_generation, clock_.monotonic()});
  for (std::size_t i = 0; i < scenario_.events.size(); ++i)
    schedule(scenario_.events[i].at.ns(), Interference{i});
  schedule(0, Trace{});
  if (scenario_.sign_interval > Duration{}) schedule(0, SignProbe{});

  const int64_t end_ns = scenario_.duration.ns();
  while (!queue_.empty() && queue_.top().at_ns <= end_ns && !result_.stopped) {
    const Event event = queue_.top();
    queue_.pop();
    clock_.advance_to(event.at_ns);
    ++result_.events;
    handle(event);
  }
  if (!result_.stopped) clock_.advance_to(end_ns);
  result_.ended = since_start();
  result_.steps = driver_.steps();
  result_.clock_updates = core_.tracking().updates;
  result_.kernel_leaps = clock_.kernel_leaps();
  result_.tai_offset_changes = clock_.tai_offset_changes();
  return std::move(result_);
}

void Runner::handle(const Event& event) {
  if (const auto* timer = std::get_if<SourceTimer>(&event.payload)) {
    Source& source = *sources_[timer->source];
    if (timer->generation != source.timer_generation || source.demobilized) return;
    if (clock_.monotonic() < timer->target_monotonic) {
      schedule(when_monotonic_reaches(timer->target_monotonic), *timer);
      return;
    }
    poll(timer->source);
  } else if (const auto* core_timer = std::get_if<CoreTimer>(&event.payload)) {
    if (core_timer->generation != core_timer_generation_) return;
    if (clock_.monotonic() < core_timer->target_monotonic) {
      schedule(when_monotonic_reaches(core_timer->target_monotonic), *core_timer);
      return;
    }
    carry_out_clock(core_.on_timer(clock_.local()));
  } else if (const auto* request = std::get_if<AtServer>(&event.payload)) {
    Source& source = *sources_[request->source];
    const auto reply = source.server.on_request(request->bytes, clock_.true_ns());
    if (!reply) return;
    if (const auto arrival = source.path.transit(Direction::to_client, reply->sent_ns))
      schedule(*arrival, AtClient{request->source, reply->bytes});
  } else if (const auto* reply = std::get_if<AtClient>(&event.payload)) {
    on_reply(reply->source, reply->bytes);
  } else if (std::holds_alternative<Trace>(event.payload)) {
    record_trace();
    schedule(next_trace_ns(), Trace{});
  } else if (std::holds_alternative<SignProbe>(event.payload)) {
    // As the daemon's signing socket: the interference check, then the core's verdict.
    carry_out_clock({});
    const auto verdict = core_.signing_time(clock_.local(), scenario_.max_sign_bound);
    SignSample sample;
    sample.t = since_start();
    sample.true_tai = clock_.true_tai();
    if (const auto* time = std::get_if<timekeeping::SigningTime>(&verdict)) {
      sample.tai_ns = time->tai_ns;
      sample.bound = time->bound;
    } else {
      sample.refusal = std::get<timekeeping::SigningRefusal>(verdict).text;
    }
    result_.signs.push_back(std::move(sample));
    schedule(clock_.true_ns() + scenario_.sign_interval.ns(), SignProbe{});
  } else if (const auto* interference = std::get_if<Interference>(&event.payload)) {
    const ClockEvent& e = scenario_.events[interference->event];
    switch (e.kind) {
      case ClockEvent::Kind::step:
        driver_.interfere_step(e.offset);
        break;
      case ClockEvent::Kind::set_frequency:
        driver_.interfere_set_frequency_ppb(e.ppb);
        break;
      case ClockEvent::Kind::oscillator_frequency:
        clock_.change_oscillator_frequency_ppb(e.ppb);
        break;
    }
  }
}

void Runner::poll(std::size_t index) {
  Source& source = *sources_[index];
  carry_out(index, core_.exchange(source.id).on_timer(stamp()));
  carry_out_clock(core_.on_source_event(source.id, clock_.local()));
}

void Runner::on_reply(std::size_t index, const std::vector<uint8_t>& bytes) {
  Source& source = *sources_[index];
  carry_out(index, core_.on_packet(source.id, bytes, stamp()));
  carry_out_clock(core_.on_source_event(source.id, clock_.local()));
}

void Runner::carry_out(std::size_t index, const ntp::Actions& actions) {
  Source& source = *sources_[index];
  for (const ntp::Action& action : actions) {
    if (const auto* send = std::get_if<ntp::SendRequest>(&action)) {
      // Leaves now: the poll's stamp is its T1 (a kernel TX stamp would say the same).
      if (const auto arrival = source.path.transit(Direction::to_server, clock_.true_ns()))
        schedule(*arrival, AtServer{index, send->bytes});
    } else if (const auto* timer = std::get_if<ntp::SetTimer>(&action)) {
      const Duration target = clock_.monotonic() + timer->after;
      schedule(when_monotonic_reaches(target),
               SourceTimer{index, ++source.timer_generation, target});
    } else if (const auto* demobilize = std::get_if<ntp::Demobilize>(&action)) {
      source.demobilized = true;
      ++source.timer_generation;
      log(true, strcat(result_.source_names[index], ": demobilized: ", demobilize->reason));
    } else if (const auto* line = std::get_if<ntp::LogLine>(&action)) {
      log(line->warning, line->text);
    }
  }
}

void Runner::carry_out_clock(const timekeeping::Actions& actions) {
  for (const timekeeping::Action& action :
       timekeeping::apply_clock_actions(actions, driver_, core_)) {
    if (const auto* timer = std::get_if<timekeeping::SetTimer>(&action)) {
      const Duration target = clock_.monotonic() + timer->after;
      schedule(when_monotonic_reaches(target), CoreTimer{++core_timer_generation_, target});
    } else if (const auto* line = std::get_if<timekeeping::LogLine>(&action)) {
      log(line->warning, line->text);
    } else if (const auto* stop = std::get_if<timekeeping::Stop>(&action)) {
      log(true, strcat("stopping: ", stop->reason));
      result_.stopped = stop->reason;
    } else if (const auto* poll_now = std::get_if<timekeeping::PollNow>(&action)) {
      // As the engine does: the source's timer is replaced by a poll now.
      for (std::size_t i = 0; i < sources_.size(); ++i) {
        Source& source = *sources_[i];
        if (source.id != poll_now->id || source.demobilized) continue;
        schedule(clock_.true_ns(), SourceTimer{i, ++source.timer_generation, clock_.monotonic()});
      }
    }
  }
}

int64_t Runner::next_trace_ns() const {
  const int64_t now = clock_.true_ns();
  int64_t next = now + scenario_.trace_interval.ns();
  for (const Scenario::TraceWindow& w : scenario_.fine_trace) {
    if (w.interval.ns() <= 0) continue;
    if (now >= w.from.ns() && now < w.to.ns()) next = std::min(next, now + w.interval.ns());
    if (now < w.from.ns()) next = std::min(next, w.from.ns());
  }
  return next;
}

void Runner::record_trace() {
  TracePoint p;
  p.t = since_start();
  p.offset_ns = clock_.error_ns();
  p.frequency_error_ppm = clock_.total_frequency_ppb() / 1000;
  p.driver_frequency_ppb = clock_.driver_frequency_ppb();
  const timekeeping::Tracking& tracking = core_.tracking();
  p.servo_state = tracking.servo_state;
  p.synchronized = tracking.synchronized;
  p.error_bound_ns = static_cast<double>(tracking.error_bound.ns());
  if (tracking.last_update) p.since_update_s = (clock_.local() - *tracking.last_update).seconds();
  p.local = clock_.local();
  p.clock_tai = clock_.clock_tai();
  p.true_tai = clock_.true_tai();
  p.tai_error_ns = clock_.tai_error_ns();
  p.tai_offset_s = clock_.tai_offset_s();
  p.kernel_time_state = clock_.kernel_time_state();
  const auto views = core_.sources();
  for (const auto& source : sources_) {
    char mark = '?';
    for (const auto& view : views)
      if (view.id == source->id) mark = static_cast<char>(view.mark);
    p.marks.push_back(mark);
    p.envelope_restarts.push_back(core_.exchange(source->id).envelope().restarts());
  }
  result_.trace.push_back(std::move(p));
}

}  // namespace

RunResult run(const Scenario& scenario) { return Runner(scenario).run(); }

Statistics RunResult::statistics(const Criteria& criteria) const {
  Statistics s;
  // Sync time: just after the last trace point that fails the criteria.
  std::optional<std::size_t> last_failure;
  for (std::size_t i = 0; i < trace.size(); ++i) {
    const TracePoint& p = trace[i];
    if (std::abs(p.offset_ns) >= static_cast<double>(criteria.max_offset.ns()) ||
        std::abs(p.frequency_error_ppm) >= criteria.max_frequency_error_ppm)
      last_failure = i;
  }
  const std::size_t first_good = last_failure ? *last_failure + 1 : 0;
  if (first_good < trace.size()) s.sync_time = trace[first_good].t;
  for (const TracePoint& p : trace) {
    if (p.synchronized) {
      s.first_synchronized = p.t;
      break;
    }
  }
  double sum_offset_sq = 0, sum_frequency_sq = 0;
  std::size_t n = 0;
  for (const TracePoint& p : trace) {
    if (p.t < criteria.settled) continue;
    s.max_abs_offset_ns = std::max(s.max_abs_offset_ns, std::abs(p.offset_ns));
    sum_offset_sq += p.offset_ns * p.offset_ns;
    sum_frequency_sq += p.frequency_error_ppm * p.frequency_error_ppm;
    ++n;
  }
  if (n > 0) {
    s.rms_offset_ns = std::sqrt(sum_offset_sq / static_cast<double>(n));
    s.rms_frequency_error_ppm = std::sqrt(sum_frequency_sq / static_cast<double>(n));
  }
  if (!trace.empty())
    for (uint64_t r : trace.back().envelope_restarts) s.envelope_restarts += r;
  s.steps = steps;
  s.clock_updates = clock_updates;
  s.log_lines = log.size();
  s.warnings = static_cast<uint64_t>(
      std::count_if(log.begin(), log.end(), [](const LogEntry& e) { return e.warning; }));
  return s;
}

Duration RunResult::max_tai_jump(Duration from, Duration to) const {
  int64_t largest = 0;
  const TracePoint* previous = nullptr;
  for (const TracePoint& p : trace) {
    if (p.t < from || p.t > to) continue;
    if (previous) {
      const int64_t jump = ((p.clock_tai - previous->clock_tai) - (p.t - previous->t)).ns();
      if (std::abs(jump) > std::abs(largest)) largest = jump;
    }
    previous = &p;
  }
  return Duration::from_ns(largest);
}

std::vector<TaiOffsetChange> RunResult::tai_offset_changes_between(Duration from,
                                                                   Duration to) const {
  std::vector<TaiOffsetChange> out;
  for (const TaiOffsetChange& c : tai_offset_changes)
    if (c.true_ns >= from.ns() && c.true_ns <= to.ns()) out.push_back(c);
  return out;
}

std::string Statistics::summary() const {
  char buf[320];
  const std::string sync = sync_time ? strcat(sync_time->seconds(), " s") : std::string("never");
  const std::string first =
      first_synchronized ? strcat(first_synchronized->seconds(), " s") : std::string("never");
  std::snprintf(
      buf, sizeof buf,
      "sync %s (core synchronized at %s), max |offset| %.1f us, RMS offset %.1f us, "
      "RMS freq error %.3f ppm, envelope restarts %llu, steps %llu, updates %llu, "
      "log lines %llu (%llu warnings)",
      sync.c_str(), first.c_str(), max_abs_offset_ns / 1e3, rms_offset_ns / 1e3,
      rms_frequency_error_ppm, static_cast<unsigned long long>(envelope_restarts),
      static_cast<unsigned long long>(steps), static_cast<unsigned long long>(clock_updates),
      static_cast<unsigned long long>(log_lines), static_cast<unsigned long long>(warnings));
  return buf;
}

void RunResult::write_csv(std::ostream& out) const {
  out << "t_s,offset_ns,frequency_error_ppm,driver_ppb,servo,synchronized";
  for (const std::string& name : source_names) out << ",mark_" << name << ",restarts_" << name;
  out << '\n';
  char buf[160];
  for (const TracePoint& p : trace) {
    std::snprintf(buf, sizeof buf, "%.9f,%.3f,%.6f,%.3f,", p.t.seconds(), p.offset_ns,
                  p.frequency_error_ppm, p.driver_frequency_ppb);
    out << buf << servo::to_string(p.servo_state) << ',' << (p.synchronized ? 1 : 0);
    for (std::size_t i = 0; i < p.marks.size(); ++i)
      out << ',' << p.marks[i] << ',' << p.envelope_restarts[i];
    out << '\n';
  }
}


void RunResult::write_leap_csv(std::ostream& out) const {
  out << "t_s,local_utc,offset_ns,clock_tai_s,tai_error_ns,tai_offset_s,kernel_state,"
         "synchronized\n";
  char buf[200];
  for (const TracePoint& p : trace) {
    const int64_t tai_ns = p.clock_tai.tai_ns();
    clock::KernelTimeState state;  // for its names of the kernel's states
    state.clock_state = p.kernel_time_state;
    std::snprintf(buf, sizeof buf, "%.9f,%s,%.3f,%lld.%09lld,%.3f,%d,%s,%d\n", p.t.seconds(),
                  p.local.to_string().c_str(), p.offset_ns,
                  static_cast<long long>(floor_div(tai_ns, 1000000000)),
                  static_cast<long long>(tai_ns - floor_div(tai_ns, 1000000000) * 1000000000),
                  p.tai_error_ns, p.tai_offset_s, state.clock_state_name().c_str(),
                  p.synchronized ? 1 : 0);
    out << buf;
  }
}

}  // namespace taid::sim
