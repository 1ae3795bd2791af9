// Engine: sources, timers, fresh-port requests, samples, and the JSON views of their state.
#include "daemon/engine.hpp"

#include <sys/random.h>

#include <algorithm>
#include <fstream>
#include <sstream>

#include <boost/asio/ip/udp.hpp>

#include "core/log.hpp"
#include "net/timestamping.hpp"

namespace taid::daemon {

namespace asio = boost::asio;
using nlohmann::json;

struct Engine::Source {
  Source(asio::io_context& io, std::string name_, asio::ip::udp::endpoint endpoint_,
         ntp::SourceConfig config, std::string origin_)
      : name(std::move(name_)),
        endpoint(std::move(endpoint_)),
        origin(std::move(origin_)),
        exchange(std::move(config), random_u64),
        timer(io) {}

  static uint64_t random_u64() {
    uint64_t value = 0;
    // getrandom() on 8 bytes never returns short once the pool is initialised.
    while (getrandom(&value, sizeof value, 0) != static_cast<ssize_t>(sizeof value)) {}
    return value;
  }

  std::string name;
  asio::ip::udp::endpoint endpoint;
  std::string origin;
  ntp::Exchange exchange;
  asio::steady_timer timer;
  std::unique_ptr<net::UdpRequest> request;
  std::optional<filter::Estimate> estimate;  // last released by the filter
};

struct Engine::Pending {
  Pending(asio::io_context& io, SourceDirective d) : directive(std::move(d)), timer(io) {}
  SourceDirective directive;
  asio::steady_timer timer;
  int retry_log2_s = ntp::kMinPoll;
};

Engine::Engine(asio::io_context& io, Config config, clock::ClockDriver& driver)
    : io_(io), config_(std::move(config)), driver_(driver) {
  precision_.kernel_log2 = net::measure_clock_precision_log2();
  precision_.user_log2 = std::max(net::kUserStampPrecisionLog2, precision_.kernel_log2);
}

Engine::~Engine() = default;

void Engine::start() {
  log_info(strcat("taid starting: clock driver '", driver_.name(), "', clock precision 2^",
                  int{precision_.kernel_log2}, " s, ", config_.sources.size(),
                  " server/pool line(s)"));
  read_drift_file();
  for (const SourceDirective& d : config_.sources) {
    pending_.push_back(std::make_unique<Pending>(io_, d));
    resolve(*pending_.back());
  }
}

void Engine::read_drift_file() {
  if (config_.driftfile.empty()) return;
  std::ifstream in(config_.driftfile);
  if (!in) {
    log_info(strcat(config_.driftfile, ": no drift file yet"));
    return;
  }
  double ppm = 0;
  if (!(in >> ppm)) {
    log_warning(strcat(config_.driftfile, ":1: frequency: not a number, drift file ignored"));
    return;
  }
  drift_file_ppm_ = ppm;
  // Observe-only mode never writes the clock, so the drift file is read for reporting only
  // (chronyd -x does not update it either).
  log_info(strcat(config_.driftfile, ": frequency ", ppm, " ppm (observe only: not applied)"));
}

void Engine::resolve(Pending& pending) {
  const SourceDirective& d = pending.directive;
  asio::ip::udp::resolver resolver(io_);
  boost::system::error_code ec;
  const auto results = resolver.resolve(d.name, std::to_string(d.port),
                                        asio::ip::udp::resolver::numeric_service, ec);
  if (ec || results.empty()) {
    const int wait = pending.retry_log2_s;
    log_warning(strcat(d.origin, ": cannot resolve '", d.name, "': ", ec.message(),
                       "; retrying in ", 1 << wait, " s"));
    pending.retry_log2_s = std::min(wait + 1, d.maxpoll);
    pending.timer.expires_after(std::chrono::seconds(1 << wait));
    pending.timer.async_wait([this, &pending](const boost::system::error_code& e) {
      if (!e) resolve(pending);
    });
    return;
  }
  int taken = 0;
  const int limit = d.pool ? d.max_sources : 1;
  for (const auto& entry : results) {
    if (taken == limit) break;
    const auto endpoint = entry.endpoint();
    const bool duplicate = std::any_of(sources_.begin(), sources_.end(),
                                       [&](const auto& s) { return s->endpoint == endpoint; });
    if (duplicate) continue;
    const std::string address = endpoint.address().to_string();
    add_source(d.pool ? strcat(d.name, "/", address) : d.name, endpoint, d);
    ++taken;
  }
}

void Engine::add_source(std::string name, const asio::ip::udp::endpoint& endpoint,
                        const SourceDirective& d) {
  ntp::SourceConfig config{name, d.minpoll, d.maxpoll, d.iburst};
  sources_.push_back(std::make_unique<Source>(io_, std::move(name), endpoint, config, d.origin));
  Source& source = *sources_.back();
  log_info(strcat(source.name, ": polling ", endpoint.address().to_string(), " port ",
                  endpoint.port(), ", minpoll ", d.minpoll, " maxpoll ", d.maxpoll,
                  d.iburst ? ", iburst" : ""));
  poll(source);
}

void Engine::poll(Source& source) {
  const ntp::LocalTimestamp now{driver_.now(), ntp::TimestampSource::user, precision_.kernel_log2};
  carry_out(source, source.exchange.on_timer(now));
}

void Engine::on_reply(Source& source, std::span<const uint8_t> bytes, ntp::LocalTimestamp rx) {
  if (rx.source == ntp::TimestampSource::user && !warned_user_stamps_) {
    warned_user_stamps_ = true;
    log_warning("no kernel receive timestamp on a reply; using user-space stamps");
  }
  carry_out(source, source.exchange.on_packet(bytes, rx));
}

void Engine::carry_out(Source& source, const ntp::Actions& actions) {
  for (const ntp::Action& action : actions) {
    if (const auto* send = std::get_if<ntp::SendRequest>(&action)) {
      // A fresh socket per request: a late reply to the previous one can no longer arrive.
      auto opened = net::UdpRequest::open(
          io_, source.endpoint, precision_,
          [this, &source](std::span<const uint8_t> bytes, ntp::LocalTimestamp rx) {
            on_reply(source, bytes, rx);
          });
      if (!opened) {
        source.request.reset();
        log_warning(strcat(source.name, ": ", opened.error().message()));
        continue;
      }
      source.request = std::move(opened.value());
      auto sent = source.request->send(send->bytes);
      if (!sent) {
        log_warning(strcat(source.name, ": ", sent.error().message()));
        continue;
      }
      // The stamp taken right after send() is closer to the wire than the one before on_timer.
      source.exchange.on_transmit_timestamp(
          {*sent, ntp::TimestampSource::user, precision_.user_log2});
    } else if (const auto* timer = std::get_if<ntp::SetTimer>(&action)) {
      source.timer.expires_after(std::chrono::nanoseconds(timer->after.ns()));
      source.timer.async_wait([this, &source](const boost::system::error_code& ec) {
        if (!ec) poll(source);
      });
    } else if (const auto* accepted = std::get_if<ntp::SampleAccepted>(&action)) {
      const ntp::Sample& s = accepted->sample;
      if (accepted->released) source.estimate = accepted->released;
      std::string line = strcat("sample ", source.name, ": offset ", s.offset.to_string(),
                                " delay ", s.delay.to_string(), " disp ",
                                s.dispersion.to_string(), " rx=", ntp::to_string(s.rx_source),
                                " stratum ", int{s.stratum});
      if (accepted->released)
        line += strcat(" | filter offset ", accepted->released->offset.to_string(), " delay ",
                       accepted->released->delay.to_string(), " jitter ",
                       accepted->released->jitter.to_string());
      log_info(line);
    } else if (const auto* demobilize = std::get_if<ntp::Demobilize>(&action)) {
      source.timer.cancel();
      source.request.reset();
      log_warning(strcat(source.name, ": demobilized: ", demobilize->reason));
    } else if (const auto* log_line = std::get_if<ntp::LogLine>(&action)) {
      log(log_line->warning ? LogLevel::warning : LogLevel::debug, log_line->text);
    }
  }
}

namespace {

const char* leap_name(ntp::Leap leap) {
  switch (leap) {
    case ntp::Leap::none: return "none";
    case ntp::Leap::add_second: return "insert";
    case ntp::Leap::delete_second: return "delete";
    case ntp::Leap::unsynchronized: return "unsynchronized";
  }
  return "?";
}

// Estimated error of one measurement: half the round trip plus its dispersion.
Duration sample_error(const ntp::Sample& s) { return s.delay / 2 + s.dispersion; }

std::string octal(uint8_t v) {
  std::ostringstream out;
  out << std::oct << int{v};
  return out.str();
}

}  // namespace

json Engine::sources_json() const {
  json list = json::array();
  const UtcTime now = driver_.now();
  for (const auto& source : sources_) {
    const ntp::SourceStatus& st = source->exchange.status();
    json j{{"name", source->name},
           {"address", source->endpoint.address().to_string()},
           {"port", source->endpoint.port()},
           {"origin", source->origin},
           {"state", ntp::to_string(st.state)},
           {"selected", system_peer() == source.get()},
           {"poll_log2_s", st.poll_log2_s},
           {"reach", st.reach},
           {"reach_octal", octal(st.reach)},
           {"requests", st.requests_sent},
           {"samples", st.samples},
           {"rejected", st.rejected},
           {"last_rejection", st.last_rejection}};
    if (st.last_sample) {
      const ntp::Sample& s = *st.last_sample;
      j["stratum"] = s.stratum;
      j["reference_id"] = ntp::reference_id_to_string(s.reference_id, s.stratum);
      j["leap"] = leap_name(s.leap);
      j["last_offset_ns"] = s.offset.ns();
      j["last_delay_ns"] = s.delay.ns();
      j["last_error_ns"] = sample_error(s).ns();
      j["last_sample_age_s"] = (now - s.time).seconds();
      j["timestamp_source"] = ntp::to_string(s.rx_source);
      j["root_delay_ns"] = s.root_delay.ns();
      j["root_dispersion_ns"] = s.root_dispersion.ns();
    }
    if (source->estimate) {
      j["offset_ns"] = source->estimate->offset.ns();
      j["delay_ns"] = source->estimate->delay.ns();
      j["dispersion_ns"] = source->exchange.filter().dispersion_at(now).ns();
      j["jitter_ns"] = source->estimate->jitter.ns();
    }
    list.push_back(std::move(j));
  }
  return json{{"sources", std::move(list)}};
}

const Engine::Source* Engine::system_peer() const {
  // Until selection/cluster/combine lands, the system peer is the reachable source with the
  // smallest root distance — the RFC's ranking within a cluster.
  const Source* best = nullptr;
  Duration best_distance;
  const UtcTime now = driver_.now();
  for (const auto& source : sources_) {
    const auto& st = source->exchange.status();
    if (st.state != ntp::SourceState::reachable || !source->estimate || !st.last_sample) continue;
    const Duration distance = (st.last_sample->root_delay + source->estimate->delay) / 2 +
                              st.last_sample->root_dispersion +
                              source->exchange.filter().dispersion_at(now) + source->estimate->jitter;
    if (!best || distance < best_distance) {
      best = source.get();
      best_distance = distance;
    }
  }
  return best;
}

json Engine::tracking_json() const {
  json j{{"mode", "observe"}, {"clock_driver", driver_.name()}};
  if (drift_file_ppm_) j["drift_file_freq_ppm"] = *drift_file_ppm_;
  const Source* peer = system_peer();
  if (!peer) {
    j["reference"] = nullptr;
    j["stratum"] = 16;
    j["leap"] = "unsynchronized";
    return j;
  }
  const UtcTime now = driver_.now();
  const ntp::Sample& s = *peer->exchange.status().last_sample;
  const filter::Estimate& e = *peer->estimate;
  const Duration root_delay = s.root_delay + e.delay;
  const Duration root_dispersion =
      s.root_dispersion + peer->exchange.filter().dispersion_at(now) + e.jitter;
  j["reference"] = peer->name;
  j["reference_id"] = ntp::reference_id_to_string(s.reference_id, s.stratum);
  j["address"] = peer->endpoint.address().to_string();
  j["stratum"] = s.stratum + 1;
  j["leap"] = leap_name(s.leap);
  // Observe only: the offset is measured, never corrected. Positive: the local clock is behind.
  j["offset_ns"] = e.offset.ns();
  j["last_offset_ns"] = s.offset.ns();
  j["jitter_ns"] = e.jitter.ns();
  j["root_delay_ns"] = root_delay.ns();
  j["root_dispersion_ns"] = root_dispersion.ns();
  j["root_distance_ns"] = (root_delay / 2 + root_dispersion).ns();
  j["poll_log2_s"] = peer->exchange.status().poll_log2_s;
  j["last_update"] = e.time.to_string();
  j["update_age_s"] = (now - e.time).seconds();
  j["timestamp_source"] = ntp::to_string(s.rx_source);
  return j;
}

json Engine::filter_json(std::string_view name) const {
  const auto it = std::find_if(sources_.begin(), sources_.end(),
                               [&](const auto& s) { return s->name == name; });
  if (it == sources_.end()) return json{{"error", strcat("no source named '", name, "'")}};
  const Source& source = **it;
  const UtcTime now = driver_.now();
  json stages = json::array();
  int index = 0;
  for (const filter::Stage& st : source.exchange.filter().stages()) {
    json s{{"stage", index++}, {"valid", st.valid}, {"dispersion_ns", st.dispersion.ns()}};
    if (st.valid) {
      s["offset_ns"] = st.offset.ns();
      s["delay_ns"] = st.delay.ns();
      s["age_s"] = (now - st.time).seconds();
    }
    stages.push_back(std::move(s));
  }
  json j{{"name", source.name}, {"stages", std::move(stages)}};
  if (source.estimate) {
    j["offset_ns"] = source.estimate->offset.ns();
    j["delay_ns"] = source.estimate->delay.ns();
    j["dispersion_ns"] = source.exchange.filter().dispersion_at(now).ns();
    j["jitter_ns"] = source.estimate->jitter.ns();
  }
  return j;
}

json Engine::kernel_json() const {
  auto state = driver_.state();
  if (!state) return json{{"error", state.error().message()}};
  const clock::KernelTimeState& k = *state;
  return json{{"clock_state", k.clock_state_name()},
              {"status", k.status},
              {"status_flags", k.status_flag_names()},
              {"synchronized", k.synchronized()},
              {"offset_ns", k.offset.ns()},
              {"frequency_ppb", k.frequency_ppb},
              {"max_error_ns", k.max_error.ns()},
              {"est_error_ns", k.est_error.ns()},
              {"time_constant", k.time_constant},
              {"precision_ns", k.precision.ns()},
              {"tolerance_ppb", k.tolerance_ppb},
              {"tai_offset_s", k.tai_offset_s},
              {"tick_us", k.tick_us},
              {"time", k.time.to_string()}};
}

json Engine::query(std::string_view request) {
  std::istringstream in{std::string(request)};
  std::string command, argument, extra;
  in >> command >> argument >> extra;
  if (command == "sources" && argument.empty()) return sources_json();
  if (command == "tracking" && argument.empty()) return tracking_json();
  if (command == "kernel" && argument.empty()) return kernel_json();
  if (command == "filter" && !argument.empty() && extra.empty()) return filter_json(argument);
  if (command == "filter") return json{{"error", "filter: needs exactly one source name"}};
  return json{{"error", strcat("unknown request '", request.substr(0, 64),
                               "' (known: sources, tracking, filter NAME, kernel)")}};
}

}  // namespace taid::daemon
