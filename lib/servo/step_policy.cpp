// makestep, maxchange and maxdrift as chrony's reference.c applies them, for every servo alike.
#include "servo/step_policy.hpp"

#include <algorithm>
#include <cstdio>
#include <string>

namespace taid::servo {
namespace {

// "+1.234567 s": the offsets chrony logs (%.6f), signed as our corrections are.
std::string signed_seconds(Duration d) {
  char text[48];
  std::snprintf(text, sizeof text, "%+.6f s", d.seconds());
  return text;
}

// A directive's threshold as it would be written in the configuration ("1", "0.1").
std::string plain_seconds(Duration d) {
  char text[32];
  std::snprintf(text, sizeof text, "%g", d.seconds());
  return text;
}

}  // namespace

std::optional<Decision> StepPolicy::check(const Update& update, double frequency_ppb) {
  const Duration magnitude = update.offset.abs();

  // maxchange (chrony's is_offset_ok): the first `start` updates pass unchecked; a negative
  // start never checks. No ignored update is counted below, so the updates counted before the
  // (start + 1)-th are exactly the `start` unchecked ones. The ignore budget is a total over the
  // daemon's life, not a run: chrony decrements it on each ignored update and never restores it
  // on a good one. A negative budget ignores for ever; an exhausted one stops the daemon.
  if (settings_.maxchange_offset && settings_.maxchange_start >= 0 &&
      updates_ >= settings_.maxchange_start && magnitude > *settings_.maxchange_offset) {
    const std::string directive = "maxchange " + plain_seconds(*settings_.maxchange_offset) + " " +
                                  std::to_string(settings_.maxchange_start) + " " +
                                  std::to_string(settings_.maxchange_ignore);
    Decision decision;
    decision.frequency_ppb = frequency_ppb;
    if (settings_.maxchange_ignore >= 0 && ignored_ >= settings_.maxchange_ignore) {
      decision.kind = Decision::Kind::stop;
      decision.reason = "an offset of " + signed_seconds(update.offset) +
                        " exceeds the allowed maximum after " + std::to_string(ignored_) +
                        " ignored, stopping (" + directive + ")";
      return decision;
    }
    ++ignored_;
    decision.kind = Decision::Kind::ignore;
    decision.reason = "ignoring an offset of " + signed_seconds(update.offset) + " (" +
                      std::to_string(ignored_) + " ignored; " + directive + ")";
    return decision;
  }

  // makestep (chrony's is_step_limit_reached): every update that got here counts, stepped or
  // not; limit 0 never steps, a negative limit steps at any update.
  ++updates_;
  const int limit = settings_.makestep_limit;
  if (limit != 0 && (limit < 0 || updates_ <= limit) && magnitude > settings_.makestep_threshold) {
    Decision decision;
    decision.kind = Decision::Kind::step;
    decision.frequency_ppb = frequency_ppb;
    decision.correction = update.offset;
    decision.state = State::jump;
    decision.reason = "stepping the clock by " + signed_seconds(update.offset) + " (makestep " +
                      plain_seconds(settings_.makestep_threshold) + " " + std::to_string(limit) +
                      ")";
    return decision;
  }
  return std::nullopt;
}

double clamp_frequency(double ppb, const Settings& settings) {
  const double max_ppb = settings.max_drift_ppm * 1000;
  return std::clamp(ppb, -max_ppb, max_ppb);
}

}  // namespace taid::servo
