// SimServer: a simulated NTP server answering client requests in basic mode with the real codec
// (mode 4, stratum 1, refid GPS) — truthful, lying by a fixed offset, dying at a time, or stepping
// its clock at a time. (The daemon's own server responder comes later; this is the test double.)
// Leap seconds: its clock follows the true UTC (an inserted second repeats its NTP seconds, a
// deleted one is skipped) or ignores them (keeps counting: 1 s off after each); its LI bits
// announce the true leaps, nothing, or a made-up leap.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "core/time.hpp"
#include "ntp/packet.hpp"
#include "sim/truth.hpp"

namespace taid::sim {

struct ServerModel {
  enum class Kind {
    truthful,  // its clock is true time
    lying,     // its clock is true time + offset, always
    dying,     // truthful until `at`, silent from then on
    stepping,  // truthful until `at`, true time + offset from then on
  };
  Kind kind = Kind::truthful;
  Duration offset;                              // lying, stepping
  Duration at;                                  // dying, stepping: true time since the start
  Duration processing = Duration::from_us(10);  // T3 − T2
  uint8_t stratum = 1;
  int8_t precision_log2 = -20;
  uint32_t reference_id = ntp::kiss_code("GPS\0");
  Duration root_delay = Duration::from_us(10);
  Duration root_dispersion = Duration::from_us(10);

  // Its clock across a true leap second.
  enum class LeapClock {
    follows,  // true POSIX UTC: the inserted second repeats, the deleted one is skipped
    ignores,  // counts on as if there were no leap: 1 s off after each (ahead after an insertion)
  };
  LeapClock leap_clock = LeapClock::follows;
  // Its LI bits.
  enum class LeapAnnounce {
    truth,    // LI add/delete through the UTC day before each true leap, and its inserted second
    none,     // always LI 0
    made_up,  // LI of `made_up_leap` through the day before its midnight (its clock unaffected);
              // the true leaps are not announced
  };
  LeapAnnounce announce = LeapAnnounce::truth;
  TrueLeap made_up_leap;  // made_up: the midnight ending the day, and +1 / −1
};

struct ServerReply {
  std::vector<uint8_t> bytes;
  int64_t sent_ns = 0;  // true time the reply leaves
};

class SimServer {
 public:
  // `start`: the true UTC instant of t = 0 (a truth without leap seconds).
  SimServer(const ServerModel& model, UtcTime start) : model_(model), truth_(start) {}
  SimServer(const ServerModel& model, const Truth& truth) : model_(model), truth_(truth) {}

  // A request arriving at true time `arrival_ns`. nullopt: no reply (the bytes are not a client
  // request, or the server is dead).
  std::optional<ServerReply> on_request(std::span<const uint8_t> bytes, int64_t arrival_ns);
  // The server's clock at true time `t_ns`.
  UtcTime clock_at(int64_t t_ns) const;
  // Its LI bits in a reply at true time `t_ns`.
  ntp::Leap leap_at(int64_t t_ns) const;

  const ServerModel& model() const { return model_; }
  uint64_t requests() const { return requests_; }
  uint64_t replies() const { return replies_; }

 private:
  ServerModel model_;
  Truth truth_;
  uint64_t requests_ = 0;
  uint64_t replies_ = 0;
};

}  // namespace taid::sim
