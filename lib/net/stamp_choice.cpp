// Receive-stamp path choice: fixed with fallback, or auto by measured median lateness.
#include "net/stamp_choice.hpp"

#include <algorithm>

#include "core/strcat.hpp"

namespace taid::net {
namespace {

using ntp::TimestampSource;

constexpr std::array<TimestampSource, 4> kBestFirst{TimestampSource::hardware, TimestampSource::bpf,
                                                    TimestampSource::kernel, TimestampSource::user};

std::size_t index(TimestampSource s) { return static_cast<std::size_t>(s); }

int64_t median(std::vector<int64_t> values) {
  const auto mid = values.begin() + static_cast<std::ptrdiff_t>(values.size() / 2);
  std::nth_element(values.begin(), mid, values.end());
  return *mid;
}

TimestampSource wanted(StampPolicy policy) {
  switch (policy) {
    case StampPolicy::hardware:
      return TimestampSource::hardware;
    case StampPolicy::bpf:
      return TimestampSource::bpf;
    case StampPolicy::kernel:
      return TimestampSource::kernel;
    case StampPolicy::user:
    case StampPolicy::auto_:
      break;
  }
  return TimestampSource::user;
}

}  // namespace

std::vector<PathLateness> StampChooser::lateness() const {
  std::vector<PathLateness> out;
  for (TimestampSource s : kBestFirst) {
    const auto& v = lateness_ns_[index(s)];
    if (v.empty()) continue;
    out.push_back({s, v.size(), Duration::from_ns(median(v))});
  }
  return out;
}

TimestampSource StampChooser::leader() const {
  // Among paths present in at least half the replies so far (a path that is usually missing
  // cannot carry the exchange), the smallest median lateness; best-first order breaks ties.
  std::optional<TimestampSource> best;
  int64_t best_median = 0;
  for (TimestampSource s : kBestFirst) {
    const auto& v = lateness_ns_[index(s)];
    if (v.empty() || v.size() * 2 < evaluated_) continue;
    const int64_t m = median(v);
    if (!best || m < best_median) {
      best = s;
      best_median = m;
    }
  }
  return best.value_or(TimestampSource::user);
}

void StampChooser::record(const RxCandidates& candidates) {
  if (policy_ != StampPolicy::auto_ || decided_) return;
  UtcTime earliest = candidates[TimestampSource::user]->time;
  for (const auto& c : candidates.by_source)
    if (c && c->time < earliest) earliest = c->time;
  for (TimestampSource s : kBestFirst)
    if (const auto& c = candidates[s]) lateness_ns_[index(s)].push_back((c->time - earliest).ns());
  ++evaluated_;
  current_ = leader();
  if (evaluated_ >= kEvaluationReplies) {
    decided_ = true;
    std::string text = strcat("timestamping auto: chose ", ntp::to_string(current_),
                              " receive stamps after ", evaluated_, " replies (median lateness:");
    for (const PathLateness& p : lateness())
      text += strcat(" ", ntp::to_string(p.source), " ", p.median_lateness.to_string());
    message_ = text + ")";
  }
}

ntp::LocalTimestamp StampChooser::pick(const RxCandidates& candidates) {
  if (policy_ != StampPolicy::auto_) current_ = wanted(policy_);
  if (const auto& c = candidates[current_]) return *c;
  // The chosen path has no stamp for this reply: the next best that has one.
  const auto from = std::find(kBestFirst.begin(), kBestFirst.end(), current_);
  for (auto it = from; it != kBestFirst.end(); ++it) {
    if (const auto& c = candidates[*it]) {
      // While auto is still measuring, a missing path is just not the leader yet.
      const bool settled = policy_ != StampPolicy::auto_ || decided_;
      if (settled && !fallback_reported_[index(current_)]) {
        fallback_reported_[index(current_)] = true;
        message_ = strcat("no ", ntp::to_string(current_), " receive stamp on a reply; using ",
                          ntp::to_string(*it), " stamps where it is missing");
      }
      return *c;
    }
  }
  return *candidates[TimestampSource::user];
}

std::optional<std::string> StampChooser::take_message() {
  auto m = std::move(message_);
  message_.reset();
  return m;
}

}  // namespace taid::net
