// Per-source client exchange (RFC 5905 §8, §9, §13) — sans-IO.
//
// The daemon drives an Exchange with two events and carries out the actions it returns:
//   on_timer(now)         -> SendRequest, SetTimer, ...   (the poll process)
//   on_packet(bytes, rx)  -> SampleAccepted, Demobilize, ...  (the receive process)
// The exchange never reads a clock or touches a socket: times arrive as values, each saying how
// it was taken (user space, kernel, eBPF, hardware).
//
// What it does, and where it departs from the RFC on purpose:
// - The request's transmit timestamp is a random 64-bit cookie (RFC 9109 §5 / chrony), so a
//   reply is matched by value, not by a clock reading an attacker could guess. The real T1 is
//   kept locally. The daemon sends every request from a fresh ephemeral port (RFC 9109).
// - Sanity tests in the order that keeps off-path packets from changing any state: zero
//   transmit, duplicate, no request outstanding, bogus origin; only then KoD, unsynchronized,
//   stratum, zero receive, precision, server interval (T3 − T2 within 0..4 s) and root distance.
//   A reply that passes the origin test ends the request (one reply per request); one that also
//   passes the header tests sets the reach bit even if a fitness test then drops it.
// - The reach register shifts once per request, burst packets included (as chrony does), so
//   iburst fills it to 377 in eight exchanges.
// - A burst is eight requests 2 s apart (RFC 5905's iburst). A request of it that goes
//   unanswered is replaced by one more, up to eight more (chrony's bursts likewise count good
//   replies, within a cap on requests): the burst is there to learn the frequency before the
//   poll grows, and on a lossy path four replies gave it 8–11 ppm wrong, which a run of lost
//   polls then turned into milliseconds (sim loss33, seeds 3 and 4).
// - Poll control: while unreachable the poll interval doubles up to maxpoll, and the first
//   reply brings it back to where it was (RFC 5905's poll(); on a lossy path, eight polls lost
//   in a row otherwise left it at maxpoll for good: sim loss33, seed 9). While reachable it
//   follows RFC 5905's clock-discipline hysteresis (count += poll when the residual is below
//   4 × jitter, −= 2 × poll otherwise, step at ±30). Observe-only mode does not correct the
//   clock, so the residual is the change in filtered offset between released samples.
// - Interleaved mode (RFC 9769, chrony's `xleave`): a server can only write an estimate of its
//   transmit time into a reply; its kernel stamp of the real departure exists after the send. In
//   interleaved mode the next reply carries that stamp, and the client measures the *previous*
//   exchange with it: T1, T2 and T4 of exchange n−1, T3 from reply n. The request names the
//   previous exchange by its origin field (the server's T2 of n−1) and carries a second random
//   cookie in its receive field; a server that interleaves echoes that cookie as the reply's
//   origin, one that does not echoes the transmit cookie and the reply is used in basic mode.
//   Every reply that answers our request replaces the previous exchange: with this one when its
//   header is valid, with nothing otherwise, so a request never names an exchange older than
//   the last reply (whose server record, and our T1/T4, may be an hour old).
// - Steps of the local clock: each local stamp may carry the CLOCK_MONOTONIC time of the same
//   instant. A change of (stamp − monotonic) between stamps beyond what slewing at 500 ppm over
//   the time between them can explain (plus kStepMargin) is a step, forward or back: the clock
//   filter, the delay envelope and the interleaved state start over (their local times no
//   longer compare with new ones: the filter's never-older rule would block every sample until
//   the clock passed the old T4 again), and an exchange whose stamps straddle the step is not
//   used. Logged once per step. A step taid makes itself is no such event: see the next item.
// - Changes taid makes to the local clock (correct_for_local_clock): every local time the
//   exchange holds is remapped, and every offset remeasured, as the new clock would have read
//   them (filter/local_clock_change.hpp), as chrony's SST_SlewSamples corrects its history; so
//   our own steering never reads as a change of the source nor as a step of the local clock.
// - The offset a source reports (offset_estimate) is the delay envelope's when its error bound
//   is below the clock filter's pick's, else the pick's: with few samples the envelope's
//   frequency is loose and the pick is the better guess. Both bounds assume a symmetric path
//   whose one-way delays are at least D̂ less the queueing the envelope's fastest packets are
//   expected to carry (mean queueing / samples): the pick's is then δ/2 less that, the
//   envelope's how far lines keeping that clearance from every bound put the offset. (Without
//   an assumption on the path both bounds are the same allowance for asymmetry, ~D, and do not
//   tell the two apart.)
// - Each poll interval is stretched by a random factor in [1, 1 + 1/16) (ntpd stretches by up to
//   255/4096, chrony by up to 2 %), so clients started together drift apart instead of hitting
//   a server in step. Never shorter than 2^poll: servers rate-limit against the poll a request
//   advertises. Burst spacing stays fixed (the RFC's and chrony's 2 s).
// - KoD RATE raises a floor under the poll interval that the hysteresis never goes below
//   again (chrony raises its minpoll the same way).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "core/time.hpp"
#include "filter/clock_filter.hpp"
#include "filter/delay_envelope.hpp"
#include "ntp/packet.hpp"

