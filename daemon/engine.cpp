// Engine: sources, timers, fresh-port requests, samples, and the JSON views of their state.
#include "daemon/engine.hpp"

#include <net/if.h>
#include <sys/random.h>
#include <sys/stat.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include <boost/asio/ip/udp.hpp>

#include "core/log.hpp"
#include "timescale/leap_table.hpp"
#include "timescale/utc_label.hpp"
#include "net/hw_timestamping.hpp"
#include "net/interfaces.hpp"
#include "net/timestamping.hpp"

namespace taid::daemon {

namespace asio = boost::asio;
using nlohmann::json;

struct Engine::Source {
  Source(asio::io_context& io, std::string name_, asio::ip::udp::endpoint endpoint_,
         timekeeping::Timekeeper& core, ntp::SourceConfig config, SourceDirective directive_)
      : name(std::move(name_)),
        endpoint(std::move(endpoint_)),
        origin(directive_.origin),
        directive(std::move(directive_)),
        id(core.add_source(std::move(config), directive.options, random_u64)),
        exchange(core.exchange(id)),
        timer(io),
        resolver(io) {}

  static uint64_t random_u64() {
    uint64_t value = 0;
    // getrandom() on 8 bytes never returns short once the pool is initialised.
    while (getrandom(&value, sizeof value, 0) != static_cast<ssize_t>(sizeof value)) {
    }
    return value;
  }

