// Servo strategies by name (the `servo` directive) and the states' names.
#include "servo/servo.hpp"

#include "servo/estimate_servo.hpp"
#include "servo/pi_servo.hpp"

namespace taid::servo {

std::string_view to_string(State state) {
  switch (state) {
    case State::unlocked:
      return "unlocked";
    case State::jump:
      return "jump";
    case State::locked:
      return "locked";
  }
  return "?";
}

std::string_view to_string(Kind kind) {
  switch (kind) {
    case Kind::estimate:
      return "estimate";
    case Kind::pi:
      return "pi";
  }
  return "?";
}

std::optional<Kind> parse_kind(std::string_view word) {
  if (word == "estimate") return Kind::estimate;
  if (word == "pi") return Kind::pi;
  return std::nullopt;
}

std::unique_ptr<Servo> make_servo(Kind kind, const Settings& settings) {
  if (kind == Kind::pi) return std::make_unique<PiServo>(settings);
  return std::make_unique<EstimateServo>(settings);
}

}  // namespace taid::servo
