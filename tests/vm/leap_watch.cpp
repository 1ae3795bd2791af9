// leap_watch: watches the kernel carry out an inserted leap second and judges it, for tests/vm's
// leap-second test. Reads only (clock_gettime and adjtimex with modes = 0), never writes a clock,
// and uses none of taid's code: the test must not judge taid by taid's own readings.
//
//   leap_watch --midnight 2017-01-01T00:00:00Z [--from-s 10] [--to-s 5] [--interval-ms 5]
//              [--tai-before 36]
//
// Samples CLOCK_REALTIME, CLOCK_TAI, CLOCK_MONOTONIC and adjtimex (state, status, tai) every
// interval; prints every transition (clock state, TAI offset, a REALTIME or TAI step against
// MONOTONIC) and one reading per REALTIME second from M − 3 s to M + 2 s. Judged in the window
// from REALTIME M − from-s until REALTIME M + to-s (after the leap); before it, transitions are
// only printed (taid may still step the clock and set the TAI offset then). Passes when, in the
// window:
//   - the clock state is TIME_INS before midnight, then TIME_OOP, then TIME_WAIT or TIME_OK
//     (TIME_ERROR, which adjtimex reports instead of the state whenever STA_UNSYNC is set, hides
//     the state: it is counted and printed, and left out of the sequence judged);
//   - the TAI offset is tai-before at the start and tai-before + 1 at the end, changed once;
//   - CLOCK_TAI never decreases and never moves by more than 50 ms beyond what CLOCK_MONOTONIC
//     moved between two samples (the gap between samples is measured, not assumed: a vCPU stall
//     under TCG is not a jump);
//   - CLOCK_REALTIME went back by 1 s (±50 ms against MONOTONIC) exactly once, at midnight, and
//     made no other step.
// Exit status 0 when all hold, 1 otherwise, 2 on bad usage or when started after the window.
#include <sys/timex.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

namespace {

constexpr int64_t kNsPerS = 1000000000;
constexpr int64_t kJumpToleranceNs = 50000000;  // 50 ms

int64_t abs_ns(int64_t ns) { return ns < 0 ? -ns : ns; }
double seconds_of(int64_t ns) { return static_cast<double>(ns) / 1e9; }

int64_t read_ns(clockid_t id) {
  timespec ts{};
  clock_gettime(id, &ts);
  return static_cast<int64_t>(ts.tv_sec) * kNsPerS + ts.tv_nsec;
}

struct Sample {
  int64_t mono_ns = 0;  // CLOCK_MONOTONIC between the two reads below
  int64_t realtime_ns = 0;
  int64_t tai_ns = 0;
  int state = 0;  // adjtimex return value
  unsigned status = 0;
  long tai_offset_s = 0;
};

Sample take_sample() {
  Sample s;
  const int64_t mono1 = read_ns(CLOCK_MONOTONIC);
  s.realtime_ns = read_ns(CLOCK_REALTIME);
  s.tai_ns = read_ns(CLOCK_TAI);
  const int64_t mono2 = read_ns(CLOCK_MONOTONIC);
  s.mono_ns = mono1 + (mono2 - mono1) / 2;
  timex tx{};
  s.state = ::adjtimex(&tx);  // modes = 0: read only
  s.status = static_cast<unsigned>(tx.status);
  s.tai_offset_s = tx.tai;
  return s;
}

const char* state_name(int state) {
  switch (state) {
    case TIME_OK:
      return "TIME_OK";
    case TIME_INS:
      return "TIME_INS";
    case TIME_DEL:
      return "TIME_DEL";
    case TIME_OOP:
      return "TIME_OOP";
    case TIME_WAIT:
      return "TIME_WAIT";
    case TIME_ERROR:
      return "TIME_ERROR";
    default:
      return "?";
  }
}

// "2016-12-31T23:59:59.123456789" for POSIX ns (no leap logic: 23:59:60 shows as 23:59:59).
std::string label(int64_t ns) {
  int64_t s = ns / kNsPerS;
  int64_t frac = ns % kNsPerS;
  if (frac < 0) {
    frac += kNsPerS;
    --s;
  }
  const time_t t = static_cast<time_t>(s);
  tm fields{};
  gmtime_r(&t, &fields);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%09" PRId64, fields.tm_year + 1900,
                fields.tm_mon + 1, fields.tm_mday, fields.tm_hour, fields.tm_min, fields.tm_sec,
                frac);
  return buf;
}

void print_sample(const char* what, const Sample& s) {
  std::printf(
      "leap_watch: %-26s REALTIME %s  TAI %s  TAI-REALTIME %+.6f s  %s tai=%ld "
      "status=0x%04x\n",
      what, label(s.realtime_ns).c_str(), label(s.tai_ns).c_str(),
      seconds_of(s.tai_ns - s.realtime_ns), state_name(s.state), s.tai_offset_s, s.status);
}

