// Truth: true TAI and true POSIX UTC of the simulation, with the true leap seconds.
#include "sim/truth.hpp"

#include <algorithm>

namespace taid::sim {
namespace {
constexpr int64_t kNsPerS = 1000000000;
constexpr int64_t kDayNs = 86400 * kNsPerS;
}  // namespace

Truth::Truth(UtcTime start, int32_t tai_offset_s, std::vector<TrueLeap> leaps)
    : start_(start), initial_offset_s_(tai_offset_s) {
  std::sort(leaps.begin(), leaps.end(),
            [](const TrueLeap& a, const TrueLeap& b) { return a.midnight < b.midnight; });
  const int64_t tai0_ns = tai_at(0).tai_ns();
  int32_t offset = tai_offset_s;
  for (const TrueLeap& leap : leaps) {
    if (leap.direction == 0) continue;
    const int direction = leap.direction > 0 ? 1 : -1;
    const int64_t m_ns = leap.midnight.unix_ns();
    // Insertion: at TAI M + n; deletion: at TAI (M − 1) + n (n the offset before).
    const int64_t change_tai_ns = m_ns + int64_t{offset} * kNsPerS - (direction < 0 ? kNsPerS : 0);
    const int64_t t_ns = change_tai_ns - tai0_ns;
    if (t_ns < 0) continue;  // over before the start: `tai_offset_s` already counts it
    Leap l;
    l.midnight = leap.midnight;
    l.direction = direction;
    l.t_ns = t_ns;
    l.offset_after_s = offset + direction;
    l.day_start_t_ns = std::max<int64_t>(0, m_ns - kDayNs + int64_t{offset} * kNsPerS - tai0_ns);
    l.done_t_ns = t_ns + (direction > 0 ? kNsPerS : 0);
    leaps_.push_back(l);
    offset += direction;
  }
}

int32_t Truth::tai_offset_at(int64_t t_ns) const {
  int32_t offset = initial_offset_s_;
  for (const Leap& leap : leaps_) {
    if (t_ns < leap.t_ns) break;
    offset = leap.offset_after_s;
  }
  return offset;
}

int64_t Truth::t_of_utc(UtcTime utc) const {
  // The offset in force when UTC first reads `utc`: that before the first leap whose change
  // happens at or before it in UTC terms.
  const int64_t tai0_ns = tai_at(0).tai_ns();
  int32_t offset = initial_offset_s_;
  for (const Leap& leap : leaps_) {
    // UTC at the change: M − 1 (insertion: repeated from here on) or M (deletion: skipped to).
    const int64_t change_utc_ns = leap.midnight.unix_ns() - (leap.direction > 0 ? kNsPerS : 0);
    if (leap.direction > 0 && utc.unix_ns() < change_utc_ns + kNsPerS) break;
    if (leap.direction < 0 && utc.unix_ns() < change_utc_ns - kNsPerS) break;
    if (leap.direction < 0 && utc.unix_ns() < change_utc_ns) return leap.t_ns;  // skipped
    offset = leap.offset_after_s;
  }
  return utc.unix_ns() + int64_t{offset} * kNsPerS - tai0_ns;
}

}  // namespace taid::sim
