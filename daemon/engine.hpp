// The engine: owns one Exchange per source and carries out its actions with Asio sockets and
// timers; answers the control socket's queries as JSON.
//
// This is the I/O edge of the pipeline. The protocol decisions live in lib/ntp (sans-IO); the
// engine only turns SetTimer into a steady_timer, SendRequest into a fresh-port UDP request, and
// receive events (with their kernel or user-space stamps) back into the exchange.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/udp.hpp>
#include <boost/asio/ip/basic_resolver.hpp>
#include <boost/asio/steady_timer.hpp>
#include <nlohmann/json.hpp>

#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "bpf/rx_timestamper.hpp"
#include "bpf/xdp_server.hpp"
#include "clock/clock_driver.hpp"
#include "daemon/config.hpp"
#include "daemon/drift_file.hpp"
#include "net/hw_timestamping.hpp"
#include "net/stamp_choice.hpp"
#include "net/udp_client.hpp"
#include "ntp/exchange.hpp"
#include "daemon/ntp_server.hpp"
#include "server/server_clock_state.hpp"
#include "daemon/sign_server.hpp"
#include "daemon/tsa_server.hpp"
#include "publish/shm_clock_writer.hpp"
#include "timescale/tai.hpp"
#include "timekeeping/timekeeper.hpp"

namespace taid::daemon {

class Engine {
 public:
  // `observe_reason` set: the clock is measured and never written, and this says why ("-x",
  // "no CAP_SYS_TIME"; shown by `taictl tracking`). nullopt: the timekeeping core steers the clock
  // through `driver`.
  Engine(boost::asio::io_context& io, Config config, clock::ClockDriver& driver,
         std::optional<std::string> observe_reason);
  ~Engine();  // writes the drift file when disciplining

  // Resolves the configured sources and starts polling them.
  void start();

  // Control-socket queries: "sources", "sourcestats", "tracking", "filter NAME", "kernel". Bad
  // requests get {"error": "..."}; nothing a client sends can stop the engine.
  nlohmann::json query(std::string_view request);

  // Set when the core asked to stop (maxchange exhausted): main() exits with it, as chronyd does.
  const std::optional<std::string>& stop_reason() const { return stop_reason_; }

  nlohmann::json sources_json() const;
  nlohmann::json sourcestats_json() const;
  nlohmann::json tracking_json() const;
  nlohmann::json filter_json(std::string_view name) const;
  nlohmann::json kernel_json() const;
  nlohmann::json serverstats_json() const;

 private:
  struct Source;
  struct Pending;  // a server/pool line waiting for its name to resolve

  void resolve(Pending& pending);
  void on_resolved(Pending& pending, const boost::system::error_code& ec,
                   const boost::asio::ip::udp::resolver::results_type& results);
  void add_source(std::string name, const boost::asio::ip::udp::endpoint& endpoint,
                  const SourceDirective& directive);
  // Where the source's replies come in (and the eBPF program for them).
  void find_interface(Source& source);
  // A source that is unreachable resolves its name again; when the name has moved (a server) or
  // offers an unused address (a pool), the source starts over at the new address.
  void re_resolve(Source& source);
  void on_re_resolved(Source& source, const boost::system::error_code& ec,
                      const boost::asio::ip::udp::resolver::results_type& results);
  void replace_address(Source& source, const boost::asio::ip::udp::endpoint& endpoint);
  void poll(Source& source);
  void on_reply(Source& source, std::span<const uint8_t> bytes, const net::RxStamps& stamps);
  std::optional<ntp::LocalTimestamp> bpf_stamp(const Source& source,
                                               std::span<const uint8_t> bytes);
  void set_up_timestamping();
  void attach_bpf(int ifindex, uint16_t port);
  // The eBPF RX program in the order bpfattach asks; `errors` collects why each try failed.
  std::optional<bpf::RxTimestamper> attach_rx_program(int ifindex, uint16_t port,
                                                      bpf::Stamped what, std::string& errors);
  void write_measurement(const Source& source, const ntp::SampleAccepted& accepted);
  void carry_out(Source& source, const ntp::Actions& actions);
  const Source* system_peer() const;
  selection::Mark mark_of(timekeeping::SourceId id) const;
  // After a source's exchange was fed: the core selects and may update the clock.
  void on_source_event(Source& source);
  void carry_out_clock(const timekeeping::Actions& actions);
  // The drift file: read at start (before the core, which starts from it), written every hour
  // and at exit (disciplining only).
  void write_drift_file();
  void schedule_drift_write();
  // The leap table file: read again when it changes (stat every 10 s).
  struct FileStat {
    bool exists = false;
    uint64_t inode = 0;
    int64_t size = 0;
    int64_t mtime_ns = 0;
    friend bool operator==(const FileStat&, const FileStat&) = default;
  };
  static FileStat stat_of(const std::string& path);
  void schedule_leap_table_check();
  // Conversions with the daemon's leap table (`taictl tai` / `taictl utc`).
  nlohmann::json convert_json(std::string_view direction, std::string_view argument) const;

