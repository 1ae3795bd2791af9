// programmed_server: an NTPv4 server whose clock is programmed, so clients can be scored against a
// truth that is not zero.
//
// Server time at kernel time t (CLOCK_REALTIME) is S(t) = t + θ(t), with
//     θ(t) = θ₀ + ∫ f(s) ds   and   f(s) = f₀ + W(s) + A·sin(2π·s/P),
// s counted from start-up. W is a random walk (σ ppb/√s, seeded) that moves on a 100 ms grid and
// holds between the grid points, so θ is exact between them; the sinusoid (a temperature swing) is
// integrated in closed form. Units: ppb × s = ns. θ is what a client on this host should measure:
// positive when the client (the kernel clock) is behind the server.
//
// The kernel clock itself is never touched: θ lives in this process only. What this models is the
// *source's* frequency offset and wander relative to our clock; our own oscillator stays the
// kernel's, which is steady.
//
// NTP: answers mode 3 requests with mode 4 (lib/ntp/packet's codec). T2 is the kernel's software
// RX stamp (SO_TIMESTAMPING), T3 is read right before sendto() and written into the encoded bytes
// last; both go through S(t). Interleaved mode (RFC 9769, chrony's and taid's `xleave`): per client
// *address* (clients that open a fresh port per request keep their state) the server keeps the
// receive timestamp it sent last and the kernel's SND stamp of that reply, read from the error
// queue. A request whose origin equals that receive timestamp gets an interleaved reply: origin =
// the request's receive field, transmit = S(SND stamp of the previous reply).
//
// A date in the past (or future): --serve-utc 2016-12-31T23:59:40Z adds to θ₀ the whole
// nanoseconds that make the server's clock read that at start-up (an integer shift kept apart
// from the double-valued rest, so ten years of shift cost no precision). --leap insert|delete
// then carries out the leap second at the end of that UTC day, midnight M, as the Linux kernel
// does: inserted, the server's POSIX clock goes back 1 s when it reaches M (23:59:59 repeats);
// deleted, it goes forward 1 s when it reaches M − 1 s (23:59:59 never shows). Until then every
// reply carries LI = 1 (add) or 2 (delete), afterwards LI = 0. θ in the truth log includes the
// shift and the leap: server POSIX time = kernel time + θ, always. --anchor first-request moves
// that instant to the first request's arrival (the shift is set again then): a client that sets
// its clock to the date and asks at once finds the server agreeing with it, however long it took
// to get there (a guest's boot). Not the request's transmit field: clients send a random cookie.
//
// Truth log (CSV, --truth-log, "-" for stdout), one line per
//   tick   every 100 ms: kernel_ns, theta_ns, freq_ppb
//   reply  per reply: kernel_ns = T2 (kernel RX stamp), theta and freq there, the client address,
//          T3 as kernel time, the client's transmit field as Unix ns (its T1 as it wrote it),
//          whether the reply was interleaved, and which RX stamp T2 is (kernel or user)
//   tx     per kernel SND stamp of a reply: kernel_ns, theta_ns, freq_ppb, client
// so any estimate a client makes at local (= kernel) time t can be scored against θ(t).
#include <arpa/inet.h>
#include <linux/errqueue.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <numbers>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "core/fd.hpp"
#include "core/time.hpp"
#include "net/timestamping.hpp"
#include "ntp/packet.hpp"
#include "timescale/utc_label.hpp"