  std::string name;
  asio::ip::udp::endpoint endpoint;
  std::string origin;
  SourceDirective directive;  // the server/pool line: the name to resolve again
  timekeeping::SourceId id;   // in the timekeeping core, which owns the exchange
  ntp::Exchange& exchange;
  asio::steady_timer timer;
  // Resolves the name again while the source is unreachable (Engine::re_resolve).
  asio::ip::udp::resolver resolver;
  bool resolving = false;
  uint64_t address_changes = 0;
  net::DroppedDatagrams drops;  // over all its requests; declared before the request it outlives
  std::unique_ptr<net::UdpRequest> request;
  int ifindex = 0;                             // where its replies arrive
  // The stamps of the last answered exchange, shown together by `taictl sources`: every RX
  // stamp its reply had and its request's kernel TX stamp. The TX stamp of the request in
  // flight waits in pending_tx, so a reader never sees one exchange's TX beside another's RX.
  std::optional<net::RxCandidates> last_rx;
  std::optional<ntp::LocalTimestamp> last_tx;
  std::optional<ntp::LocalTimestamp> pending_tx;
  bool pending_answered = false;  // the request in flight has had its reply (its TX may be late)
};

struct Engine::Pending {
  Pending(asio::io_context& io, SourceDirective d)
      : directive(std::move(d)), timer(io), resolver(io) {}
  SourceDirective directive;
  asio::steady_timer timer;
  // getaddrinfo blocks; Asio runs it off the io thread so timers and the control socket go on.
  asio::ip::udp::resolver resolver;
  int retry_log2_s = 4;  // 16 s, doubling up to the directive's maxpoll
};

namespace {

// The leap table's file: leapsectz's zone under the tz database, else leapseclist.
struct LeapTableFile {
  std::string path;
  bool tzif = false;
};
LeapTableFile leap_table_file(const Config& config) {
  if (!config.leapsectz.empty()) return {"/usr/share/zoneinfo/" + config.leapsectz, true};
  return {config.leapseclist, false};
}
Result<timescale::LeapTable> read_leap_table(const LeapTableFile& file) {
  return file.tzif ? timescale::read_tzif_leaps(file.path)
                   : timescale::read_leap_seconds_list(file.path);
}

std::string describe(const timescale::LeapTable& table) {
  const auto date = [](int64_t utc_s) {
    return timescale::to_string(timescale::utc_label_from_posix(
        UtcTime::from_unix_ns(utc_s * 1000000000))).substr(0, 10);
  };
  return strcat(table.origin, ": ", table.entries.size(), " entries, TAI - UTC ",
                table.entries.back().tai_offset_s, " s since ", date(table.last_entry_utc_s()),
                table.expires_utc_s ? strcat(", expires ", date(*table.expires_utc_s))
                                    : std::string(", no expiry"));
}

// The core's settings: the config's, the driver's range, the drift file's frequency, the leap
// table (a bad one is logged and taid runs without: it then vouches for no TAI offset) and the
// kernel's TAI offset now.
timekeeping::Settings core_settings(const Config& config, clock::ClockDriver& driver,
                                    bool observe_only, const std::optional<DriftFile>& drift) {
  timekeeping::Settings settings = config.timekeeping;
  settings.observe_only = observe_only;
  settings.max_frequency_ppb = driver.max_frequency_ppb();
  if (drift && !observe_only) settings.initial_frequency_ppb = drift->frequency_ppm * 1000;
  if (auto table = read_leap_table(leap_table_file(config))) {
    log_info(strcat("leap table ", describe(*table)));
    if (auto warning = timescale::expiry_warning(*table, driver.now().unix_ns() / 1000000000))
      log_warning(*warning);
    settings.leap_table = std::move(*table);
    settings.leap_table_note.clear();
  } else {
    settings.leap_table_note = strcat("no leap table: ", table.error().message());
    log_warning(strcat(settings.leap_table_note, " (no TAI offset will be set)"));
  }
  if (auto state = driver.state()) settings.kernel_tai_offset_s = state->tai_offset_s;
  return settings;
}

// A drift file that cannot be used is logged with its path and ignored: taid runs on.
std::optional<DriftFile> load_drift_file(const std::string& path, bool observe_only) {
  if (path.empty()) return std::nullopt;
  auto read = read_drift_file(path);
  if (!read) {
    log_warning(strcat(read.error().message(), "; drift file ignored"));
    return std::nullopt;
  }
  if (!*read) {
    log_info(strcat(path, ": no drift file yet"));
    return std::nullopt;
  }
  const DriftFile& drift = **read;
  // Observe-only mode never writes the clock, so the drift file is read for reporting only
  // (chronyd -x does not update it either).
  log_info(strcat(path, ": frequency ", drift.frequency_ppm, " ppm",
                  observe_only ? " (observe only: not applied)" : ""));
  return drift;
}

double driver_frequency_ppb(clock::ClockDriver& driver) {
  auto frequency = driver.frequency_ppb();
  if (!frequency) {
    log_warning(strcat("cannot read the clock's frequency: ", frequency.error().message()));
    return 0;
  }
  return *frequency;
}

}  // namespace

Engine::Engine(asio::io_context& io, Config config, clock::ClockDriver& driver,
               std::optional<std::string> observe_reason)
    : io_(io),
      config_(std::move(config)),
      driver_(driver),
      observe_reason_(std::move(observe_reason)),
      drift_file_(load_drift_file(config_.driftfile, observe_only())),
      core_(core_settings(config_, driver_, observe_only(), drift_file_),
            driver_frequency_ppb(driver_)),
      core_timer_(io),
      drift_timer_(io),
      leap_table_timer_(io),
      record_timer_(io),
      chooser_(config_.timestamping) {
  precision_.kernel_log2 = net::measure_clock_precision_log2();
  precision_.user_log2 = std::max(net::kUserStampPrecisionLog2, precision_.kernel_log2);
}

Engine::~Engine() {
  if (!observe_only()) write_drift_file();
}

void Engine::start() {
  log_info(strcat("taid starting: clock driver '", driver_.name(), "', clock precision 2^",
                  int{precision_.kernel_log2}, " s, ", config_.sources.size(),
                  " server/pool line(s)",
                  observe_only() ? strcat(" (observe only: ", *observe_reason_, ")") : ""));
  set_up_timestamping();
  carry_out_clock(core_.start(driver_.now()));
  if (!observe_only()) schedule_drift_write();
  leap_table_stat_ = stat_of(leap_table_file(config_).path);
  schedule_leap_table_check();
  if (!config_.clockrecord.empty()) {
    if (auto writer = publish::ShmClockWriter::open(config_.clockrecord)) {
      clock_record_.emplace(std::move(*writer));
      log_info(strcat("clock record ", config_.clockrecord, " (read with taid_clock.h)"));
      publish_clock_record();
      schedule_record_heartbeat();
    } else {
      log_warning(strcat("no clock record: ", writer.error().message()));
    }
  }
  if (!config_.signsocket.empty()) {
    SignSettings settings;
    settings.socket_path = config_.signsocket;
    settings.key_path = config_.signkey;
    settings.serial_path = config_.signserials;
    // Default: root and taid's own user.
    settings.allowed_uids.assign(config_.sign_allowed_uids.begin(), config_.sign_allowed_uids.end());
    if (settings.allowed_uids.empty()) settings.allowed_uids = {0, ::getuid()};
    if (auto server = SignServer::open(io_, settings, [this] { return sign_verdict(); })) {
      sign_server_ = std::move(*server);
      log_info(strcat("signing socket ", config_.signsocket, ", key ", config_.signkey,
                      sign_server_->key_created() ? " (new)" : "", ", key id ",
                      stamp::to_hex(sign_server_->public_key().key_id()), ", public key ", config_.signkey,
                      ".pub"));
    } else {
      log_warning(strcat("no signing socket: ", server.error().message()));
    }
  }
  if (config_.tsaport != 0) start_tsa();
  if (config_.server.enabled()) start_ntp_server();
  // The once-a-second publication also refreshes what the server advertises.
  if (!clock_record_ && ntp_server_) schedule_record_heartbeat();
  if (config_.log_measurements) {
    const std::string path = config_.logdir + "/measurements.log";
    measurements_.open(path, std::ios::app);
    if (!measurements_)
      log_error(strcat(path, ": cannot open for writing: ", std::strerror(errno)));
    else
      measurements_ << "# time_utc,source,offset_ns,delay_ns,dispersion_ns,rx_source,tx_source,"
                       "interleaved,stratum,filter_offset_ns,envelope_offset_ns,envelope_freq_ppb,"
                       "envelope_half_min_delay_ns\n"
                    << std::flush;
  }
  for (const SourceDirective& d : config_.sources) {
    pending_.push_back(std::make_unique<Pending>(io_, d));
    resolve(*pending_.back());
  }
}

void Engine::write_drift_file() {
  // Only a frequency the core has estimated is worth keeping (chronyd waits for one too).
  if (config_.driftfile.empty() || core_.tracking().updates == 0) return;
  const auto& t = core_.tracking();
  if (auto written = daemon::write_drift_file(config_.driftfile, t.frequency_ppb / 1000,
                                              t.skew_ppb / 1000);
      !written)
    log_warning(written.error().message());
}

Engine::FileStat Engine::stat_of(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return {};
  return {true, static_cast<uint64_t>(st.st_ino), static_cast<int64_t>(st.st_size),
          static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec};
}

// The leap table is read again when its file changes (a new leap-seconds.list from tzdata): a good
// one replaces the table, a bad one is logged and the last good table stays. Once a day the
// table's expiry is looked at again.
void Engine::schedule_leap_table_check() {
  leap_table_timer_.expires_after(std::chrono::seconds(10));
  leap_table_timer_.async_wait([this](const boost::system::error_code& ec) {
    if (ec) return;
    const LeapTableFile file = leap_table_file(config_);
    const FileStat now_stat = stat_of(file.path);
    const int64_t today = driver_.now().unix_ns() / 1000000000 / 86400;
    const auto& current = core_.leap_table();
    if (now_stat != leap_table_stat_) {
      leap_table_stat_ = now_stat;
      const int64_t now_s = driver_.now().unix_ns() / 1000000000;
      auto table = read_leap_table(file);
      // An expired list does not replace one that still speaks for today.
      if (table && !table->covers(now_s) && current && current->covers(now_s)) {
        table = Error::plain(timescale::expiry_warning(*table, now_s).value_or(table->origin));
      }
      if (table) {
        log_info(strcat("leap table reloaded: ", describe(*table)));
        if (auto warning = timescale::expiry_warning(*table, now_s)) log_warning(*warning);
        core_.set_leap_table(std::move(*table), "");
      } else {
        log_warning(strcat(table.error().message(), "; keeping ",
                           core_.tracking().leap_table.empty()
                               ? std::string("no table")
                               : strcat("the last good table (", core_.tracking().leap_table, ")")));
      }
      expiry_checked_day_ = today;
    } else if (today != expiry_checked_day_) {
      expiry_checked_day_ = today;
      if (current) {
        if (auto warning =
                timescale::expiry_warning(*current, driver_.now().unix_ns() / 1000000000))
          log_warning(*warning);
      }
    }
    schedule_leap_table_check();
  });
}

void Engine::schedule_drift_write() {
  if (config_.driftfile.empty()) return;
  drift_timer_.expires_after(config_.drift_write_interval);
  drift_timer_.async_wait([this](const boost::system::error_code& ec) {
    if (ec) return;
    write_drift_file();
    schedule_drift_write();
  });
}

void Engine::set_up_timestamping() {
  const TimestampingMode mode = config_.timestamping;
  if (mode != TimestampingMode::user) {
    if (auto held = net::hold_rx_timestamping_on(); !held)
      log_warning(strcat("kernel RX timestamps: ", held.error().message()));
  }
  // Hardware: switch it on where asked. Stamps on the NIC's clock are not converted to the
  // system clock yet, so software paths keep carrying the exchange; say so plainly.
  std::vector<std::string> interfaces = config_.hwtimestamp_interfaces;
  if (std::find(interfaces.begin(), interfaces.end(), "*") != interfaces.end()) {
    if (auto all = net::interface_names()) interfaces = *all;
  }
  for (const std::string& iface : interfaces) {
    auto enabled = net::enable_hw_timestamping(iface);
    std::string note = enabled.ok() ? "" : enabled.error().message();
    if (enabled) {
      const auto info = net::query_ts_info(iface);
      const int phc = info ? info->phc_index : -1;
      note = strcat(iface,
                    enabled->restore() ? ": hardware timestamping on (restored at exit)"
                                       : ": hardware timestamping already on, kept as it was",
                    phc >= 0 ? strcat(", PHC /dev/ptp", phc) : std::string(", no PHC"),
                    "; its stamps are not converted to the system clock yet, software stamps "
                    "are used");
      hw_claims_.push_back(std::move(*enabled));
    }
    hardware_notes_.push_back(note);
    log_warning(strcat("hwtimestamp ", note));
  }
  log_info(strcat("timestamping ", to_string(mode), ", clock precision 2^",
                  int{precision_.kernel_log2}, " s"));
}

void Engine::attach_bpf(int ifindex, uint16_t port) {
  const TimestampingMode mode = config_.timestamping;
  if (mode != TimestampingMode::auto_ && mode != TimestampingMode::bpf) return;
  // One program per interface and server port (the port is in the program's rodata); a place
  // where attaching failed is not tried again for every source.
  const std::pair<int, uint16_t> where{ifindex, port};
  if (ifindex == 0 || bpf_.count(where) != 0 || bpf_failed_.count(where) != 0) return;
  std::string errors;
  if (auto attached = attach_rx_program(ifindex, port, bpf::Stamped::replies, errors)) {
    bpf_.emplace(where, std::move(*attached));
    return;
  }
  bpf_failed_.insert(where);
  bpf_error_ = strcat(net::interface_name(ifindex), ": ", errors);
  log_warning(strcat("eBPF RX timestamps unavailable on ", bpf_error_,
                     " — continuing with SO_TIMESTAMPING kernel stamps"));
}

std::optional<bpf::RxTimestamper> Engine::attach_rx_program(int ifindex, uint16_t port,
                                                            bpf::Stamped what,
                                                            std::string& errors) {
  // lib/bpf decides the order: auto probes the kernel for tcx; XDP falls back to tc when another
  // live taid holds the device's XDP program.
  std::vector<bpf::AttachMode> tries;
  switch (config_.bpf_attach) {
    case BpfAttach::auto_:
      tries = bpf::auto_attach_order();
      break;
    case BpfAttach::tc:
      tries = bpf::attach_order(bpf::AttachMode::tc_clsact);
      break;
    case BpfAttach::tcx:
      tries = bpf::attach_order(bpf::AttachMode::tcx);
      break;
    case BpfAttach::xdp_generic:
      tries = bpf::attach_order(bpf::AttachMode::xdp_generic);
      break;
    case BpfAttach::xdp_native:
      tries = bpf::attach_order(bpf::AttachMode::xdp_native);
      break;
  }
  for (bpf::AttachMode attach : tries) {
    auto attached = bpf::RxTimestamper::attach(ifindex, attach, port, what);
    if (attached) {
      log_info(strcat("eBPF RX timestamps", what == bpf::Stamped::requests ? " of requests" : "",
                      ": ", bpf::to_string(attach), " on ", net::interface_name(ifindex),
                      " (program id ", attached->program_id(), ", UDP port ", port, ")",
                      errors.empty() ? "" : " after ", errors));
      return std::move(attached.value());
    }
    errors += strcat(errors.empty() ? "" : "; ", bpf::to_string(attach), ": ",
                     attached.error().message());
  }
  return std::nullopt;
}

void Engine::resolve(Pending& pending) {
  const SourceDirective& d = pending.directive;
  pending.resolver.async_resolve(
      d.name, std::to_string(d.port), asio::ip::udp::resolver::numeric_service,
      [this, &pending](const boost::system::error_code& ec,
                       const asio::ip::udp::resolver::results_type& results) {
        on_resolved(pending, ec, results);
      });
}

void Engine::on_resolved(Pending& pending, const boost::system::error_code& ec,
                         const asio::ip::udp::resolver::results_type& results) {
  if (ec == asio::error::operation_aborted) return;
  const SourceDirective& d = pending.directive;
  // Back-off as for an unanswered source: 16 s, doubling up to the line's maxpoll (chrony
  // retries from 28 s up to about an hour).
  const auto resolve_later = [&](const std::string& why) {
    const int wait = pending.retry_log2_s;
    log_warning(
        strcat(d.origin, ": ", why, "; resolving '", d.name, "' again in ", 1 << wait, " s"));
    pending.retry_log2_s = std::min(wait + 1, std::max(d.maxpoll, 4));
    pending.timer.expires_after(std::chrono::seconds(1 << wait));
    pending.timer.async_wait([this, &pending](const boost::system::error_code& e) {
      if (!e) resolve(pending);
    });
  };
  if (ec || results.empty()) {
    resolve_later(
        strcat("cannot resolve '", d.name, "': ", ec ? ec.message() : std::string("no address")));
    return;
  }
  // A line's sources are known by its origin, so a pool that had fewer addresses than
  // maxsources fills up on a later resolution (chrony does the same).
  const auto from_this_line = [&] {
    return static_cast<int>(std::count_if(sources_.begin(), sources_.end(),
                                          [&](const auto& s) { return s->origin == d.origin; }));
  };
  const int limit = d.pool ? d.max_sources : 1;
  int taken = 0;
  for (const auto& entry : results) {
    if (from_this_line() >= limit) break;
    const auto endpoint = entry.endpoint();
    const bool duplicate = std::any_of(sources_.begin(), sources_.end(),
                                       [&](const auto& s) { return s->endpoint == endpoint; });
    if (duplicate) continue;
    const std::string address = endpoint.address().to_string();
    add_source(d.pool ? strcat(d.name, "/", address) : d.name, endpoint, d);
    ++taken;
  }
  const int have = from_this_line();
  if (d.pool && have < limit) {
    resolve_later(
        strcat("pool '", d.name, "' gave ", have, " of maxsources ", limit, " usable address(es)"));
  } else if (taken == 0 && have == 0) {
    log_warning(strcat(d.origin, ": every address of '", d.name,
                       "' is already polled by another source line; not adding it again"));
  }
}

void Engine::add_source(std::string name, const asio::ip::udp::endpoint& endpoint,
                        const SourceDirective& d) {
  ntp::SourceConfig config{name, d.minpoll, d.maxpoll, d.iburst, d.xleave};
  sources_.push_back(std::make_unique<Source>(io_, std::move(name), endpoint, core_, config, d));
  Source& source = *sources_.back();
  find_interface(source);
  log_info(strcat(source.name, ": polling ", endpoint.address().to_string(), " port ",
                  endpoint.port(), ", minpoll ", d.minpoll, " maxpoll ", d.maxpoll,
                  d.iburst ? ", iburst" : "", d.xleave ? ", xleave" : ""));
  poll(source);
}

void Engine::find_interface(Source& source) {
  const asio::ip::udp::endpoint& endpoint = source.endpoint;
  source.ifindex = 0;
  if (const auto ifindex = net::interface_towards(endpoint)) {
    source.ifindex = *ifindex;
    attach_bpf(source.ifindex, endpoint.port());
  } else if (config_.timestamping == TimestampingMode::auto_ ||
             config_.timestamping == TimestampingMode::bpf) {
    log_warning(strcat(source.name, ": no eBPF stamps: ", ifindex.error().message()));
  }
}

void Engine::re_resolve(Source& source) {
  const SourceDirective& d = source.directive;
  if (source.resolving || source.exchange.status().state != ntp::SourceState::unreachable) return;
  boost::system::error_code not_numeric;
  asio::ip::make_address(d.name, not_numeric);
  if (!not_numeric) return;  // an address written as such cannot move
  source.resolving = true;
  log_info(strcat(source.name, ": unreachable at ", source.endpoint.address().to_string(),
                  "; resolving '", d.name, "' again"));
  source.resolver.async_resolve(
      d.name, std::to_string(d.port), asio::ip::udp::resolver::numeric_service,
      [this, &source](const boost::system::error_code& ec,
                      const asio::ip::udp::resolver::results_type& results) {
        source.resolving = false;
        if (ec == asio::error::operation_aborted) return;
        on_re_resolved(source, ec, results);
      });
}

void Engine::on_re_resolved(Source& source, const boost::system::error_code& ec,
                            const asio::ip::udp::resolver::results_type& results) {
  const SourceDirective& d = source.directive;
  const std::string old_address = source.endpoint.address().to_string();
  if (ec || results.empty()) {
    log_warning(strcat(source.name, ": cannot resolve '", d.name,
                       "' again: ", ec ? ec.message() : std::string("no address"),
                       "; staying with ", old_address));
    return;
  }
  // A reply may have come in while the resolver ran.
  if (source.exchange.status().state != ntp::SourceState::unreachable) return;
  const bool still_listed = std::any_of(results.begin(), results.end(), [&](const auto& entry) {
    return entry.endpoint() == source.endpoint;
  });
  // A server line follows its name only when the name left the address (chrony's rule for
  // refreshing a name); a pool swaps an unreachable member for any address it is not using.
  if (still_listed && !d.pool) {
    log_info(strcat(source.name, ": '", d.name, "' still resolves to ", old_address,
                    "; staying with it"));
    return;
  }
  for (const auto& entry : results) {
    const auto endpoint = entry.endpoint();
    const bool in_use = std::any_of(sources_.begin(), sources_.end(),
                                    [&](const auto& s) { return s->endpoint == endpoint; });
    if (in_use) continue;
    replace_address(source, endpoint);
    return;
  }
  log_info(strcat(source.name, ": '", d.name,
                  "' gives no address not polled already; staying with ", old_address));
}

void Engine::replace_address(Source& source, const asio::ip::udp::endpoint& endpoint) {
  const SourceDirective& d = source.directive;
  const std::string old_name = source.name;
  const std::string old_address = source.endpoint.address().to_string();
  const std::string address = endpoint.address().to_string();
  // Everything measured belongs to the old server: start over as a new source would.
  source.timer.cancel();
  source.request.reset();
  source.last_rx.reset();
  source.last_tx.reset();
  source.pending_tx.reset();
  source.endpoint = endpoint;
  if (d.pool) source.name = strcat(d.name, "/", address);
  core_.restart_source(source.id,
                       ntp::SourceConfig{source.name, d.minpoll, d.maxpoll, d.iburst, d.xleave});
  ++source.address_changes;
  log_warning(strcat(old_name, ": unreachable at ", old_address, "; '", d.name,
                     "' now resolves to ", address, ": polling ", address, " instead",
                     d.pool ? strcat(" as ", source.name) : std::string()));
  find_interface(source);
  poll(source);
}

namespace {

// Every local stamp then goes through the core's cooked scale (Timekeeper::cook) before an
// exchange sees it.
// The exchange tells a step of the local clock from time passing by CLOCK_MONOTONIC. A stamp gets
// the monotonic time of its own instant from a back-to-back reading of both clocks, so however
// late it is handled, its (realtime - monotonic) is the clock's at handling time. A reading that
// was preempted between the two clocks is taken again (3 tries, the tightest kept).
ntp::LocalTimestamp with_monotonic(ntp::LocalTimestamp stamp) {
  const auto monotonic_ns = [] {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
  };
  int64_t best_gap_ns = INT64_MAX;
  for (int attempt = 0; attempt < 3 && best_gap_ns > 20000; ++attempt) {
    const int64_t before_ns = monotonic_ns();
    const UtcTime realtime = realtime_now();
    const int64_t after_ns = monotonic_ns();
    if (after_ns - before_ns >= best_gap_ns) continue;
    best_gap_ns = after_ns - before_ns;
    stamp.monotonic = Duration::from_ns(before_ns + best_gap_ns / 2) - (realtime - stamp.time);
  }
  return stamp;
}

}  // namespace

void Engine::poll(Source& source) {
  const ntp::LocalTimestamp now =
      core_.cook(with_monotonic({driver_.now(), ntp::TimestampSource::user, precision_.kernel_log2}));
  carry_out(source, source.exchange.on_timer(now));
  on_source_event(source);
  // While unreachable, the name is resolved again at every poll: as rarely as the back-off polls.
  re_resolve(source);
}

std::optional<ntp::LocalTimestamp> Engine::bpf_stamp(const Source& source,
                                                     std::span<const uint8_t> bytes) {
  const auto it = bpf_.find({source.ifindex, source.endpoint.port()});
  if (it == bpf_.end() || !source.request) return std::nullopt;
  sockaddr_storage remote{};
  std::memcpy(&remote, source.endpoint.data(), source.endpoint.size());
  const auto key = bpf::make_key(remote, source.request->local_port(), bytes);
  if (!key) return std::nullopt;
  const auto tai = it->second.take(*key);
  if (!tai) return std::nullopt;
  // The program stamps CLOCK_TAI; the exchange works in UTC (timescale/tai.hpp: sign, leaps).
  auto utc = timescale::utc_from_tai(*tai, tai_offset_);
  if (!utc) {
    if (!tai_warning_logged_) log_warning(strcat("eBPF stamps unusable: ", utc.error().message()));
    tai_warning_logged_ = true;
    return std::nullopt;
  }
  return ntp::LocalTimestamp{*utc, ntp::TimestampSource::bpf, precision_.kernel_log2};
}

void Engine::on_reply(Source& source, std::span<const uint8_t> bytes, const net::RxStamps& stamps) {
  net::RxCandidates candidates;
  candidates[ntp::TimestampSource::user] = stamps.user;
  candidates[ntp::TimestampSource::kernel] = stamps.kernel;
  candidates[ntp::TimestampSource::bpf] = bpf_stamp(source, bytes);
  const ntp::LocalTimestamp rx = core_.cook(with_monotonic(chooser_.pick(candidates)));
  const ntp::Actions actions = core_.on_packet(source.id, bytes, rx);
  // Only a reply the exchange accepted may teach the chooser or show up in `taictl sources`:
  // anything else may be forged.
  const bool accepted = std::any_of(actions.begin(), actions.end(), [](const ntp::Action& a) {
    return std::holds_alternative<ntp::SampleAccepted>(a);
  });
  if (accepted) {
    chooser_.record(candidates);
    source.last_rx = candidates;
    source.last_tx = source.pending_tx;
    source.pending_answered = true;
  }
  if (auto message = chooser_.take_message()) log_info(*message);
  carry_out(source, actions);
  on_source_event(source);
}

void Engine::on_source_event(Source& source) {
  carry_out_clock(core_.on_source_event(source.id, driver_.now()));
}

// The signing socket's verdict: the core's (Timekeeper::signing_time), after the same check for
// a clock changed behind taid's back that every clock action gets, so a foreign step is never
// signed over.
TimeVerdict Engine::sign_verdict() {
  carry_out_clock({});
  const auto verdict = core_.signing_time(driver_.now(), config_.max_sign_bound);
  if (const auto* refusal = std::get_if<timekeeping::SigningRefusal>(&verdict)) {
    using Why = timekeeping::SigningRefusal::Why;
    const stamp::ReplyCode code = refusal->why == Why::unsynchronized ? stamp::ReplyCode::unsynchronized
                                  : refusal->why == Why::tai_unvouched
                                      ? stamp::ReplyCode::tai_unvouched
                                      : stamp::ReplyCode::bound_too_large;
    return SignRefusal{code, refusal->text};
  }
  const auto& time = std::get<timekeeping::SigningTime>(verdict);
  stamp::BatchTime batch;
  batch.tai_ns = time.tai_ns;
  batch.bound_ns = static_cast<uint64_t>(time.bound.ns());
  batch.leap = time.leap > 0 ? stamp::Leap::insert : time.leap < 0 ? stamp::Leap::remove : stamp::Leap::none;
  batch.status = time.measured ? stamp::SyncStatus::measured : stamp::SyncStatus::synchronized;
  return batch;
}

// RFC 3161 over HTTP. Without a key and certificate a self-signed pair is made (the demo's case);
// one without the other is an error. genTime is UTC: the verdict's TAI less today's table offset
// (the two calls come back to back on this thread, so they agree).
void Engine::start_tsa() {
  TsaSettings settings;
  settings.bind_address = config_.tsabind;
  settings.port = config_.tsaport;
  settings.key_path = config_.tsakey;
  settings.cert_path = config_.tsacert;
  settings.serial_path = config_.tsaserials;
  if (!config_.tsapolicy.empty()) settings.policy_oid = config_.tsapolicy;
  const bool have_key = std::filesystem::exists(settings.key_path);
  const bool have_cert = std::filesystem::exists(settings.cert_path);
  if (!have_key && !have_cert) {
    if (auto made = make_self_signed_tsa(settings.key_path, settings.cert_path); !made) {
      log_warning(strcat("no RFC 3161 service: ", made.error().message()));
      return;
    }
    log_info(strcat("RFC 3161: made a self-signed key and certificate: ", settings.key_path, ", ",
                    settings.cert_path));
  }
  auto utc_of = [this](int64_t tai_ns) -> std::optional<int64_t> {
    const auto& table = core_.leap_table();
    if (!table) return std::nullopt;
    const auto offset = table->offset_at(driver_.now().unix_ns() / 1000000000);
    if (!offset) return std::nullopt;
    return tai_ns - int64_t{*offset} * 1000000000;
  };
  if (auto server = TsaServer::open(io_, settings, [this] { return sign_verdict(); }, utc_of)) {
    tsa_server_ = std::move(*server);
    log_info(strcat("RFC 3161 over HTTP on ", settings.bind_address, " port ", tsa_server_->port(),
                    ", certificate ", settings.cert_path));
  } else {
    log_warning(strcat("no RFC 3161 service: ", server.error().message()));
  }
}

server::ServerClockState Engine::server_clock_state() const {
  const UtcTime now = driver_.now();
  server::ServerClockInputs inputs;
  inputs.now = now;
  // The kernel clock is what is served: its error is the bound plus what is still to slew out
  // (under -x, the measured offset itself).
  inputs.error_bound = core_.error_bound_at(now) + core_.still_to_slew(now).abs();
  inputs.precision_log2 = precision_.kernel_log2;
  inputs.local_stratum = config_.server.local_stratum;
  inputs.local_distance = config_.server.local_distance;
  inputs.observe_only = observe_only();
  return server::server_clock_state(core_.tracking(), inputs);
}

void Engine::start_ntp_server() {
  NtpServerSettings settings;
  settings.bind_addresses = config_.server.bind_addresses;
  settings.port = config_.server.port;
  settings.workers = config_.server.workers;
  settings.responder.access = config_.server.access;
  settings.responder.rate_limit = config_.server.rate_limit;
  // chrony's clientloglimit is in bytes; a slot of the rate limiter's table is about 48.
  settings.responder.rate_limit_entries = std::max<std::size_t>(config_.server.client_log_bytes / 48, 4);
  settings.responder.random_seed = std::random_device{}();
  settings.stamp_policy = config_.timestamping;
  settings.kernel_precision_log2 = precision_.kernel_log2;
  // eBPF stamps of requests on every interface up now (an interface that comes later is served
  // with kernel stamps). The XDP fast path's interfaces keep their XDP hook for it.
  RequestStampLookup lookup;
  if (config_.timestamping == TimestampingMode::auto_ ||
      config_.timestamping == TimestampingMode::bpf) {
    auto names = net::interface_names();
    for (const std::string& name : names ? *names : std::vector<std::string>{}) {
      const int ifindex = static_cast<int>(::if_nametoindex(name.c_str()));
      if (ifindex == 0) continue;
      std::string errors;
      if (auto program =
              attach_rx_program(ifindex, config_.server.port, bpf::Stamped::requests, errors))
        server_bpf_.emplace(ifindex, std::move(*program));
      else
        log_warning(strcat("eBPF RX timestamps of requests unavailable on ", name, ": ", errors,
                           " — kernel stamps there"));
    }
    if (!server_bpf_.empty()) {
      lookup = [this](const server::ClientAddress& client, uint16_t local_port, int ifindex,
                      std::span<const uint8_t> bytes) -> std::optional<TaiTime> {
        const auto it = server_bpf_.find(ifindex);
        if (it == server_bpf_.end() || bytes.size() < ntp::kHeaderSize) return std::nullopt;
        rx_ts_key key{};
        std::memcpy(key.addr, client.address.data(), 16);
        key.remote_port = client.port;
        key.local_port = local_port;
        std::memcpy(&key.transmit_ts, bytes.data() + RX_TS_NTP_TRANSMIT_OFFSET, 8);
        return it->second.take(key);
      };
    }
  }
  // The XDP path answers a client up to its rate and passes the excess up: that client is over
  // the limit already, and must not get a second burst from the user path's limiter.
  OverLimitLookup over_limit;
  if (!config_.server.xdp_interfaces.empty() && config_.server.rate_limit) {
    over_limit = [this](const server::ClientAddress& client, int ifindex, int64_t now_ns) {
      for (const XdpPath& path : xdp_servers_) {
        if (path.program.ifindex() == ifindex)
          return path.program.client_over_limit(client.address, static_cast<uint64_t>(now_ns));
      }
      return false;
    };
  }
  // The XDP programs first: the workers read xdp_servers_, which must not change once they run.
  for (const XdpServerDirective& xdp : config_.server.xdp_interfaces) start_xdp_server(xdp);
  auto server = NtpServer::open(std::move(settings), server_clock_state(), std::move(lookup),
                                std::move(over_limit));
  if (!server) {
    xdp_servers_.clear();  // no fast path without the server behind it
    log_error(strcat("no NTP server: ", server.error().message()));
    return;
  }
  ntp_server_ = std::move(*server);
  const NtpServerStats stats = ntp_server_->stats();
  std::string listening;
  for (const std::string& l : stats.listening) listening += (listening.empty() ? "" : " ") + l;
  log_info(strcat("NTP server on ", listening, " (", stats.workers, " worker(s))",
                  config_.server.local_stratum
                      ? strcat(", local stratum ", int{*config_.server.local_stratum})
                      : std::string()));
}

// Native XDP first (in the driver: the earliest T2, the fastest path), generic where the driver has
// none, or the mode the line names. Errors leave the user path serving alone, and say why.
void Engine::start_xdp_server(const XdpServerDirective& xdp) {
  const std::string& interface = xdp.interface;
  const int ifindex = static_cast<int>(::if_nametoindex(interface.c_str()));
  if (ifindex == 0) {
    log_error(strcat("xdpserver ", interface, ": no such interface; the user path serves alone"));
    return;
  }
  using Mode = XdpServerDirective::Mode;
  auto program = bpf::XdpServer::attach(
      ifindex, xdp.mode == Mode::generic ? bpf::XdpMode::generic : bpf::XdpMode::native,
      config_.server.port);
  if (!program && xdp.mode == Mode::native_first) {
    const std::string native_error = program.error().message();
    program = bpf::XdpServer::attach(ifindex, bpf::XdpMode::generic, config_.server.port);
    if (!program) {
      log_error(strcat("xdpserver ", interface, ": ", native_error, "; generic: ",
                       program.error().message(), "; the user path serves alone"));
      return;
    }
    log_info(strcat("xdpserver ", interface, ": native XDP refused (", native_error,
                    "), generic XDP attached"));
  }
  if (!program) {
    log_error(strcat("xdpserver ", interface, ": ", program.error().message(),
                     "; the user path serves alone"));
    return;
  }
  // veth hands a native XDP_TX frame to its peer's NAPI ring, which exists only while the peer
  // runs an XDP program of its own; otherwise the reply is dropped without a word.
  if (program->mode() == bpf::XdpMode::native) {
    if (const auto driver = net::interface_driver(interface); driver && *driver == "veth")
      log_warning(strcat("xdpserver ", interface, ": a veth; native XDP replies reach its peer "
                         "only while the peer runs an XDP program (bpf/xdp_pass.bpf.o), else "
                         "write 'xdpserver ", interface, " generic'"));
  }
  std::vector<bpf::XdpPrefix> rules;
  for (const server::AccessPrefix& p : config_.server.access.longest_prefix_table())
    rules.push_back({p.address, p.prefix_len, p.allow});
  if (auto set = program->set_access(rules); !set) {
    log_error(strcat("xdpserver ", interface, ": access rules: ", set.error().message(),
                     "; the user path serves alone"));
    return;
  }
  std::optional<bpf::XdpRateLimit> limit;
  if (config_.server.rate_limit)
    limit = bpf::XdpRateLimit{config_.server.rate_limit->interval_log2,
                              static_cast<uint32_t>(config_.server.rate_limit->burst)};
  if (auto set = program->set_rate_limit(limit); !set) {
    log_error(strcat("xdpserver ", interface, ": rate limit: ", set.error().message(),
                     "; the user path serves alone"));
    return;
  }
  log_info(strcat("xdpserver ", interface, ": ", bpf::to_string(program->mode()),
                  " XDP answers plain requests on port ", config_.server.port, " (program id ",
                  program->program_id(), ")"));
  xdp_servers_.push_back({interface, std::move(*program)});
  update_xdp_clocks(server_clock_state());
}

// The program turns CLOCK_TAI into UTC with the kernel's offset, so that is the one it gets (the
// kernel's clocks are what it serves). Within 2 s of a leap second the offset changes at an
// instant a map update cannot hit: the program stands aside and the user path answers.
void Engine::update_xdp_clocks(const server::ServerClockState& state) {
  if (xdp_servers_.empty()) return;
  bpf::XdpClock clock;
  const auto offset = tai_offset_.tai_offset_s();
  const auto& tracking = core_.tracking();
  const UtcTime now = driver_.now();
  const bool near_leap =
      tracking.leap_at && (now - *tracking.leap_at).abs() < Duration::from_s(2);
  clock.valid = offset.ok() && !near_leap;
  clock.leap = static_cast<uint8_t>(state.leap);
  clock.stratum = state.stratum;
  clock.precision_log2 = state.precision_log2;
  clock.reference_id = state.reference_id;
  clock.root_delay = state.root_delay;
  clock.root_dispersion = state.root_dispersion;
  clock.reference_time = state.reference_time;
  clock.tai_offset_s = offset.ok() ? *offset : 0;
  for (XdpPath& path : xdp_servers_) {
    if (auto set = path.program.set_clock(clock); !set)
      log_warning(strcat("xdpserver ", path.interface, ": ", set.error().message()));
  }
}

json Engine::serverstats_json() const {
  json j;
  j["enabled"] = ntp_server_ != nullptr;
  if (!ntp_server_) return j;
  const NtpServerStats s = ntp_server_->stats();
  j["listening"] = s.listening;
  j["workers"] = s.workers;
  j["received"] = s.responder.received + s.oversized;  // every datagram, as chronyc counts
  j["replied"] = s.responder.replied;
  j["interleaved"] = s.responder.interleaved;
  j["kiss_of_death"] = s.responder.kiss_of_death;
  json dropped = json::object();
  for (std::size_t i = 0; i < server::kDropReasons; ++i)
    dropped[std::string(server::to_string(static_cast<server::Drop>(i)))] = s.responder.dropped[i];
  dropped["oversized"] = s.oversized;
  j["dropped"] = dropped;
  j["rx_kernel_stamps"] = s.rx_kernel_stamps;
  j["rx_bpf_stamps"] = s.rx_bpf_stamps;
  j["rx_user_stamps"] = s.rx_user_stamps;
  j["tx_stamps"] = s.tx_stamps;
  j["stamp_path"] = std::string(ntp::to_string(s.stamp_path));
  j["stamp_decided"] = s.stamp_decided;
  json lateness = json::array();
  for (const net::PathLateness& l : s.stamp_lateness)
    lateness.push_back({{"path", std::string(ntp::to_string(l.source))},
                        {"requests", l.replies},
                        {"median_lateness_ns", l.median_lateness.ns()}});
  j["stamp_lateness"] = lateness;
  j["send_errors"] = s.send_errors;
  j["receive_errors"] = s.receive_errors;
  if (!xdp_servers_.empty()) {
    json xdp;
    std::string interfaces;
    json passed = json::object();
    uint64_t answered = 0;
    for (const XdpPath& path : xdp_servers_) {
      interfaces += strcat(interfaces.empty() ? "" : " ", path.interface, " (",
                           bpf::to_string(path.program.mode()), ")");
      const auto stats = path.program.stats();
      if (!stats) continue;
      answered += (*stats)[XDP_NTP_ANSWERED];
      for (std::size_t i = 1; i < XDP_NTP_STAT_COUNT; ++i) {
        const std::string reason(bpf::to_string(static_cast<xdp_ntp_stat>(i)));
        passed[reason] = passed.value(reason, uint64_t{0}) + stats->count[i];
      }
    }
    xdp["interfaces"] = interfaces;
    xdp["answered"] = answered;
    xdp["passed"] = passed;
    j["xdp"] = xdp;
  }
  const server::ServerClockState c = server_clock_state();
  j["advertised"] = {{"leap", static_cast<int>(c.leap)},
                     {"stratum", c.stratum},
                     {"reference_id", ntp::reference_id_to_string(c.reference_id, c.stratum)},
                     {"root_delay_ns", c.root_delay.to_duration().ns()},
                     {"root_dispersion_ns", c.root_dispersion.to_duration().ns()}};
  return j;
}

// The record readers turn into [earliest, latest] TAI (Engine::bound, as of the last update).
void Engine::publish_clock_record() {
  if (ntp_server_) {
    const server::ServerClockState state = server_clock_state();
    ntp_server_->set_clock(state);
    update_xdp_clocks(state);
  }
  if (!clock_record_) return;
  timespec mono{};
  clock_gettime(CLOCK_MONOTONIC, &mono);
  const int64_t mono_ns = static_cast<int64_t>(mono.tv_sec) * 1000000000 + mono.tv_nsec;
  const timekeeping::Tracking& t = core_.tracking();
  publish::ClockRecordValues v;
  v.void_after_mono_ns = mono_ns + publish::kValidityNs;
  // As of the last update: the bound then, growing by the core's drift rate (maxclockerror is in
  // it already, so the writer adds no more).
  v.max_drift_ppb = publish::max_drift_ppb(0, core_.drift_ppb());
  // Readers read the raw clock: the slew's remainder is part of its error (it only shrinks until
  // the next publication).
  v.bound_ns = (t.error_bound + core_.still_to_slew(driver_.now()).abs()).ns();
  v.as_of_mono_ns = mono_ns;
  if (t.last_update)
    v.as_of_mono_ns -= std::max<int64_t>((driver_.now() - *t.last_update).ns(), 0);
  const auto kernel = driver_.state();
  v.tai_offset_s = kernel ? kernel->tai_offset_s : t.tai_offset_s;
  v.tai_vouched = t.tai_vouched && kernel && kernel->tai_offset_s == t.tai_offset_s;
  v.status = t.disrupted            ? publish::ClockStatus::disrupted
             : t.synchronized       ? publish::ClockStatus::synchronized
             : t.updates > 0        ? publish::ClockStatus::free_running
                                    : publish::ClockStatus::unknown;
  clock_record_->publish(v);
}

void Engine::schedule_record_heartbeat() {
  record_timer_.expires_after(std::chrono::nanoseconds(publish::kHeartbeatNs));
  record_timer_.async_wait([this](const boost::system::error_code& ec) {
    if (ec) return;
    publish_clock_record();
    schedule_record_heartbeat();
  });
}

void Engine::carry_out_clock(const timekeeping::Actions& actions) {
  for (const timekeeping::Action& action :
       timekeeping::apply_clock_actions(actions, driver_, core_)) {
    if (const auto* timer = std::get_if<timekeeping::SetTimer>(&action)) {
      core_timer_.expires_after(std::chrono::nanoseconds(timer->after.ns()));
      core_timer_.async_wait([this](const boost::system::error_code& ec) {
        if (!ec) carry_out_clock(core_.on_timer(driver_.now()));
      });
    } else if (const auto* line = std::get_if<timekeeping::LogLine>(&action)) {
      log(line->warning ? LogLevel::warning : LogLevel::info, line->text);
    } else if (const auto* stop = std::get_if<timekeeping::Stop>(&action)) {
      log_error(strcat("stopping: ", stop->reason));
      stop_reason_ = stop->reason;
      io_.stop();
    } else if (const auto* poll_now = std::get_if<timekeeping::PollNow>(&action)) {
      // The source's poll timer is replaced by a poll as soon as this handler returns (not
      // from inside it: poll() reaches the core again).
      for (const auto& source : sources_) {
        if (source->id != poll_now->id) continue;
        Source& s = *source;
        s.timer.expires_after(std::chrono::nanoseconds(0));
        s.timer.async_wait([this, &s](const boost::system::error_code& ec) {
          if (!ec) poll(s);
        });
      }
    }
  }
  // After the clock changed, never before: a reader takes the record, then the clock, so the
  // old record (its bound holding the offset) covers a step until this one replaces it.
  publish_clock_record();
}

void Engine::write_measurement(const Source& source, const ntp::SampleAccepted& accepted) {
  const ntp::Sample& s = accepted.sample;
  if (!measurements_.is_open()) return;
  measurements_ << s.time.to_string() << ',' << source.name << ',' << s.offset.ns() << ','
                << s.delay.ns() << ',' << s.dispersion.ns() << ',' << ntp::to_string(s.rx_source)
                << ',' << ntp::to_string(s.tx_source) << ',' << (s.interleaved ? 1 : 0) << ','
                << int{s.stratum} << ',';
  if (accepted.released) measurements_ << accepted.released->offset.ns();
  measurements_ << ',';
  if (const auto& e = accepted.envelope)
    measurements_ << e->offset.ns() << ',' << std::llround(e->frequency * 1e9) << ','
                  << e->half_min_delay.ns();
  else
    measurements_ << ",,";
  measurements_ << '\n' << std::flush;
}

void Engine::carry_out(Source& source, const ntp::Actions& actions) {
  for (const ntp::Action& action : actions) {
    if (const auto* send = std::get_if<ntp::SendRequest>(&action)) {
      // A fresh socket per request: a late reply to the previous one can no longer arrive.
      net::UdpRequest::OnTransmitStamp on_transmit;
      if (config_.timestamping != TimestampingMode::user) {
        on_transmit = [this, &source](ntp::LocalTimestamp tx) {
          source.pending_tx = tx;
          if (source.pending_answered) source.last_tx = tx;  // the reply came first
          source.exchange.on_transmit_timestamp(core_.cook(with_monotonic(tx)));
        };
      }
      auto opened = net::UdpRequest::open(
          io_, source.endpoint, precision_,
          [this, &source](std::span<const uint8_t> bytes, const net::RxStamps& stamps) {
            on_reply(source, bytes, stamps);
          },
          std::move(on_transmit));
      if (!opened) {
        source.request.reset();
        log_warning(strcat(source.name, ": ", opened.error().message()));
        continue;
      }
      source.request = std::move(opened.value());
      source.request->count_drops_in(source.drops);
      source.pending_tx.reset();
      source.pending_answered = false;
      auto sent = source.request->send(send->bytes);
      if (!sent) {
        log_warning(strcat(source.name, ": ", sent.error().message()));
        continue;
      }
      // The stamp send() takes just before the syscall is closer to the wire than the one taken
      // before on_timer; a kernel TX stamp, when it comes, replaces both.
      source.exchange.on_transmit_timestamp(
          core_.cook(with_monotonic({*sent, ntp::TimestampSource::user, precision_.user_log2})));
    } else if (const auto* timer = std::get_if<ntp::SetTimer>(&action)) {
      source.timer.expires_after(std::chrono::nanoseconds(timer->after.ns()));
      source.timer.async_wait([this, &source](const boost::system::error_code& ec) {
        if (!ec) poll(source);
      });
    } else if (const auto* accepted = std::get_if<ntp::SampleAccepted>(&action)) {
      const ntp::Sample& s = accepted->sample;
      write_measurement(source, *accepted);
      std::string line =
          strcat("sample ", source.name, ": offset ", s.offset.to_string(), " delay ",
                 s.delay.to_string(), " disp ", s.dispersion.to_string(),
                 " rx=", ntp::to_string(s.rx_source), " tx=", ntp::to_string(s.tx_source),
                 s.interleaved ? " interleaved" : "", " stratum ", int{s.stratum});
      if (accepted->released)
        line += strcat(" | filter offset ", accepted->released->offset.to_string(), " delay ",
                       accepted->released->delay.to_string(), " jitter ",
                       accepted->released->jitter.to_string());
      if (const auto& e = accepted->envelope)
        line += strcat(" | envelope offset ", e->offset.to_string(), " freq ",
                       std::llround(e->frequency * 1e9), " ppb over ", e->samples, " samples");
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
    case ntp::Leap::none:
      return "none";
    case ntp::Leap::add_second:
      return "insert";
    case ntp::Leap::delete_second:
      return "delete";
    case ntp::Leap::unsynchronized:
      return "unsynchronized";
  }
  return "?";
}

json envelope_json(const filter::EnvelopeEstimate& e, UtcTime now) {
  return json{{"offset_ns", e.offset.ns()},
              {"frequency_ppb", std::llround(e.frequency * 1e9)},
              {"half_min_delay_ns", e.half_min_delay.ns()},
              {"samples", e.samples},
              {"span_s", e.span.seconds()},
              {"age_s", (now - e.time).seconds()}};
}

// Estimated error of one measurement: half the round trip plus its dispersion.
Duration sample_error(const ntp::Sample& s) { return s.delay / 2 + s.dispersion; }

json options_json(const selection::Options& o) {
  json list = json::array();
  if (o.prefer) list.push_back("prefer");
  if (o.noselect) list.push_back("noselect");
  if (o.trust) list.push_back("trust");
  if (o.require) list.push_back("require");
  return list;
}

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
           {"mark", std::string(1, static_cast<char>(mark_of(source->id)))},
           {"options", options_json(source->directive.options)},
           {"poll_log2_s", st.poll_log2_s},
           {"reach", st.reach},
           {"reach_octal", octal(st.reach)},
           {"requests", st.requests_sent},
           {"samples", st.samples},
           {"rejected", st.rejected},
           {"interleaved_samples", st.interleaved_samples},
           {"last_rejection", st.last_rejection},
           {"resolved_from", source->directive.name},
           {"address_changes", source->address_changes},
           {"dropped_short_datagrams", source->drops.short_datagrams},
           {"dropped_oversized_datagrams", source->drops.oversized_datagrams}};
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
      j["tx_timestamp_source"] = ntp::to_string(s.tx_source);
      j["interleaved"] = s.interleaved;
      j["root_delay_ns"] = s.root_delay.ns();
      j["root_dispersion_ns"] = s.root_dispersion.ns();
    }
    // offset_ns is the source's estimate, as in tracking; delay, dispersion and jitter are the
    // clock filter's.
    if (const auto offset = source->exchange.offset_estimate()) {
      j["estimator"] = offset->estimator;
      j["offset_ns"] = offset->offset.ns();
    }
    const auto& envelope = source->exchange.envelope().estimate();
    if (const auto& estimate = source->exchange.filter().estimate()) {
      j["filter_offset_ns"] = estimate->offset.ns();
      j["delay_ns"] = estimate->delay.ns();
      j["dispersion_ns"] = source->exchange.filter().dispersion_at(now).ns();
      j["jitter_ns"] = estimate->jitter.ns();
    }
    if (envelope) j["envelope"] = envelope_json(*envelope, now);
    // Every stamp the last reply had and the last request's kernel TX stamp, as UTC ns since
    // the Unix epoch, so a reader can see how far apart the paths are.
    json stamps = json::object();
    if (source->last_tx) stamps["tx_kernel_unix_ns"] = source->last_tx->time.unix_ns();
    if (source->last_rx) {
      for (const auto& c : source->last_rx->by_source)
        if (c) stamps[strcat("rx_", ntp::to_string(c->source), "_unix_ns")] = c->time.unix_ns();
    }
    j["last_stamps"] = std::move(stamps);
    list.push_back(std::move(j));
  }
  return json{{"sources", std::move(list)}};
}