namespace taid::ntp {

// Poll limits, log2 seconds. RFC 5905's MINPOLL is 4 (16 s); like chrony we allow down to
// 1/64 s for links one owns (LAN, lab, benchmarks), and keep RFC 5905's MAXPOLL.
inline constexpr int kMinPoll = -6;
inline constexpr int kMaxPoll = 17;  // 36 h
inline constexpr int kBurstCount = 8;
inline constexpr Duration kBurstSpacing = Duration::from_s(2);
// Root distance above which a source is not fit to be used (the 16 s bound, = MAXDISP).
inline constexpr Duration kMaxRootDistance = Duration::from_s(16);
// The server's precision field, log2 s: anything outside is not a clock (2^-32 s is below the
// format's resolution, 1 s is no clock at all) and would overflow the dispersion.
inline constexpr int kMinPrecisionLog2 = -32;
inline constexpr int kMaxPrecisionLog2 = 0;
// T3 − T2 above this is not a server answering a request (chrony's MAX_SERVER_INTERVAL).
inline constexpr Duration kMaxServerInterval = Duration::from_s(4);
// Unanswered requests in a row after which interleaved mode starts over in basic mode.
inline constexpr int kMaxInterleavedGap = 4;
// The fastest the local clock can be slewed against CLOCK_MONOTONIC (the kernel's limit), and
// what a pair of readings may be off on top of that: a larger change of (realtime − monotonic)
// between two stamps is a step of the local clock.
inline constexpr double kMaxSlewRate = 500e-6;
inline constexpr Duration kStepMargin = Duration::from_ms(1);
// Poll intervals are stretched by up to 2^-kPollSpreadLog2 of themselves.
inline constexpr int kPollSpreadLog2 = 4;

// How a local timestamp was taken, best last.
enum class TimestampSource : uint8_t { user, kernel, bpf, hardware };
std::string_view to_string(TimestampSource source);

struct LocalTimestamp {
  LocalTimestamp() = default;
  // Spelled out so the stamps built without a monotonic reading (tests, user-space paths) need
  // not name it.
  LocalTimestamp(UtcTime time_, TimestampSource source_, int8_t precision_log2_ = -20,
                 std::optional<Duration> monotonic_ = std::nullopt)
      : time(time_), source(source_), precision_log2(precision_log2_), monotonic(monotonic_) {}