namespace {

using taid::NtpShort;
using taid::NtpTimestamp;
using taid::UtcTime;

volatile sig_atomic_t g_stop = 0;
void on_signal(int) { g_stop = 1; }

int64_t kernel_now_ns() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

struct Options {
  int64_t offset_ns = 0;
  double freq_ppb = 0;
  double walk_ppb_per_sqrt_s = 0;
  double swing_ppb = 0;
  double swing_period_s = 600;
  uint64_t seed = 1;
  std::string bind = "0.0.0.0";
  int port = 123;
  std::string truth_log = "-";
  double seconds = 3600;
  std::optional<int64_t> serve_utc_ns;  // --serve-utc: POSIX ns the server reads at start-up
  bool anchor_first_request = false;    // --anchor first-request
  int leap = 0;                         // --leap: +1 insert, -1 delete at the end of that day
};

// "YYYY-MM-DDTHH:MM:SS[.fraction]Z" as POSIX ns (lib/timescale's labels); 23:59:60 is not a POSIX
// time, so it is refused here.
std::optional<int64_t> parse_utc_ns(const char* text) {
  const auto label = taid::timescale::parse_utc_label(text);
  if (!label || label->second == 60) return std::nullopt;
  return taid::timescale::posix_from_label(*label).unix_ns();
}

[[noreturn]] void usage_error(const std::string& message) {
  std::fprintf(stderr,
               "programmed_server: %s\n"
               "usage: programmed_server [--offset-ns N] [--freq-ppb F] [--walk-ppb-per-sqrt-s W]\n"
               "         [--swing-ppb A] [--swing-period-s P] [--seed N] [--bind ADDR] [--port N]\n"
               "         [--truth-log PATH|-] [--seconds N]\n"
               "         [--serve-utc YYYY-MM-DDTHH:MM:SSZ [--leap insert|delete]]\n",
               message.c_str());
  std::exit(2);
}

double parse_double(std::string_view option, const char* text, double min, double max) {
  char* end = nullptr;
  errno = 0;
  const double v = std::strtod(text, &end);
  if (end == text || *end != '\0' || errno == ERANGE || !std::isfinite(v))
    usage_error(std::string(option) + ": '" + text + "' is not a number");
  if (v < min || v > max) {
    char range[64];
    std::snprintf(range, sizeof range, "%g..%g", min, max);
    usage_error(std::string(option) + ": " + text + " is outside " + range);
  }
  return v;
}

template <typename Int>
Int parse_int(std::string_view option, const char* text, Int min, Int max) {
  Int v{};
  const std::string_view s(text);
  const auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc{} || ptr != s.data() + s.size())
    usage_error(std::string(option) + ": '" + text + "' is not an integer");
  if (v < min || v > max)
    usage_error(std::string(option) + ": " + text + " is outside " + std::to_string(min) + ".." +
                std::to_string(max));
  return v;
}

Options parse_options(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string_view opt = argv[i];
    if (opt == "-h" || opt == "--help") usage_error("help");
    if (i + 1 >= argc) usage_error(std::string(opt) + ": missing value");
    const char* value = argv[++i];
    if (opt == "--offset-ns")
      o.offset_ns = parse_int<int64_t>(opt, value, -1000000000000000, 1000000000000000);
    else if (opt == "--freq-ppb")
      o.freq_ppb = parse_double(opt, value, -500000, 500000);  // the kernel's ±500 ppm
    else if (opt == "--walk-ppb-per-sqrt-s")
      o.walk_ppb_per_sqrt_s = parse_double(opt, value, 0, 10000);
    else if (opt == "--swing-ppb")
      o.swing_ppb = parse_double(opt, value, 0, 100000);
    else if (opt == "--swing-period-s")
      o.swing_period_s = parse_double(opt, value, 1, 1e7);
    else if (opt == "--seed")
      o.seed = parse_int<uint64_t>(opt, value, 0, UINT64_MAX);
    else if (opt == "--bind")
      o.bind = value;
    else if (opt == "--port")
      o.port = parse_int<int>(opt, value, 1, 65535);
    else if (opt == "--truth-log")
      o.truth_log = value;
    else if (opt == "--seconds")
      o.seconds = parse_double(opt, value, 0.1, 86400 * 7);
    else if (opt == "--serve-utc") {
      o.serve_utc_ns = parse_utc_ns(value);
      if (!o.serve_utc_ns)
        usage_error(std::string("--serve-utc: '") + value + "' is not YYYY-MM-DDTHH:MM:SS[.f]Z");
    } else if (opt == "--anchor") {
      if (std::string_view(value) != "first-request")
        usage_error(std::string("--anchor: '") + value + "' is not first-request");
      o.anchor_first_request = true;
    } else if (opt == "--leap") {
      if (std::string_view(value) == "insert")
        o.leap = 1;
      else if (std::string_view(value) == "delete")
        o.leap = -1;
      else
        usage_error(std::string("--leap: '") + value + "' is not insert or delete");
    } else
      usage_error(std::string("unknown option ") + std::string(opt));
  }
  if (o.leap != 0 && !o.serve_utc_ns) usage_error("--leap needs --serve-utc (its day)");
  if (o.anchor_first_request && !o.serve_utc_ns) usage_error("--anchor needs --serve-utc");
  return o;
}

