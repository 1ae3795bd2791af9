// The NTP server's decisions, sans-IO: request bytes and stamps in, a reply or a drop reason out.
//
// ntpd-rs's `handle(client, recv_ts, request, out) -> Ignore | Respond`, with chrony's server
// behaviour: access control (AccessList), rate limiting per client in a fixed-size table
// (RateLimiter), interleaved mode (RFC 9769) from a bounded table of the receive and transmit
// stamps of recent replies (InterleaveTable, keyed by the receive stamp as chrony keys it, so a
// client that opens a fresh port per request still gets interleaved replies). The daemon's socket
// workers and the simulator call it; it never reads a clock, opens a socket or logs.
//
// T3 as late as possible: a basic reply leaves its transmit field for the I/O to write just
// before the send (patch_transmit), then reports the kernel's TX stamp of that datagram
// (on_transmit_stamp) so the next interleaved request gets it. An interleaved reply carries the
// TX stamp of the previous reply, already known, and needs no patch.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>
#include <variant>

#include "core/time.hpp"
#include "ntp/packet.hpp"
#include "server/access.hpp"
#include "server/interleave_table.hpp"
#include "server/rate_limit.hpp"

namespace taid::server {

// What the server says about its own clock (RFC 5905 §7.3 header fields), from the timekeeping
// core (server_clock_state.hpp). Unsynchronized without `local stratum`: LI = 3, stratum 16.
struct ServerClockState {
  ntp::Leap leap = ntp::Leap::unsynchronized;
  uint8_t stratum = 16;
  int8_t precision_log2 = -20;  // of the stamps the replies carry
  uint32_t reference_id = 0;
  NtpShort root_delay;
  NtpShort root_dispersion;
  NtpTimestamp reference_time;
  friend bool operator==(const ServerClockState&, const ServerClockState&) = default;
};

// Why a datagram got no reply (or a KoD), one counter each (`taictl serverstats`).
enum class Drop : uint8_t {
  too_short,        // shorter than the 48-byte header
  malformed,        // the codec refused it (bad extension field lengths, ...)
  bad_version,      // version 0 or above 4
  not_client_mode,  // modes 0, 1, 2, 4, 5, 6 (control), 7 (private): no answer
  zero_transmit,    // a client request with transmit 0 cannot be matched by its client
  authenticated,    // carries a MAC or NTS fields (RFC 8915): no keys here, no unauthenticated
                    // answer; other extension fields are ignored (RFC 7822)
  denied,           // access list (checked first: a denied client's packets count only here)
  rate_limited,     // over the client's rate, and not leaked
};
inline constexpr std::size_t kDropReasons = 8;
std::string_view to_string(Drop reason);

// A client's address: IPv6, IPv4 as v4-mapped ::ffff:a.b.c.d (the eBPF keys' form), and port.
struct ClientAddress {
  std::array<uint8_t, 16> address{};
  uint16_t port = 0;
  friend bool operator==(const ClientAddress&, const ClientAddress&) = default;
};

// Largest reply: the header only; a reply is never larger than its request.
inline constexpr std::size_t kMaxReply = ntp::kHeaderSize;

struct Reply {
  std::array<uint8_t, kMaxReply> bytes{};
  std::size_t size = 0;
  bool interleaved = false;
  bool kiss_of_death = false;  // a KoD RATE instead of time
  // Basic replies: the I/O writes T3 with patch_transmit() right before sending. Interleaved
  // replies and KoDs already hold their transmit field.
  bool needs_transmit = false;
  // The receive stamp (T2) this reply carries: the key under which the I/O reports its TX stamp.
  // Zero for a KoD (nothing to report).
  NtpTimestamp receive_time;
};

struct Request {
  std::span<const uint8_t> bytes;
  ClientAddress client;
  NtpTimestamp receive_time;  // T2: the kernel (eBPF or SO_TIMESTAMPING) or user-space RX stamp
  int64_t monotonic_ns = 0;   // CLOCK_MONOTONIC at receipt, for the rate limiter's buckets
  // Another limiter in front of this one (the XDP fast path's) already holds this client over its
  // rate: the request gets the over-limit treatment (leak, KoD, drop) without a fresh burst here,
  // or the client would be given the burst twice.
  bool over_limit_elsewhere = false;
};

struct ResponderSettings {
  AccessList access;                            // empty: everyone denied (chrony's default)
  std::optional<RateLimitSettings> rate_limit;  // `ratelimit`; none: no limit
  std::size_t rate_limit_entries = 65536;       // client addresses the rate limiter tracks
  std::size_t interleave_entries = 16384;       // receive/transmit pairs kept for RFC 9769
  uint64_t random_seed = 0;                     // the rate limiter's leak and KoD draws
};

struct ResponderStats {
  uint64_t received = 0;
  uint64_t replied = 0;
  uint64_t interleaved = 0;
  uint64_t kiss_of_death = 0;
  std::array<uint64_t, kDropReasons> dropped{};
};

class Responder {
 public:
  explicit Responder(ResponderSettings settings);

  // The reply to one datagram, or why there is none. Reply fields from `clock`: leap, stratum,
  // precision, reference id and time, root delay and dispersion; version and poll echo the
  // request's (poll raised to the rate limit's interval, as chrony tells fast clients to slow
  // down); origin = the request's transmit field (basic) or receive field (interleaved).
  std::variant<Reply, Drop> respond(const Request& request, const ServerClockState& clock);

  // Writes T3 into a basic reply's transmit field, and remembers it as that reply's transmit
  // stamp until the kernel's arrives.
  void patch_transmit(Reply& reply, NtpTimestamp transmit_time);
  // The kernel's TX stamp of the reply that carried `receive_time` (from the error queue).
  // Interleaved replies need no patch: the I/O reports their user-space send time here too when
  // it has no kernel stamp, else their next interleaved request finds no transmit stamp and gets
  // a basic reply. A KoD's receive_time is zero: nothing to report. Ignored when more than 1 s
  // away from receive_time.
  void on_transmit_stamp(NtpTimestamp receive_time, NtpTimestamp transmit_time);

  const ResponderStats& stats() const { return stats_; }
  const InterleaveTable& interleave_table() const { return interleave_; }

 private:
  ResponderSettings settings_;
  InterleaveTable interleave_;
  std::optional<RateLimiter> rate_limiter_;
  ResponderStats stats_;
};

}  // namespace taid::server
