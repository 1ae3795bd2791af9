// SimServer: a simulated NTP server answering client requests in basic mode with the real codec
// (mode 4, stratum 1, refid GPS) — truthful, lying by a fixed offset, dying at a time, or stepping
// its clock at a time. (The daemon's own server responder comes later; this is the test double.)
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "core/time.hpp"
#include "ntp/packet.hpp"

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
};

struct ServerReply {
  std::vector<uint8_t> bytes;
  int64_t sent_ns = 0;  // true time the reply leaves
};

class SimServer {
 public:
  // `start`: the true UTC instant of t = 0.
  SimServer(const ServerModel& model, UtcTime start) : model_(model), start_(start) {}

  // A request arriving at true time `arrival_ns`. nullopt: no reply (the bytes are not a client
  // request, or the server is dead).
  std::optional<ServerReply> on_request(std::span<const uint8_t> bytes, int64_t arrival_ns);
  // The server's clock at true time `t_ns`.
  UtcTime clock_at(int64_t t_ns) const;

  const ServerModel& model() const { return model_; }
  uint64_t requests() const { return requests_; }
  uint64_t replies() const { return replies_; }

 private:
  ServerModel model_;
  UtcTime start_;
  uint64_t requests_ = 0;
  uint64_t replies_ = 0;
};

}  // namespace taid::sim