  UtcTime time;
  TimestampSource source = TimestampSource::user;
  int8_t precision_log2 = -20;  // how finely this kind of stamp resolves the instant, log2 s
  // CLOCK_MONOTONIC at the same instant (time since boot), when the daemon read it: the
  // exchange tells steps of the local clock from time passing by comparing the two.
  std::optional<Duration> monotonic;
};

// The poll interval 2^poll_log2_s stretched by a factor in [1, 1 + 2^-kPollSpreadLog2) drawn
// from `random` (uniform over its 64 bits).
Duration randomized_poll_interval(int poll_log2_s, uint64_t random);

struct SourceConfig {
  std::string name;
  int minpoll = 6;
  int maxpoll = 10;
  bool iburst = false;
  bool xleave = false;  // ask for interleaved replies (RFC 9769)
};

// One accepted measurement, before the clock filter.
struct Sample {
  UtcTime time;         // T4, local receive time
  Duration offset;      // θ: positive means the local clock is behind the server
  Duration delay;       // δ, never below the precision of the stamps
  Duration dispersion;  // ε of this sample
  TimestampSource rx_source = TimestampSource::user;
  TimestampSource tx_source = TimestampSource::user;
  bool interleaved = false;  // measured with the server's post-send transmit stamp
  uint8_t stratum = 0;
  Leap leap = Leap::none;
  Duration root_delay;
  Duration root_dispersion;
  uint32_t reference_id = 0;
};

// Actions for the daemon to carry out.
struct SendRequest {
  std::vector<uint8_t> bytes;  // the request; send it from a fresh socket
};
struct SetTimer {
  Duration after;  // call on_timer() again after this long (replaces any pending timer)
};
struct SampleAccepted {
  Sample sample;
  std::optional<filter::Estimate> released;  // set when the clock filter released a new estimate
  std::optional<filter::EnvelopeEstimate> envelope;  // the source's estimate after this sample
};
struct Demobilize {
  std::string reason;  // stop polling this source for good (KoD DENY/RSTR)
};
struct LogLine {
  bool warning = false;
  std::string text;
};
using Action = std::variant<SendRequest, SetTimer, SampleAccepted, Demobilize, LogLine>;
using Actions = std::vector<Action>;

enum class SourceState { init, reachable, unreachable, demobilized };
std::string_view to_string(SourceState state);

// Read-only view for the control socket.
struct SourceStatus {
  SourceState state = SourceState::init;
  int poll_log2_s = 0;
  uint8_t reach = 0;
  int burst_remaining = 0;
  uint64_t requests_sent = 0;
  uint64_t samples = 0;  // replies accepted
  uint64_t interleaved_samples = 0;
  uint64_t rejected = 0;       // replies dropped by a sanity test
  std::string last_rejection;  // why the most recent one was dropped
  std::optional<Sample> last_sample;
  std::optional<UtcTime> last_request;
};

// What a source says the offset is, and which estimator said it.
struct OffsetEstimate {
  Duration offset;             // positive: the local clock is behind the source
  UtcTime time;                // the local time it refers to
  std::string_view estimator;  // "delay_envelope" or "clock_filter"
  // The estimator's bound whatever the path's asymmetry: the pick's δ/2 plus its dispersion
  // (as of the register's last change); the envelope's range of fitting lines (at `time`).
  Duration error_bound;
};

class Exchange {
 public:
  // `random_u64` supplies request cookies; give it a CSPRNG in the daemon.
  Exchange(SourceConfig config, std::function<uint64_t()> random_u64);

  // The poll process: call at start and whenever the last SetTimer expires. `now` is the local
  // time just before the request goes out; it serves as T1 until a better TX stamp arrives.
  Actions on_timer(LocalTimestamp now);

  // A kernel (or hardware) transmit timestamp for the request last sent; replaces its T1, also
  // when the reply has already arrived (interleaved mode uses it in the next exchange).
  void on_transmit_timestamp(LocalTimestamp tx);

  // The receive process. `rx` is T4, the best receive stamp the daemon had for these bytes.
  // `discard`: a reply the caller will not measure (within two seconds of a leap second, where a
  // round trip may span two clocks' leaps) still answers the request and counts in the reach
  // register after the header tests, so the source stays reachable; no sample is made.
  enum class SampleUse { measure, discard };
  Actions on_packet(std::span<const uint8_t> bytes, LocalTimestamp rx,
                    SampleUse use = SampleUse::measure);