// θ(t) and f(t) of the programmed clock; see the file comment.
class ProgrammedClock {
 public:
  static constexpr int64_t kStepNs = 100000000;  // the walk's grid and the tick cadence

  ProgrammedClock(const Options& o, int64_t start_ns)
      : start_ns_(start_ns),
        shift_ns_(o.serve_utc_ns ? *o.serve_utc_ns - start_ns : 0),
        leap_(o.leap),
        offset_ns_(static_cast<double>(o.offset_ns)),
        freq_ppb_(o.freq_ppb),
        walk_step_ppb_(o.walk_ppb_per_sqrt_s * std::sqrt(static_cast<double>(kStepNs) * 1e-9)),
        swing_ppb_(o.swing_ppb),
        swing_period_s_(o.swing_period_s),
        rng_(o.seed) {
    walk_ppb_.push_back(0);
    integral_ns_.push_back(0);
    if (leap_ != 0) {
      // The end of the UTC day the server starts in.
      constexpr int64_t kDayNs = int64_t{86400} * 1000000000;
      const int64_t start_server_ns = *o.serve_utc_ns;
      leap_midnight_ns_ = (start_server_ns / kDayNs + 1) * kDayNs;
    }
  }

  // θ(t) in full: the shift, the programmed offset and the leap second once it happened. Long
  // double (64-bit mantissa on x86) so a ten-year shift still prints to the nanosecond's fraction.
  long double theta_ns(int64_t t) {
    return static_cast<long double>(shift_ns_ + leap_step_ns(t)) + programmed_ns(t);
  }

  // The server's POSIX time at kernel time t, in ns.
  int64_t server_ns(int64_t t) {
    return t + shift_ns_ + leap_step_ns(t) + std::llround(programmed_ns(t));
  }

  // The LI bits for a reply at kernel time t: the leap announced all day until it happened.
  taid::ntp::Leap leap_indicator(int64_t t) {
    if (leap_ == 0 || leap_step_ns(t) != 0) return taid::ntp::Leap::none;
    return leap_ > 0 ? taid::ntp::Leap::add_second : taid::ntp::Leap::delete_second;
  }

  int64_t leap_midnight_ns() const { return leap_midnight_ns_; }

  // From now on the server reads `server_posix_ns` at kernel time t (the shift set again), and
  // the leap, if any, is at the end of that day.
  void anchor(int64_t t, int64_t server_posix_ns) {
    shift_ns_ = server_posix_ns - t - std::llround(programmed_ns(t));
    if (leap_ != 0) {
      constexpr int64_t kDayNs = int64_t{86400} * 1000000000;
      leap_midnight_ns_ = (server_posix_ns / kDayNs + 1) * kDayNs;
    }
  }

 private:
  // The server's time without the leap second.
  int64_t unleaped_ns(int64_t t) { return t + shift_ns_ + std::llround(programmed_ns(t)); }

  // 0 before the leap; −1 s once an inserted second began (the unleaped clock reached M), +1 s
  // once a deleted one would have begun (M − 1 s).
  int64_t leap_step_ns(int64_t t) {
    if (leap_ > 0 && unleaped_ns(t) >= leap_midnight_ns_) return -1000000000;
    if (leap_ < 0 && unleaped_ns(t) >= leap_midnight_ns_ - 1000000000) return 1000000000;
    return 0;
  }