  boost::asio::io_context& io_;
  Config config_;
  clock::ClockDriver& driver_;
  const std::optional<std::string> observe_reason_;
  bool observe_only() const { return observe_reason_.has_value(); }
  std::optional<DriftFile> drift_file_;  // as read at start
  timekeeping::Timekeeper core_;
  boost::asio::steady_timer core_timer_;
  boost::asio::steady_timer drift_timer_;
  boost::asio::steady_timer leap_table_timer_;
  // The shared-memory clock record (clockrecord): published after every clock change and once a
  // second.
  std::optional<publish::ShmClockWriter> clock_record_;
  boost::asio::steady_timer record_timer_;
  void publish_clock_record();
  void schedule_record_heartbeat();
  // The XDP fast path (xdpserver IFACE), one per interface: fed the same clock state, with the
  // kernel's TAI offset (the program reads CLOCK_TAI), the access list and the rate limit.
  struct XdpPath {
    std::string interface;
    bpf::XdpServer program;
  };
  std::vector<XdpPath> xdp_servers_;
  // The server's eBPF request stamps, by interface; fixed before the workers start (they read it).
  std::map<int, bpf::RxTimestamper> server_bpf_;
  // (Declared before ntp_server_, so they outlive its workers.)
  // The NTP server (allow lines): its workers answer from the clock state the engine hands them
  // after every clock change and once a second (the bound grows with time since the update).
  std::unique_ptr<NtpServer> ntp_server_;
  void start_ntp_server();
  server::ServerClockState server_clock_state() const;
  void start_xdp_server(const XdpServerDirective& xdp);
  void update_xdp_clocks(const server::ServerClockState& state);
  // The signing socket (signsocket) and what it signs with: the time and bound now, or why not.
  std::unique_ptr<SignServer> sign_server_;
  // RFC 3161 over HTTP (tsaport), signing with the same verdict.
  std::unique_ptr<TsaServer> tsa_server_;
  void start_tsa();
  TimeVerdict sign_verdict();
  FileStat leap_table_stat_;
  int64_t expiry_checked_day_ = 0;
  std::optional<std::string> stop_reason_;
  net::RxPrecision precision_;
  std::vector<std::unique_ptr<Source>> sources_;
  std::vector<std::unique_ptr<Pending>> pending_;
  net::StampChooser chooser_;
  // eBPF RX stamp programs, one per interface that replies arrive on; destroyed (detached) with
  // the engine.
  std::map<std::pair<int, uint16_t>, bpf::RxTimestamper> bpf_;  // by (ifindex, server port)
  std::set<std::pair<int, uint16_t>> bpf_failed_;
  std::string bpf_error_;  // why eBPF stamps are unavailable, when they are
  std::vector<std::string> hardware_notes_;
  // NICs whose hardware stamping taid changed; each puts the earlier configuration back when the
  // engine goes.
  std::vector<net::HwTimestampingClaim> hw_claims_;
  timescale::KernelTaiOffset tai_offset_;
  bool tai_warning_logged_ = false;
  std::ofstream measurements_;
};

}  // namespace taid::daemon