  // taid changed the local clock at local time `when`: from then on it runs faster by
  // `dfrequency` (s/s, relative to its old rate) and it was stepped forward by `doffset`. Call
  // it right after the change, before handing in any stamp taken after it. Remapped (t' = t +
  // (t − when)·dfrequency + doffset) and remeasured: the clock filter and delay envelope (their
  // own correct_for_local_clock), the in-flight request's T1, the interleaved previous
  // exchange's T1 and T4, and the step detector's last reading (its time only: its monotonic
  // reading moves by the frequency part only, so (time − monotonic) moves by exactly our step
  // and the next stamp shows no step, while a step by anyone else still shows as one). The poll hysteresis's last
  // released offset is remeasured with its sample: the residual it compares with the jitter is
  // then what the source did that our own steering does not explain. (RFC 5905's residual is
  // the offset left after the discipline's correction; with the servo outside the exchange,
  // what it can see is the change between releases, and our correction is no part of the
  // source's behaviour.) Not remapped: status() (last_sample, last_request), the record of
  // what was measured. Limit: a stamp taken before `when` but handed in after is on the old
  // scale. After a step, a reply queued in the socket across it reads as a step back and the
  // next stamp as a step forward (logged; the estimators start over), a late transmit stamp
  // makes its exchange straddle a step (that sample is dropped); after a frequency change such
  // a stamp is off by (when − t)·dfrequency. The daemon should hand in what it holds first.
  //
  // How CLOCK_MONOTONIC moves with it: adjtimex slews it as it slews CLOCK_REALTIME, so the
  // frequency part of the map always applies to a stamp's monotonic reading too. A step
  // (ADJ_SETOFFSET, OffsetKind::step) moves realtime only. An offset the core is slewing out
  // (OffsetKind::slewed) is, in the core's cooked time scale (timekeeper.hpp), a step of both:
  // cooked stamps carry the slew's remainder on their time and their monotonic reading alike.
  enum class OffsetKind { step, slewed };
  void correct_for_local_clock(UtcTime when, double dfrequency, Duration doffset,
                               OffsetKind kind = OffsetKind::step);
  // A leap second: the UTC scale moved by `remote` at the source (−1 s for an insertion) and by
  // `local` here. Every local stamp moves by `local` as above (`kind` as above: the kernel's
  // leap or the core's leap step is a step, a leap slewed out in the cooked scale is `slewed`),
  // and every offset by remote − local. Both carried it out (local = remote): stamps move, no
  // offset changes. leapsecmode ignore (local = 0): the offsets move, the clock is now off.
  void shift_time_scale(Duration local, Duration remote, OffsetKind kind);

  // Starts a burst of kBurstCount requests (lost ones replaced, up to kBurstCount more) at the
  // burst spacing from the next on_timer, as
  // iburst does at start: the daemon calls it when the local clock was changed behind its back,
  // so the estimators (restarted by the step detector) fill again in seconds, not polls.
  void start_burst();

  const SourceConfig& config() const { return config_; }
  const SourceStatus& status() const { return status_; }
  const filter::ClockFilter& filter() const { return filter_; }
  const filter::DelayEnvelope& envelope() const { return envelope_; }
  // The source's offset: its delay envelope's when that has fitted a line with an error bound
  // below the clock filter's pick's (see the header comment), the pick otherwise; nullopt before
  // either has one.
  std::optional<OffsetEstimate> offset_estimate() const;
  // The lowest poll the hysteresis may choose: minpoll, raised by KoD RATE.
  int poll_floor_log2_s() const { return poll_floor_log2_s_; }

 private:
  void correct(UtcTime when, double dfrequency, Duration doffset, Duration scale_shift,
               OffsetKind kind);
  Actions reject(std::string why);
  Actions on_kiss(const Packet& reply);
  void adjust_poll(const filter::Estimate& released);
  Duration next_interval();
  // Restarts the estimators when `stamp` shows a step of the local clock since the last stamp.
  void check_for_step(const LocalTimestamp& stamp, Actions& actions);

  SourceConfig config_;
  std::function<uint64_t()> random_u64_;
  filter::ClockFilter filter_;
  filter::DelayEnvelope envelope_;
  SourceStatus status_;

  // The request in flight.
  bool awaiting_reply_ = false;
  NtpTimestamp cookie_;         // the transmit timestamp we put on the wire
  NtpTimestamp xleave_cookie_;  // the receive field of an interleaved request, else zero
  LocalTimestamp t1_;           // when it really left
  // The last exchange whose reply passed the header tests, for interleaved mode: our T1 and T4
  // and the server's T2 as it was on the wire (the server finds its own records by that value).
  struct Previous {
    LocalTimestamp t1;
    NtpTimestamp t2;
    LocalTimestamp t4;
    uint64_t request = 0;  // requests_sent when it was made, to attach a late TX stamp
  };
  std::optional<Previous> previous_;
  NtpTimestamp last_transmit_;  // the server transmit timestamp of the last accepted reply
  int poll_counter_ = 0;        // RFC 5905 discipline hysteresis counter
  int unanswered_in_a_row_ = 0;
  int burst_replacements_left_ = 0;  // requests the burst may still add for lost ones
  // The poll the hysteresis had chosen when unreachability began to back it off: restored at
  // the first reply, as RFC 5905's poll() returns hpoll to the system poll once reachable.
  std::optional<int> backed_off_from_log2_s_;
  std::optional<Duration> last_released_offset_;
  int poll_floor_log2_s_ = 0;
  std::optional<LocalTimestamp> last_clock_reading_;  // the last stamp that carried monotonic
};

}  // namespace taid::ntp