 public:
  // θ₀ + ∫f: the programmed part of θ, without the shift and the leap.
  double programmed_ns(int64_t t) {
    const auto [k, within_s] = locate(t);
    double theta = offset_ns_ + integral_ns_[k] + (freq_ppb_ + walk_ppb_[k]) * within_s;
    if (swing_ppb_ != 0) {
      const double w = 2 * std::numbers::pi / swing_period_s_;
      theta += swing_ppb_ / w * (1 - std::cos(w * seconds_since_start(t)));
    }
    return theta;
  }

  double freq_ppb(int64_t t) {
    const auto [k, within_s] = locate(t);
    (void)within_s;
    double f = freq_ppb_ + walk_ppb_[k];
    if (swing_ppb_ != 0)
      f += swing_ppb_ * std::sin(2 * std::numbers::pi * seconds_since_start(t) / swing_period_s_);
    return f;
  }

  // Server time at kernel time t, on the wire.
  NtpTimestamp server_time(int64_t t) {
    return NtpTimestamp::from_utc(UtcTime::from_unix_ns(server_ns(t)));
  }

 private:
  double seconds_since_start(int64_t t) const { return static_cast<double>(t - start_ns_) * 1e-9; }

  // Grid index holding t and the seconds from that grid point; extends the walk up to t. Times
  // before start-up extrapolate the first segment.
  std::pair<std::size_t, double> locate(int64_t t) {
    const int64_t since = t - start_ns_;
    const int64_t k = since < 0 ? 0 : since / kStepNs;
    while (static_cast<int64_t>(walk_ppb_.size()) <= k) {
      const double w = walk_ppb_.back();
      integral_ns_.push_back(integral_ns_.back() + (freq_ppb_ + w) * kStepNs * 1e-9);
      walk_ppb_.push_back(w + walk_step_ppb_ * normal_(rng_));
    }
    return {static_cast<std::size_t>(k), static_cast<double>(since - k * kStepNs) * 1e-9};
  }

  int64_t start_ns_;
  int64_t shift_ns_;              // --serve-utc's whole-ns shift, apart from the double θ
  int leap_;                      // +1 insert, −1 delete, 0 none
  int64_t leap_midnight_ns_ = 0;  // M, POSIX ns, when leap_ != 0
  double offset_ns_, freq_ppb_, walk_step_ppb_, swing_ppb_, swing_period_s_;
  std::mt19937_64 rng_;
  std::normal_distribution<double> normal_{0.0, 1.0};
  std::vector<double> walk_ppb_;     // W on [k, k+1) steps
  std::vector<double> integral_ns_;  // ∫(f₀ + W) from start to grid point k
};

union SocketAddress {
  sockaddr any;
  sockaddr_in v4;
  sockaddr_in6 v6;
  sockaddr_storage storage;
};

std::string address_text(const sockaddr_storage& a) {
  char text[INET6_ADDRSTRLEN] = "?";
  if (a.ss_family == AF_INET)
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in&>(a).sin_addr, text, sizeof text);
  else if (a.ss_family == AF_INET6)
    inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6&>(a).sin6_addr, text, sizeof text);
  return text;
}

// What interleaved mode needs of the last reply to one client address.
struct ClientState {
  NtpTimestamp receive_sent;               // the receive timestamp that reply carried
  std::optional<NtpTimestamp> precise_tx;  // S(kernel SND stamp of that reply), once read
  std::optional<uint32_t> awaiting_id;     // OPT_ID of that reply while its stamp is due
};

class Server {
 public:
  Server(const Options& o, taid::Fd fd, std::FILE* log, int8_t precision_log2)
      : clock_(o, kernel_now_ns()),
        fd_(std::move(fd)),
        log_(log),
        precision_(precision_log2),
        anchor_pending_(o.anchor_first_request),
        serve_utc_ns_(o.serve_utc_ns) {}