std::optional<int64_t> parse_utc_s(const char* text) {
  int year = 0, month = 0, day = 0, hour = 0, minute = 0, second = 0, used = 0;
  if (std::sscanf(text, "%4d-%2d-%2dT%2d:%2d:%2dZ%n", &year, &month, &day, &hour, &minute, &second,
                  &used) != 6 ||
      text[used] != '\0')
    return std::nullopt;
  tm fields{};
  fields.tm_year = year - 1900;
  fields.tm_mon = month - 1;
  fields.tm_mday = day;
  fields.tm_hour = hour;
  fields.tm_min = minute;
  fields.tm_sec = second;
  return static_cast<int64_t>(timegm(&fields));
}

int usage() {
  std::fputs(
      "usage: leap_watch --midnight YYYY-MM-DDTHH:MM:SSZ [--from-s N] [--to-s N] "
      "[--interval-ms N] [--tai-before N]\n",
      stderr);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::optional<int64_t> midnight_s;
  int64_t from_s = 10, to_s = 5, interval_ms = 5;
  long tai_before = 36;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string opt = argv[i];
    const char* value = argv[i + 1];
    if (opt == "--midnight")
      midnight_s = parse_utc_s(value);
    else if (opt == "--from-s")
      from_s = std::atoll(value);
    else if (opt == "--to-s")
      to_s = std::atoll(value);
    else if (opt == "--interval-ms")
      interval_ms = std::atoll(value);
    else if (opt == "--tai-before")
      tai_before = std::atol(value);
    else
      return usage();
  }
  if (argc % 2 != 1 || !midnight_s || from_s < 1 || to_s < 1 || interval_ms < 1) return usage();
  const int64_t m_ns = *midnight_s * kNsPerS;
  const int64_t window_start_ns = m_ns - from_s * kNsPerS;
  const int64_t window_end_ns = m_ns + to_s * kNsPerS;
  std::setvbuf(stdout, nullptr, _IOLBF, 0);

  Sample prev = take_sample();
  print_sample("start", prev);
  if (prev.realtime_ns >= window_start_ns) {
    std::printf("leap_watch: FAILED: started at %s, after the window's start %s\n",
                label(prev.realtime_ns).c_str(), label(window_start_ns).c_str());
    return 2;
  }

  bool judging = false;
  bool leaped = false;  // REALTIME went back once
  std::vector<std::string> failures;
  // The clock states seen in the window, in order, without repeats.
  std::vector<int> states;
  int64_t error_samples = 0;         // TIME_ERROR: STA_UNSYNC set, the state hidden
  int64_t error_in_leap_second = 0;  // of them, in the inserted second (after REALTIME went back)
  int ins_before_midnight = 0;
  long tai_at_start = -1;
  int tai_changes = 0;
  int realtime_back_steps = 0;
  int64_t max_tai_gap_ns = 0, max_tai_excess_ns = 0, min_tai_delta_ns = INT64_MAX;
  int64_t last_printed_second = INT64_MIN;
  int64_t samples = 0;
  const int64_t give_up_mono_ns = prev.mono_ns + (window_end_ns - prev.realtime_ns) + 60 * kNsPerS;
  const timespec interval{0, static_cast<long>(interval_ms * 1000000)};

  for (;;) {
    nanosleep(&interval, nullptr);
    const Sample s = take_sample();
    const int64_t dmono = s.mono_ns - prev.mono_ns;
    const int64_t drt = s.realtime_ns - prev.realtime_ns;
    const int64_t dtai = s.tai_ns - prev.tai_ns;
    if (!judging && s.realtime_ns >= window_start_ns) {
      judging = true;
      tai_at_start = s.tai_offset_s;
      if (s.state != TIME_ERROR) states.push_back(s.state);
      if (s.state == TIME_INS) ++ins_before_midnight;
      print_sample("window starts", s);
    }
    // Transitions, printed whether judged or not.
    if (s.state != prev.state) print_sample("clock state changed", s);
    if (s.tai_offset_s != prev.tai_offset_s) print_sample("TAI offset changed", s);
    if (abs_ns(drt - dmono) > kJumpToleranceNs) {
      char what[64];
      std::snprintf(what, sizeof what, "REALTIME stepped %+.3f s", seconds_of(drt - dmono));
      print_sample(what, s);
    }
    if (abs_ns(dtai - dmono) > kJumpToleranceNs) {
      char what[64];
      std::snprintf(what, sizeof what, "TAI stepped %+.3f s", seconds_of(dtai - dmono));
      print_sample(what, s);
    }
    const int64_t second = s.realtime_ns / kNsPerS;
    if (second != prev.realtime_ns / kNsPerS && s.realtime_ns >= m_ns - 3 * kNsPerS &&
        s.realtime_ns < m_ns + 3 * kNsPerS && second != last_printed_second) {
      print_sample("second", s);
      last_printed_second = second;
    }
    if (judging) {
      ++samples;
      if (s.state == TIME_ERROR) {
        ++error_samples;
        if (leaped && s.realtime_ns < m_ns) ++error_in_leap_second;
      } else if (states.empty() || states.back() != s.state)
        states.push_back(s.state);
      if (s.state == TIME_INS && !leaped && s.realtime_ns < m_ns) ++ins_before_midnight;
      if (s.tai_offset_s != prev.tai_offset_s) ++tai_changes;
      min_tai_delta_ns = std::min(min_tai_delta_ns, dtai);
      max_tai_gap_ns = std::max(max_tai_gap_ns, dtai);
      max_tai_excess_ns = std::max(max_tai_excess_ns, abs_ns(dtai - dmono));
      if (dtai < 0) failures.push_back("CLOCK_TAI went back at " + label(s.tai_ns));
      if (abs_ns(dtai - dmono) > kJumpToleranceNs)
        failures.push_back("CLOCK_TAI jumped at " + label(s.tai_ns));
      const int64_t rt_step = drt - dmono;
      if (abs_ns(rt_step + kNsPerS) <= kJumpToleranceNs) {
        ++realtime_back_steps;
        leaped = true;
        // At midnight: the last reading before it is in 23:59:59 and the one after in the
        // repeated 23:59:59.
        if (prev.realtime_ns < m_ns - kNsPerS || prev.realtime_ns >= m_ns + kJumpToleranceNs)
          failures.push_back("REALTIME went back 1 s at " + label(prev.realtime_ns) +
                             ", not at midnight");
      } else if (abs_ns(rt_step) > kJumpToleranceNs) {
        failures.push_back("REALTIME stepped by " + std::to_string(seconds_of(rt_step)) + " s at " +
                           label(s.realtime_ns));
      }
      if (s.realtime_ns >= window_end_ns) {
        print_sample("window ends", s);
        break;
      }
    }
    if (s.mono_ns > give_up_mono_ns) {
      print_sample("gave up", s);
      failures.push_back("REALTIME never reached the window's end " + label(window_end_ns));
      break;
    }
    prev = s;
  }
  const long tai_at_end = prev.tai_offset_s;

  std::string seen;
  for (int st : states) seen += std::string(seen.empty() ? "" : " -> ") + state_name(st);
  std::printf("leap_watch: FIGURE clock states in the window: %s\n", seen.c_str());
  if (error_samples > 0)
    std::printf("leap_watch: NOTE %" PRId64 " of the window's %" PRId64
                " samples read TIME_ERROR "
                "(STA_UNSYNC set by the daemon: the clock declared unsynchronised, the state "
                "hidden), left out above\n",
                error_samples, samples);
  std::printf("leap_watch: FIGURE TAI offset %ld -> %ld (%d change%s)\n", tai_at_start, tai_at_end,
              tai_changes, tai_changes == 1 ? "" : "s");
  std::printf("leap_watch: FIGURE %" PRId64
              " samples; CLOCK_TAI between samples: smallest step "
              "%+.6f s, largest %+.6f s, largest departure from MONOTONIC %.6f s; REALTIME went "
              "back 1 s %d time(s)\n",
              samples, seconds_of(min_tai_delta_ns), seconds_of(max_tai_gap_ns),
              seconds_of(max_tai_excess_ns), realtime_back_steps);

  // The states in order: TIME_INS (before midnight), TIME_OOP, then TIME_WAIT or TIME_OK.
  std::size_t ins = states.size(), oop = states.size();
  for (std::size_t i = 0; i < states.size(); ++i) {
    if (states[i] == TIME_INS && ins == states.size()) ins = i;
    if (states[i] == TIME_OOP && ins != states.size() && oop == states.size()) oop = i;
  }
  if (ins_before_midnight == 0) failures.push_back("no TIME_INS before midnight");
  if (oop == states.size()) {
    std::string why = "no TIME_OOP after TIME_INS";
    // adjtimex reports TIME_ERROR instead of the state while STA_UNSYNC is set (only in the
    // few ms between midnight and the tick that carries out the leap does it say TIME_OOP
    // whatever the status): a daemon that declares the clock unsynchronised across the leap
    // hides the inserted second's state from every reader.
    if (error_in_leap_second > 0)
      why += ": adjtimex read TIME_ERROR (STA_UNSYNC set) in " +
             std::to_string(error_in_leap_second) +
             " samples of the inserted second, hiding the kernel's state; the insertion itself "
             "shows in the TAI offset and REALTIME lines above";
    failures.push_back(why);
  } else if (oop + 1 >= states.size() ||
             (states[oop + 1] != TIME_WAIT && states[oop + 1] != TIME_OK)) {
    failures.push_back("no TIME_WAIT or TIME_OK after TIME_OOP");
  }
  if (tai_at_start != tai_before)
    failures.push_back("TAI offset at the window's start is " + std::to_string(tai_at_start) +
                       ", not " + std::to_string(tai_before));
  if (tai_at_end != tai_before + 1)
    failures.push_back("TAI offset at the end is " + std::to_string(tai_at_end) + ", not " +
                       std::to_string(tai_before + 1));
  if (tai_changes != 1)
    failures.push_back("the TAI offset changed " + std::to_string(tai_changes) +
                       " times in the window, not once");
  if (realtime_back_steps != 1)
    failures.push_back("REALTIME went back 1 s " + std::to_string(realtime_back_steps) +
                       " times, not once");
  for (const std::string& f : failures) std::printf("leap_watch: FAILED: %s\n", f.c_str());
  if (failures.empty()) std::printf("leap_watch: passed\n");
  return failures.empty() ? 0 : 1;
}
