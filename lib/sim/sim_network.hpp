// SimPath: one source's network path in the simulator — base delay each way, exponential
// queueing, asymmetry, loss, and a route change at a given time.
#pragma once

#include <cstdint>
#include <optional>

#include "core/time.hpp"
#include "sim/random.hpp"

namespace taid::sim {

enum class Direction { to_server, to_client };

struct PathModel {
  Duration base_delay = Duration::from_us(100);  // each way
  // Extra base delay on the way to the server (negative: on the way back): the asymmetry no
  // two-way method can see, which biases the measured offset by half of it.
  Duration asymmetry;
  // Queueing: each packet waits Exp(1) × this mean on top of the base delay (per direction).
  Duration jitter_to_server = Duration::from_us(100);
  Duration jitter_to_client = Duration::from_us(100);
  // Each packet (either way) is lost with this probability.
  double loss = 0;
  // From `at` (true time since the start) on, the base delay and asymmetry become these.
  struct RouteChange {
    Duration at;
    Duration base_delay;
    Duration asymmetry;
  };
  std::optional<RouteChange> route_change;
};

class SimPath {
 public:
  SimPath(const PathModel& model, uint64_t seed) : model_(model), random_(seed) {}

  // The true time a packet sent at `sent_ns` arrives, or nullopt when it is lost. Draws from the
  // path's own random sequence in the order packets are sent.
  std::optional<int64_t> transit(Direction direction, int64_t sent_ns);
  // The base (unqueued) one-way delay at `at_ns`.
  Duration base_delay(Direction direction, int64_t at_ns) const;

  const PathModel& model() const { return model_; }

 private:
  PathModel model_;
  Random random_;
};

}  // namespace taid::sim