  int run(double seconds) {
    const int64_t end = kernel_now_ns() + static_cast<int64_t>(seconds * 1e9);
    int64_t next_tick = kernel_now_ns();
    while (!g_stop) {
      int64_t now = kernel_now_ns();
      if (now >= end) break;
      if (now >= next_tick) {
        tick(now);
        next_tick += ProgrammedClock::kStepNs;
        if (next_tick <= now) next_tick = now + ProgrammedClock::kStepNs;
      }
      const int64_t wait_ns = std::max<int64_t>(0, std::min(next_tick, end) - kernel_now_ns());
      pollfd p{fd_.get(), POLLIN, 0};
      const timespec timeout{static_cast<time_t>(wait_ns / 1000000000),
                             static_cast<long>(wait_ns % 1000000000)};
      const int ready = ppoll(&p, 1, &timeout, nullptr);
      if (ready < 0 && errno != EINTR) {
        std::fprintf(stderr, "programmed_server: poll: %s\n", std::strerror(errno));
        return 1;
      }
      if (ready > 0) {
        if (p.revents & POLLERR) read_tx_stamps();
        if (p.revents & POLLIN) serve_all();
      }
    }
    std::fprintf(stderr, "programmed_server: %llu replies (%llu interleaved), %llu dropped\n",
                 static_cast<unsigned long long>(replies_),
                 static_cast<unsigned long long>(interleaved_),
                 static_cast<unsigned long long>(dropped_));
    return 0;
  }

 private:
  void tick(int64_t t) {
    std::fprintf(log_, "tick,%lld,%.3Lf,%.4f,,,,,,\n", static_cast<long long>(t),
                 clock_.theta_ns(t), clock_.freq_ppb(t));
    std::fflush(log_);
  }

  void serve_all() {
    for (int budget = 0; budget < 64; ++budget) {
      std::array<uint8_t, 1024> buffer{};
      alignas(cmsghdr) std::array<char, 512> control{};
      SocketAddress from{};
      iovec iov{buffer.data(), buffer.size()};
      msghdr message{};
      message.msg_name = &from;
      message.msg_namelen = sizeof from;
      message.msg_iov = &iov;
      message.msg_iovlen = 1;
      message.msg_control = control.data();
      message.msg_controllen = control.size();
      const ssize_t n = ::recvmsg(fd_.get(), &message, MSG_DONTWAIT);
      if (n < 0) return;
      const int64_t user_rx = kernel_now_ns();
      const auto data = taid::net::parse_control_data(message);
      bool kernel_rx = data.software.has_value();
      const int64_t t2 = kernel_rx ? data.software->unix_ns() : user_rx;
      serve(std::span<const uint8_t>(buffer.data(), static_cast<std::size_t>(n)), from,
            message.msg_namelen, t2, kernel_rx);
    }
  }