const Engine::Source* Engine::system_peer() const {
  // The core's reference: selection's system peer at the last update (while synchronized).
  const auto& reference = core_.tracking().reference;
  if (!reference) return nullptr;
  for (const auto& source : sources_)
    if (source->id == *reference) return source.get();
  return nullptr;
}

selection::Mark Engine::mark_of(timekeeping::SourceId id) const {
  for (const timekeeping::SourceView& view : core_.sources())
    if (view.id == id) return view.mark;
  return selection::Mark::unusable;
}

json Engine::sourcestats_json() const {
  // chronyc sourcestats: per source, the statistics the estimate comes from — here the delay
  // envelope's window (samples, span, residual frequency) and the clock filter's jitter.
  json list = json::array();
  const UtcTime now = driver_.now();
  for (const auto& source : sources_) {
    json j{{"name", source->name}, {"address", source->endpoint.address().to_string()}};
    const auto& envelope = source->exchange.envelope();
    j["samples"] = envelope.size();
    j["envelope_restarts"] = envelope.restarts();
    if (const auto& e = envelope.estimate()) {
      j["span_s"] = e->span.seconds();
      j["residual_frequency_ppb"] = e->frequency * 1e9;
      j["half_min_delay_ns"] = e->half_min_delay.ns();
      j["mean_queueing_ns"] = e->mean_excess.ns();
      if (auto bound = envelope.error_bound()) j["error_bound_ns"] = bound->ns();
    }
    if (const auto offset = source->exchange.offset_estimate()) {
      j["offset_ns"] = offset->offset.ns();
      j["estimator"] = offset->estimator;
      j["age_s"] = (now - offset->time).seconds();
    }
    if (const auto& f = source->exchange.filter().estimate()) j["std_dev_ns"] = f->jitter.ns();
    list.push_back(std::move(j));
  }
  return json{{"sourcestats", std::move(list)}};
}

