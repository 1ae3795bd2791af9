// What every servo does alike before its own strategy: makestep and maxchange (chrony's rules),
// and the maxdrift clamp. Pure.
#pragma once

#include <optional>

#include "servo/servo.hpp"

namespace taid::servo {

class StepPolicy {
 public:
  explicit StepPolicy(const Settings& settings) : settings_(settings) {}
  // Counts the update and returns a step, ignore or stop decision when makestep or maxchange
  // applies to it (frequency_ppb is kept), nullopt when the strategy decides.
  std::optional<Decision> check(const Update& update, double frequency_ppb);
  int updates() const { return updates_; }
  void reset() { ignored_ = 0; }

 private:
  Settings settings_;
  int updates_ = 0;
  int ignored_ = 0;
};

// ppb limited to ±maxdrift.
double clamp_frequency(double ppb, const Settings& settings);

}  // namespace taid::servo
