// Which receive-timestamp path feeds the exchange: a fixed choice, or `auto`, decided by
// measurement on the host rather than by a ranking assumed in advance.
//
// For one reply the paths give stamps of the same arrival on the same clock (the eBPF stamp is
// converted from TAI first). Every path stamps after the frame reached the host, so the earliest
// stamp is the one closest to the wire, and each path's *lateness* (its stamp minus the earliest)
// is the latency it adds to T4 — error that is not cancelled by symmetry. In auto mode the chooser
// records every path's lateness over the first kEvaluationReplies replies, then settles on the
// path with the smallest median lateness; until then it uses the path leading so far. A fixed
// choice uses its path and falls back (hardware → bpf → kernel → user) when a reply lacks it,
// saying so once.
#pragma once

#include <array>
#include <cstddef>
#include <optional>
#include <string>
#include <vector>

#include "core/time.hpp"
#include "ntp/exchange.hpp"

namespace taid::net {

enum class StampPolicy { auto_, hardware, bpf, kernel, user };

// The stamps one reply has, indexed by ntp::TimestampSource; user is always present.
struct RxCandidates {
  std::array<std::optional<ntp::LocalTimestamp>, 4> by_source;
  std::optional<ntp::LocalTimestamp>& operator[](ntp::TimestampSource s) {
    return by_source[static_cast<std::size_t>(s)];
  }
  const std::optional<ntp::LocalTimestamp>& operator[](ntp::TimestampSource s) const {
    return by_source[static_cast<std::size_t>(s)];
  }
};

struct PathLateness {
  ntp::TimestampSource source;
  std::size_t replies = 0;   // replies that had this path
  Duration median_lateness;  // behind the earliest stamp of the same reply
};

class StampChooser {
 public:
  static constexpr std::size_t kEvaluationReplies = 16;

  explicit StampChooser(StampPolicy policy) : policy_(policy) {}

  // The stamp to use for this reply (no learning: the reply may yet be rejected).
  ntp::LocalTimestamp pick(const RxCandidates& candidates);
  // In auto mode, counts an *accepted* reply's stamps towards the decision; a packet that failed
  // the exchange's tests (possibly forged) must not steer the choice.
  void record(const RxCandidates& candidates);

  StampPolicy policy() const { return policy_; }
  // The path in use: the decision in auto mode once made, else the current leader / fixed path.
  ntp::TimestampSource current() const { return current_; }
  bool decided() const { return decided_; }
  std::vector<PathLateness> lateness() const;
  // A line worth logging that the last choose() produced (a decision or a fallback), once.
  std::optional<std::string> take_message();

 private:
  ntp::TimestampSource leader() const;

  StampPolicy policy_;
  ntp::TimestampSource current_ = ntp::TimestampSource::kernel;
  bool decided_ = false;
  std::size_t evaluated_ = 0;
  std::array<std::vector<int64_t>, 4> lateness_ns_;  // per path, evaluation phase only
  std::array<bool, 4> fallback_reported_{};
  std::optional<std::string> message_;
};

}  // namespace taid::net
