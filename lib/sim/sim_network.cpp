// SimPath: delays and losses of a simulated network path.
#include "sim/sim_network.hpp"

#include <cmath>

namespace taid::sim {

Duration SimPath::base_delay(Direction direction, int64_t at_ns) const {
  Duration base = model_.base_delay;
  Duration asymmetry = model_.asymmetry;
  if (model_.route_change && at_ns >= model_.route_change->at.ns()) {
    base = model_.route_change->base_delay;
    asymmetry = model_.route_change->asymmetry;
  }
  // Positive asymmetry lengthens the way to the server, negative the way back.
  if (direction == Direction::to_server && asymmetry > Duration()) base += asymmetry;
  if (direction == Direction::to_client && asymmetry < Duration()) base -= asymmetry;
  return base;
}

std::optional<int64_t> SimPath::transit(Direction direction, int64_t sent_ns) {
  // Both draws are made for every packet, lost or not, so a loss probability does not shift the
  // queueing of the packets that follow.
  const bool lost = random_.chance(model_.loss);
  const Duration mean =
      direction == Direction::to_server ? model_.jitter_to_server : model_.jitter_to_client;
  const double queue_ns = static_cast<double>(mean.ns()) * random_.exponential();
  if (lost) return std::nullopt;
  return sent_ns + base_delay(direction, sent_ns).ns() + std::llround(queue_ns);
}

}  // namespace taid::sim