json Engine::tracking_json() const {
  json j{{"mode", observe_only() ? "observe" : "discipline"}, {"clock_driver", driver_.name()}};
  if (observe_only()) j["observe_reason"] = *observe_reason_;
  const timekeeping::Tracking& t = core_.tracking();
  j["synchronized"] = t.synchronized;
  // Under -x the servo never runs: say so rather than show a state it never had.
  j["servo"] = observe_only() ? "none" : servo::to_string(config_.timekeeping.servo_kind);
  j["servo_state"] = observe_only() ? "observe only" : servo::to_string(t.servo_state);
  j["updates"] = t.updates;
  j["steps"] = t.steps;
  j["system_time_offset_ns"] = t.system_offset.ns();
  // The core's (chronyc tracking's) quantities; the peer's own follow below.
  j["update_offset_ns"] = t.last_offset.ns();
  j["rms_offset_ns"] = t.rms_offset.ns();
  j["clock_frequency_ppb"] = t.frequency_ppb;
  j["residual_frequency_ppb"] = t.residual_frequency_ppb;
  j["skew_ppb"] = t.skew_ppb;
  j["update_interval_s"] = t.update_interval.seconds();
  j["error_bound_ns"] = t.error_bound.ns();
  if (!t.no_selection_reason.empty()) j["no_selection"] = t.no_selection_reason;
  json paths = json::array();
  for (const net::PathLateness& p : chooser_.lateness())
    paths.push_back({{"source", ntp::to_string(p.source)},
                     {"replies", p.replies},
                     {"median_lateness_ns", p.median_lateness.ns()}});
  json attached = json::array();
  for (const auto& [where, program] : bpf_)
    attached.push_back({{"interface", net::interface_name(where.first)},
                        {"port", where.second},
                        {"attach", bpf::to_string(program.mode())},
                        {"program_id", program.program_id()}});
  j["timestamping"] = {
      {"mode", to_string(config_.timestamping)},
      {"rx_path", ntp::to_string(chooser_.current())},
      {"decided", chooser_.decided() || config_.timestamping != TimestampingMode::auto_},
      {"measured_paths", std::move(paths)},
      {"bpf_programs", std::move(attached)},
      {"bpf_error", bpf_error_},
      {"hardware", hardware_notes_}};
  if (drift_file_) j["drift_file_freq_ppm"] = drift_file_->frequency_ppm;
  json tai{{"offset_s", t.tai_offset_s},
           {"vouched", t.tai_vouched},
           {"note", t.tai_note},
           {"table", t.leap_table},
           {"leapsecmode", timekeeping::to_string(t.leap_mode)},
           {"leap_armed", t.leap_armed > 0 ? "insert" : t.leap_armed < 0 ? "delete" : "none"},
           {"leap_seconds", t.leap_seconds},
           {"replies_dropped_near_leap", t.replies_dropped_near_leap}};
  if (t.table_tai_offset_s) tai["table_offset_s"] = *t.table_tai_offset_s;
  if (t.leap_at) tai["leap_at"] = t.leap_at->to_string();
  if (!t.leap_from.empty()) tai["leap_from"] = t.leap_from;
  if (auto kernel = driver_.state()) tai["kernel_offset_s"] = kernel->tai_offset_s;
  j["tai"] = std::move(tai);
  const Source* peer = system_peer();
  if (!peer) {
    j["reference"] = nullptr;
    j["stratum"] = 16;
    j["leap"] = "unsynchronized";
    return j;
  }
  const UtcTime now = driver_.now();
  const ntp::Sample& s = *peer->exchange.status().last_sample;
  const filter::Estimate& e = *peer->exchange.filter().estimate();
  const Duration root_delay = s.root_delay + e.delay;
  const Duration root_dispersion =
      s.root_dispersion + peer->exchange.filter().dispersion_at(now) + e.jitter;
  j["reference"] = peer->name;
  j["reference_id"] = ntp::reference_id_to_string(s.reference_id, s.stratum);
  j["address"] = peer->endpoint.address().to_string();
  j["stratum"] = s.stratum + 1;
  j["leap"] = leap_name(s.leap);
  // Observe only: the offset is measured, never corrected. Positive: the local clock is behind.
  // The offset is the source's estimate (Exchange::offset_estimate); jitter, root delay and
  // dispersion stay the clock filter's: the RFC 5905 quantities root distance is defined on.
  const ntp::OffsetEstimate offset = *peer->exchange.offset_estimate();  // the filter released
  j["estimator"] = offset.estimator;
  j["offset_ns"] = offset.offset.ns();
  const auto& envelope = peer->exchange.envelope().estimate();
  if (envelope) {
    j["frequency_ppb"] = std::llround(envelope->frequency * 1e9);
    j["envelope"] = envelope_json(*envelope, now);
  }
  j["filter_offset_ns"] = e.offset.ns();
  j["last_offset_ns"] = s.offset.ns();
  j["jitter_ns"] = e.jitter.ns();
  j["peer_root_delay_ns"] = root_delay.ns();
  j["peer_root_dispersion_ns"] = root_dispersion.ns();
  // The system's (selection's combination, as chronyc tracking shows them).
  j["root_delay_ns"] = t.root_delay.ns();
  j["root_dispersion_ns"] = t.root_dispersion.ns();
  j["root_distance_ns"] = (t.root_delay / 2 + t.root_dispersion).ns();
  j["poll_log2_s"] = peer->exchange.status().poll_log2_s;
  j["last_update"] = offset.time.to_string();
  j["update_age_s"] = (now - offset.time).seconds();
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
  if (const auto& estimate = source.exchange.filter().estimate()) {
    j["offset_ns"] = estimate->offset.ns();
    j["delay_ns"] = estimate->delay.ns();
    j["dispersion_ns"] = source.exchange.filter().dispersion_at(now).ns();
    j["jitter_ns"] = estimate->jitter.ns();
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

// `tai LABEL`: the TAI instant of a UTC label (23:59:60 included); `utc LABEL`: the UTC label of
// a TAI instant written as a calendar date on the TAI scale. Both with the daemon's table.
json Engine::convert_json(std::string_view direction, std::string_view argument) const {
  const auto& table = core_.leap_table();
  const timekeeping::Tracking& t = core_.tracking();
  if (!table) return json{{"error", t.leap_table.empty() ? "no leap table" : t.leap_table}};
  auto label = timescale::parse_utc_label(argument);
  if (!label) return json{{"error", strcat(direction, ": ", label.error().message())}};
  const auto tai_label = [](TaiTime tai) {
    std::string text = timescale::to_string(
        timescale::utc_label_from_posix(UtcTime::from_unix_ns(tai.tai_ns())));
    text.back() = ' ';
    return text + "TAI";
  };
  json j{{"table", table->origin}};
  if (direction == "tai") {
    auto tai = timescale::tai_from_utc(*label, *table);
    if (!tai) return json{{"error", strcat("tai: ", tai.error().message())}};
    j["utc"] = timescale::to_string(*label);
    j["tai"] = tai_label(*tai);
    j["tai_ns"] = tai->tai_ns();
    j["tai_minus_utc_s"] =
        (*tai - TaiTime::from_utc(timescale::posix_from_label(*label), Duration{})).ns() /
        1000000000;
    j["covered"] = table->covers(timescale::posix_from_label(*label).unix_ns() / 1000000000);
  } else {
    const TaiTime tai = TaiTime::from_tai_ns(timescale::posix_from_label(*label).unix_ns());
    auto utc = timescale::utc_from_tai(tai, *table);
    if (!utc) return json{{"error", strcat("utc: ", utc.error().message())}};
    j["tai"] = tai_label(tai);
    j["tai_ns"] = tai.tai_ns();
    j["utc"] = timescale::to_string(*utc);
    j["tai_minus_utc_s"] =
        (tai - TaiTime::from_utc(timescale::posix_from_label(*utc), Duration{})).ns() / 1000000000;
    j["covered"] = table->covers(timescale::posix_from_label(*utc).unix_ns() / 1000000000);
  }
  return j;
}

json Engine::query(std::string_view request) {
  std::istringstream in{std::string(request)};
  std::string command, argument, extra;
  in >> command >> argument >> extra;
  if (command == "sources" && argument.empty()) return sources_json();
  if (command == "tracking" && argument.empty()) return tracking_json();
  if (command == "sourcestats" && argument.empty()) return sourcestats_json();
  if (command == "kernel" && argument.empty()) return kernel_json();
  if (command == "serverstats" && argument.empty()) return serverstats_json();
  if (command == "filter" && !argument.empty() && extra.empty()) return filter_json(argument);
  if (command == "filter") return json{{"error", "filter: needs exactly one source name"}};
  if ((command == "tai" || command == "utc") && !argument.empty() && extra.empty())
    return convert_json(command, argument);
  if (command == "tai" || command == "utc")
    return json{{"error", strcat(command, ": needs exactly one time, e.g. 2016-12-31T23:59:60Z")}};
  return json{{"error", strcat("unknown request '", request.substr(0, 64),
                               "' (known: sources, tracking, sourcestats, filter NAME, kernel, serverstats, "
                               "tai UTC-TIME, utc TAI-TIME)")}};
}

}  // namespace taid::daemon