  void serve(std::span<const uint8_t> bytes, const SocketAddress& from, socklen_t from_len,
             int64_t t2, bool kernel_rx) {
    auto decoded = taid::ntp::decode(bytes);
    if (!decoded || decoded->mode != taid::ntp::Mode::client || decoded->version < 1 ||
        decoded->transmit_time.is_zero()) {
      ++dropped_;
      return;
    }
    const taid::ntp::Packet& request = *decoded;
    if (anchor_pending_) {
      anchor_pending_ = false;
      clock_.anchor(t2, *serve_utc_ns_);
      std::fprintf(stderr, "programmed_server: anchored at the first request: server time %s\n",
                   UtcTime::from_unix_ns(*serve_utc_ns_).to_string().c_str());
    }
    const std::string client = address_text(from.storage);
    if (clients_.size() >= 4096 && !clients_.contains(client)) clients_.clear();  // bounded
    ClientState& state = clients_[client];

    taid::ntp::Packet reply;
    reply.leap = clock_.leap_indicator(t2);
    reply.version = request.version;
    reply.mode = taid::ntp::Mode::server;
    reply.stratum = 1;
    reply.poll = request.poll;
    reply.precision = precision_;
    reply.root_delay = NtpShort{};
    // The programmed clock is the reference: its only error is reading it.
    reply.root_dispersion =
        NtpShort::from_duration(taid::Duration::from_seconds(std::ldexp(1.0, precision_)));
    reply.reference_id = taid::ntp::kiss_code("PROG");
    reply.reference_time = clock_.server_time(t2 - 1000000000);
    reply.receive_time = clock_.server_time(t2);
    const bool interleaved =
        !request.origin_time.is_zero() && request.origin_time == state.receive_sent &&
        request.receive_time != request.transmit_time && state.precise_tx.has_value();
    reply.origin_time = interleaved ? request.receive_time : request.transmit_time;
    reply.transmit_time = interleaved ? *state.precise_tx : NtpTimestamp::from_raw(1);
    std::vector<uint8_t> wire = taid::ntp::encode(reply);

    // T3 as late as possible: read the clock, write it into the encoded bytes, send.
    const int64_t t3 = kernel_now_ns();
    if (!interleaved) {
      const uint64_t raw = clock_.server_time(t3).raw();
      for (int i = 0; i < 8; ++i) wire[40 + i] = static_cast<uint8_t>(raw >> (56 - 8 * i));
    }
    if (::sendto(fd_.get(), wire.data(), wire.size(), 0, &from.any, from_len) < 0) {
      std::fprintf(stderr, "programmed_server: sendto %s: %s\n", client.c_str(),
                   std::strerror(errno));
      return;
    }
    const uint32_t id = next_id_++;
    state.receive_sent = reply.receive_time;
    state.precise_tx.reset();
    state.awaiting_id = id;
    pending_[id] = client;
    ++replies_;
    if (interleaved) ++interleaved_;

    const int64_t t1 =
        request.transmit_time.to_utc(UtcTime::from_unix_ns(t2)).unix_ns();  // client's word
    std::fprintf(log_, "reply,%lld,%.3Lf,%.4f,%s,%lld,%lld,%lld,%d,%s\n",
                 static_cast<long long>(t2), clock_.theta_ns(t2), clock_.freq_ppb(t2),
                 client.c_str(), static_cast<long long>(t2), static_cast<long long>(t3),
                 static_cast<long long>(t1), interleaved ? 1 : 0, kernel_rx ? "kernel" : "user");
    std::fflush(log_);
    read_tx_stamps();  // on veth the SND stamp is queued before sendto() returns
  }

  void read_tx_stamps() {
    for (int budget = 0; budget < 64; ++budget) {
      std::array<uint8_t, 256> buffer{};
      alignas(cmsghdr) std::array<char, 512> control{};
      iovec iov{buffer.data(), buffer.size()};
      msghdr message{};
      message.msg_iov = &iov;
      message.msg_iovlen = 1;
      message.msg_control = control.data();
      message.msg_controllen = control.size();
      if (::recvmsg(fd_.get(), &message, MSG_ERRQUEUE | MSG_DONTWAIT) < 0) return;
      const auto stamp = taid::net::tx_timestamp(taid::net::parse_control_data(message));
      if (!stamp || !stamp->software || stamp->kind != SCM_TSTAMP_SND) continue;
      const auto found = pending_.find(stamp->id);
      if (found == pending_.end()) continue;
      const std::string client = found->second;
      pending_.erase(pending_.begin(), std::next(found));  // older ids will never come now
      const int64_t t = stamp->software->unix_ns();
      const auto state = clients_.find(client);
      if (state != clients_.end() && state->second.awaiting_id == stamp->id) {
        state->second.precise_tx = clock_.server_time(t);
        state->second.awaiting_id.reset();
      }
      std::fprintf(log_, "tx,%lld,%.3Lf,%.4f,%s,,,,,\n", static_cast<long long>(t),
                   clock_.theta_ns(t), clock_.freq_ppb(t), client.c_str());
      std::fflush(log_);
    }
  }

