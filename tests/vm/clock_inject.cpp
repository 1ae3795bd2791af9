// clock_inject: a guest-only tool that puts a known error into the system clock through adjtimex
// (a step and a frequency) and reads the kernel's NTP state back raw, for tests/vm's discipline
// test. It refuses to run anywhere but a run-in-guest guest, whose clock is its own.
//
//   clock_inject --read                       print one line: adjtimex(modes = 0)
//   clock_inject --step-ns N --freq-ppm F     ADJ_SETOFFSET by N ns, then ADJ_FREQUENCY = F ppm
//   clock_inject --set-s S                    CLOCK_REALTIME = S (POSIX seconds), e.g. the leap
//                                             test's start, 20 s before its midnight
//   clock_inject --leap insert|delete|none --tai N
//                                             STA_INS / STA_DEL (or neither) and ADJ_TAI = N, so
//                                             the kernel inserts or deletes a leap second at the
//                                             next UTC midnight (the leap test's harness check,
//                                             standing in for taid's leapsecmode system)
//
// The read-out is deliberately not lib/clock's: the test must not judge taid by taid's own code.
#include <sys/timex.h>
#include <time.h>

#include <cerrno>
#include <cinttypes>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>

namespace {

// run-in-guest sets both: the variable in its /init's environment and the parameter on the guest
// kernel's command line. One alone could be copied to a host by accident; both together cannot
// come from anywhere but that harness's guest.
constexpr const char* kGuestEnv = "TAID_TEST_GUEST";
constexpr const char* kGuestParam = "taid.test_guest=1";

bool in_test_guest() {
  const char* env = std::getenv(kGuestEnv);
  if (env == nullptr || std::strcmp(env, "1") != 0) return false;
  std::ifstream cmdline("/proc/cmdline");
  std::string word;
  while (cmdline >> word)
    if (word == kGuestParam) return true;
  return false;
}

constexpr int64_t kNsPerS = 1000000000;

int print_state() {
  timex tx{};
  const int state = ::adjtimex(&tx);  // modes = 0: read only
  if (state < 0) {
    std::fprintf(stderr, "clock_inject: adjtimex read: %s\n", std::strerror(errno));
    return 1;
  }
  // STA_NANO says whether offset is in ns or us; freq is ppm with a 16-bit fraction.
  const int64_t offset_ns = static_cast<int64_t>(tx.offset) * ((tx.status & STA_NANO) ? 1 : 1000);
  std::printf("state=%d status=0x%04x unsync=%d freq_ppm=%.3f offset_ns=%" PRId64
              " maxerror_us=%ld esterror_us=%ld constant=%ld tick_us=%ld tai=%d\n",
              state, static_cast<unsigned>(tx.status), (tx.status & STA_UNSYNC) ? 1 : 0,
              static_cast<double>(tx.freq) / 65536.0, offset_ns, tx.maxerror, tx.esterror,
              tx.constant, tx.tick, tx.tai);
  return 0;
}

int inject(int64_t step_ns, double freq_ppm) {
  timex step{};
  step.modes = ADJ_SETOFFSET | ADJ_NANO;
  // The kernel wants tv_usec (here ns) in [0, 1 s): a negative step borrows a second.
  step.time.tv_sec = static_cast<time_t>(step_ns / kNsPerS);
  step.time.tv_usec = static_cast<suseconds_t>(step_ns % kNsPerS);
  if (step.time.tv_usec < 0) {
    step.time.tv_sec -= 1;
    step.time.tv_usec += kNsPerS;
  }
  if (::adjtimex(&step) < 0) {
    std::fprintf(stderr, "clock_inject: ADJ_SETOFFSET %" PRId64 " ns: %s\n", step_ns,
                 std::strerror(errno));
    return 1;
  }
  timex freq{};
  freq.modes = ADJ_FREQUENCY;
  freq.freq = std::lround(freq_ppm * 65536.0);
  if (::adjtimex(&freq) < 0) {
    std::fprintf(stderr, "clock_inject: ADJ_FREQUENCY %.3f ppm: %s\n", freq_ppm,
                 std::strerror(errno));
    return 1;
  }
  std::printf("clock_inject: stepped %+" PRId64 " ns, frequency set to %+.3f ppm\n", step_ns,
              freq_ppm);
  return print_state();
}

int arm_leap(const char* leap, long tai) {
  timex now{};
  if (::adjtimex(&now) < 0) {
    std::fprintf(stderr, "clock_inject: adjtimex read: %s\n", std::strerror(errno));
    return 1;
  }
  // The bits a process may write (STA_RONLY excluded), every one as it was but the leap bits.
  // STA_PLL stays as it was: clearing it would reset the kernel's state machine to TIME_OK.
  constexpr int kReadOnly = STA_PPSSIGNAL | STA_PPSJITTER | STA_PPSWANDER | STA_PPSERROR |
                            STA_CLOCKERR | STA_NANO | STA_MODE | STA_CLK;
  int status = now.status & ~kReadOnly & ~(STA_INS | STA_DEL);
  if (std::strcmp(leap, "insert") == 0) status |= STA_INS;
  if (std::strcmp(leap, "delete") == 0) status |= STA_DEL;
  timex tx{};
  tx.modes = ADJ_STATUS | ADJ_TAI;
  tx.status = status;
  tx.constant = tai;
  if (::adjtimex(&tx) < 0) {
    std::fprintf(stderr, "clock_inject: ADJ_STATUS|ADJ_TAI: %s\n", std::strerror(errno));
    return 1;
  }
  std::printf("clock_inject: leap %s armed, TAI offset %ld s\n", leap, tai);
  return print_state();
}

bool parse_number(const char* text, double& out) {
  char* end = nullptr;
  errno = 0;
  out = std::strtod(text, &end);
  return errno == 0 && end != text && *end == '\0' && std::isfinite(out);
}

int set_clock(int64_t seconds) {
  const timespec ts{static_cast<time_t>(seconds), 0};
  if (::clock_settime(CLOCK_REALTIME, &ts) != 0) {
    std::fprintf(stderr, "clock_inject: clock_settime: %s\n", std::strerror(errno));
    return 1;
  }
  std::printf("clock_inject: CLOCK_REALTIME set to %" PRId64 "\n", seconds);
  return print_state();
}

int usage() {
  std::fputs(
      "usage: clock_inject --read | clock_inject --step-ns N --freq-ppm F | --set-s S |\n"
      "       clock_inject --leap insert|delete|none --tai N\n",
      stderr);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (!in_test_guest()) {
    std::fprintf(stderr,
                 "clock_inject: refusing to run: not in a tests/vm/run-in-guest guest (%s=1 and "
                 "'%s' on /proc/cmdline are both needed); it would change this machine's clock\n",
                 kGuestEnv, kGuestParam);
    return 1;
  }
  if (argc == 2 && std::strcmp(argv[1], "--read") == 0) return print_state();
  if (argc == 3 && std::strcmp(argv[1], "--set-s") == 0) {
    double seconds = 0;
    // 1972 .. 2100: a date a leap table covers.
    if (!parse_number(argv[2], seconds) || seconds < 63072000 || seconds > 4102444800.0 ||
        seconds != std::floor(seconds))
      return usage();
    return set_clock(static_cast<int64_t>(seconds));
  }
  if (argc == 5 && std::strcmp(argv[1], "--leap") == 0 && std::strcmp(argv[3], "--tai") == 0) {
    const std::string leap = argv[2];
    double tai = 0;
    if ((leap != "insert" && leap != "delete" && leap != "none") || !parse_number(argv[4], tai) ||
        tai < 0 || tai > 1000 || tai != std::floor(tai))
      return usage();
    return arm_leap(argv[2], static_cast<long>(tai));
  }
  if (argc != 5 || std::strcmp(argv[1], "--step-ns") != 0 ||
      std::strcmp(argv[3], "--freq-ppm") != 0)
    return usage();
  double step_ns = 0;
  double freq_ppm = 0;
  // ±10 s (the RTC's whole-second start and more) and ±500 ppm cover any test; the kernel would
  // refuse a frequency beyond 500 ppm anyway.
  if (!parse_number(argv[2], step_ns) || std::fabs(step_ns) > 10e9 ||
      !parse_number(argv[4], freq_ppm) || std::fabs(freq_ppm) > 500)
    return usage();
  return inject(static_cast<int64_t>(step_ns), freq_ppm);
}