  ProgrammedClock clock_;
  taid::Fd fd_;
  std::FILE* log_;
  int8_t precision_;
  std::map<std::string, ClientState> clients_;
  std::map<uint32_t, std::string> pending_;  // OPT_ID of a sent reply -> client address
  uint32_t next_id_ = 0;
  uint64_t replies_ = 0, interleaved_ = 0, dropped_ = 0;
  bool anchor_pending_ = false;           // --anchor first-request, until that request
  std::optional<int64_t> serve_utc_ns_;  // its era pivot
};

taid::Fd open_socket(const Options& o) {
  SocketAddress address{};
  socklen_t length = 0;
  int family = AF_INET;
  if (inet_pton(AF_INET, o.bind.c_str(), &address.v4.sin_addr) == 1) {
    address.v4.sin_family = AF_INET;
    address.v4.sin_port = htons(static_cast<uint16_t>(o.port));
    length = sizeof address.v4;
  } else if (inet_pton(AF_INET6, o.bind.c_str(), &address.v6.sin6_addr) == 1) {
    family = AF_INET6;
    address.v6.sin6_family = AF_INET6;
    address.v6.sin6_port = htons(static_cast<uint16_t>(o.port));
    length = sizeof address.v6;
  } else {
    usage_error("--bind: '" + o.bind + "' is not an IPv4 or IPv6 address");
  }
  taid::Fd fd(::socket(family, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!fd) throw std::runtime_error(std::string("socket: ") + std::strerror(errno));
  const int one = 1;
  setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (::bind(fd.get(), &address.any, length) != 0)
    throw std::runtime_error("bind " + o.bind + " port " + std::to_string(o.port) + ": " +
                             std::strerror(errno));
  if (auto enabled = taid::net::enable_timestamping(fd.get(), {.tx_software = true}); !enabled)
    throw std::runtime_error(enabled.error().message());
  return fd;
}

}  // namespace

int main(int argc, char** argv) {
  const Options options = parse_options(argc, argv);
  try {
    taid::Fd fd = open_socket(options);
    std::FILE* log = stdout;
    if (options.truth_log != "-") {
      log = std::fopen(options.truth_log.c_str(), "w");
      if (log == nullptr) {
        std::fprintf(stderr, "programmed_server: --truth-log %s: %s\n", options.truth_log.c_str(),
                     std::strerror(errno));
        return 2;
      }
    }
    std::fprintf(log,
                 "# offset_ns=%lld freq_ppb=%.4f walk_ppb_per_sqrt_s=%.4f swing_ppb=%.4f "
                 "swing_period_s=%.3f seed=%llu serve_utc_ns=%lld leap=%d\n"
                 "# kind,kernel_ns,theta_ns,freq_ppb,client,t2_kernel_ns,t3_kernel_ns,"
                 "t1_client_unix_ns,interleaved,rx_stamp\n",
                 static_cast<long long>(options.offset_ns), options.freq_ppb,
                 options.walk_ppb_per_sqrt_s, options.swing_ppb, options.swing_period_s,
                 static_cast<unsigned long long>(options.seed),
                 static_cast<long long>(options.serve_utc_ns.value_or(0)), options.leap);
    std::fflush(log);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    Server server(options, std::move(fd), log, taid::net::measure_clock_precision_log2());
    if (options.serve_utc_ns) {
      std::fprintf(stderr, "programmed_server: serving POSIX %lld.%09lld at start-up%s\n",
                   static_cast<long long>(*options.serve_utc_ns / 1000000000),
                   static_cast<long long>(*options.serve_utc_ns % 1000000000),
                   options.leap > 0   ? ", inserting a leap second at the end of that UTC day"
                   : options.leap < 0 ? ", deleting a leap second at the end of that UTC day"
                                      : "");
    }
    const int rc = server.run(options.seconds);
    if (log != stdout) std::fclose(log);
    return rc;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "programmed_server: %s\n", e.what());
    return 1;
  }
}
