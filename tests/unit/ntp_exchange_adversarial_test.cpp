// Exchange behaviour users meet when the network or an attacker misbehaves: spoofed kiss-o'-death
// packets, truncated datagrams, duplicates and unsolicited replies, and the 2036 NTP era rollover.
// "Changes nothing" is checked two ways: the observable state before and after is identical, and
// a twin exchange (same configuration, same cookies) that never saw the bad packet behaves exactly
// like the victim from then on.
#include <gtest/gtest.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "ntp/exchange.hpp"
#include "tests/unit/ntp_actions.hpp"

namespace taid::ntp {
namespace {

const UtcTime t0 = UtcTime::from_unix_ns(1700000000LL * 1000000000);
// 2036-02-07 06:28:16 UTC: NTP era 1 begins and the 32-bit seconds field wraps to 0.
const UtcTime kEra1 = UtcTime::from_unix_ns(((int64_t{1} << 32) - kNtpUnixEpochDelta) * 1000000000);

Duration ms(int64_t v) { return Duration::from_ms(v); }
Duration us(int64_t v) { return Duration::from_us(v); }
Duration ns(int64_t v) { return Duration::from_ns(v); }

std::string last_log(const Actions& actions) {
  auto logs = all_of<LogLine>(actions);
  return logs.empty() ? "" : logs.back().text;
}

// Everything a user or the daemon can observe of a source, except the rejection counters (which a
// dropped packet is meant to move). Two exchanges with equal snapshots show the same thing.
std::string snapshot(const Exchange& ex) {
  std::ostringstream o;
  const SourceStatus& s = ex.status();
  o << "state=" << to_string(s.state) << " poll=" << s.poll_log2_s << " reach=" << int{s.reach}
    << " burst=" << s.burst_remaining << " sent=" << s.requests_sent << " samples=" << s.samples
    << " interleaved=" << s.interleaved_samples;
  if (s.last_sample)
    o << " last=" << s.last_sample->time.unix_ns() << '/' << s.last_sample->offset.ns() << '/'
      << s.last_sample->delay.ns() << '/' << s.last_sample->interleaved;
  if (s.last_request) o << " request=" << s.last_request->unix_ns();
  for (const filter::Stage& st : ex.filter().stages())
    o << " [" << st.valid << ' ' << st.offset.ns() << ' ' << st.delay.ns() << ' '
      << st.dispersion.ns() << ' ' << st.time.unix_ns() << ']';
  if (const auto& e = ex.filter().estimate())
    o << " filter=" << e->offset.ns() << '/' << e->jitter.ns() << '/' << e->time.unix_ns();
  o << " envelope=" << ex.envelope().size() << '/' << ex.envelope().restarts();
  if (const auto& e = ex.envelope().estimate()) o << '/' << e->offset.ns();
  return o.str();
}

// The actions of two exchanges, written out so that a difference shows in the failure message.
std::string describe(const Actions& actions) {
  std::ostringstream o;
  for (const Action& a : actions) {
    if (const auto* s = std::get_if<SendRequest>(&a)) {
      o << "send(";
      for (const uint8_t b : s->bytes) o << int{b} << ',';
      o << ") ";
    } else if (const auto* t = std::get_if<SetTimer>(&a)) {
      o << "timer(" << t->after.ns() << ") ";
    } else if (const auto* x = std::get_if<SampleAccepted>(&a)) {
      o << "sample(" << x->sample.offset.ns() << ',' << x->sample.delay.ns() << ','
        << x->sample.time.unix_ns() << ',' << x->sample.interleaved << ") ";
    } else if (const auto* d = std::get_if<Demobilize>(&a)) {
      o << "demobilize(" << d->reason << ") ";
    } else if (const auto* l = std::get_if<LogLine>(&a)) {
      o << "log(" << l->text << ") ";
    }
  }
  return o.str();
}

// A fresh exchange whose cookies come from a fixed-seed splitmix64 (cookies that differ in many
// bits, like a CSPRNG's): two made with the same config are twins that send identical requests.
Exchange make(SourceConfig config) {
  return Exchange(std::move(config), [state = uint64_t{0x1234567890abcdefULL}]() mutable {
    uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  });
}

Packet decode_request(const Actions& actions) {
  auto p = decode(only<SendRequest>(actions).bytes);
  EXPECT_TRUE(p.ok());
  return p.ok() ? *p : Packet{};
}

Packet kiss(const Packet& request, const char (&code)[5], UtcTime t) {
  Packet k = reply_to(request, t, t);
  k.stratum = 0;
  k.reference_id = kiss_code(code);
  k.poll = 10;
  return k;
}

Actions deliver(Exchange& ex, const Packet& p, UtcTime t4) {
  const auto bytes = encode(p);
  return ex.on_packet(bytes, {t4, TimestampSource::kernel, -20});
}

// A victim and its twin, driven through the same genuine exchanges; the victim alone receives the
// bad packets. Each step checks the two still agree.
class Twins {
 public:
  explicit Twins(const SourceConfig& config) : victim(make(config)), twin(make(config)) {}

  // Both poll at `now`; returns the (identical) request.
  Packet poll(UtcTime now) {
    const Actions a = victim.on_timer({now, TimestampSource::kernel, -20});
    const Actions b = twin.on_timer({now, TimestampSource::kernel, -20});
    EXPECT_EQ(describe(a), describe(b));
    next_timer = only<SetTimer>(a).after;
    return decode_request(a);
  }
  // Both receive the same genuine reply.
  Actions answer(const Packet& reply, UtcTime t4) {
    const Actions a = deliver(victim, reply, t4);
    const Actions b = deliver(twin, reply, t4);
    EXPECT_EQ(describe(a), describe(b));
    EXPECT_EQ(snapshot(victim), snapshot(twin));
    return a;
  }
  // The server's reply to `request` sent at local time `now`: T2 = now + 2 ms, T3 = T2 + 20 µs
  // (the server 1 ms ahead and 1 ms away). When the request names a previous exchange (xleave),
  // the reply is interleaved like chronyd's: it echoes the receive cookie and carries as T3 the
  // real transmit stamp of the previous reply, 1 µs after the estimate that reply carried.
  Packet reply(const Packet& request, UtcTime now) {
    const UtcTime t2 = now + ms(2);
    Packet r = reply_to(request, t2, t2 + us(20));
    if (!request.receive_time.is_zero() && previous_t2_) {
      r.origin_time = request.receive_time;
      r.transmit_time = NtpTimestamp::from_utc(*previous_t2_ + us(21));
    }
    previous_t2_ = t2;
    return r;
  }
  // `n` genuine exchanges; returns the time of the next poll.
  UtcTime warm_up(UtcTime now, int n) {
    for (int i = 0; i < n; ++i) {
      const Packet req = poll(now);
      const Actions a = answer(reply(req, now), now + ms(2) + us(20));
      EXPECT_EQ(all_of<SampleAccepted>(a).size(), 1U) << i << describe(a);
      now = now + next_timer;
    }
    return now;
  }
  // Delivers a bad packet to the victim alone and checks it was dropped with `reason`, moved the
  // rejection counter by one, and changed nothing else.
  void expect_dropped(const std::vector<uint8_t>& bytes, UtcTime t4, const std::string& reason) {
    const std::string before = snapshot(victim);
    const uint64_t rejected = victim.status().rejected;
    const Actions a = victim.on_packet(bytes, {t4, TimestampSource::kernel, -20});
    EXPECT_TRUE(all_of<SampleAccepted>(a).empty()) << describe(a);
    EXPECT_TRUE(all_of<Demobilize>(a).empty()) << describe(a);
    EXPECT_TRUE(all_of<SetTimer>(a).empty()) << describe(a);
    EXPECT_TRUE(all_of<SendRequest>(a).empty()) << describe(a);
    EXPECT_NE(last_log(a).find(reason), std::string::npos) << last_log(a);
    EXPECT_EQ(victim.status().rejected, rejected + 1);
    EXPECT_NE(victim.status().last_rejection.find(reason), std::string::npos)
        << victim.status().last_rejection;
    EXPECT_EQ(snapshot(victim), before);
    EXPECT_EQ(snapshot(victim), snapshot(twin));
  }
  void expect_dropped(const Packet& p, UtcTime t4, const std::string& reason) {
    expect_dropped(encode(p), t4, reason);
  }

  Exchange victim;
  Exchange twin;
  Duration next_timer;

 private:
  std::optional<UtcTime> previous_t2_;
};

uint32_t kiss_code_of(std::string_view code) {
  uint32_t v = 0;
  for (const char c : code.substr(0, 4)) v = (v << 8) | static_cast<uint8_t>(c);
  return v;
}

// --- 1. Spoofed kiss-o'-death ---------------------------------------------------------------

struct Spoof {
  const char* name;
  const char* code;
  bool xleave;
  // The origin an off-path attacker puts in its KoD, given our request and the one before it.
  uint64_t (*origin)(const Packet& request, const Packet& previous);
};

class SpoofedKissTest : public ::testing::TestWithParam<Spoof> {};

TEST_P(SpoofedKissTest, ChangesNothingAndTheGenuineReplyStillCounts) {
  const Spoof& spoof = GetParam();
  Twins twins({"s", 4, 10, false, spoof.xleave});
  UtcTime now = twins.warm_up(t0, 3);
  const Packet previous = twins.poll(now);
  (void)twins.answer(twins.reply(previous, now), now + ms(2) + us(20));
  now = now + twins.next_timer;
  const Packet request = twins.poll(now);
  if (spoof.xleave) {
    ASSERT_FALSE(request.receive_time.is_zero());  // the request carries a second cookie
  }

  Packet forged = kiss(request, "DENY", now + ms(1));
  forged.reference_id = kiss_code_of(spoof.code);
  forged.origin_time = NtpTimestamp::from_raw(spoof.origin(request, previous));
  twins.expect_dropped(forged, now + ms(1), "bogus");
  EXPECT_EQ(twins.victim.status().state, SourceState::reachable);
  EXPECT_EQ(twins.victim.status().poll_log2_s, twins.twin.status().poll_log2_s);

  // The request is still outstanding: the genuine reply is accepted, identically on both.
  const Actions a = twins.answer(twins.reply(request, now), now + ms(2) + us(20));
  EXPECT_EQ(all_of<SampleAccepted>(a).size(), 1U) << describe(a);
  // And the next poll goes out at the same interval with the same request.
  now = now + twins.next_timer;
  (void)twins.poll(now);
  EXPECT_EQ(twins.victim.status().requests_sent, 6U);
}

uint64_t zero_origin(const Packet&, const Packet&) { return 0; }
uint64_t one_bit_off(const Packet& r, const Packet&) { return r.transmit_time.raw() ^ 1; }
uint64_t last_cookie(const Packet&, const Packet& p) { return p.transmit_time.raw(); }
// In interleaved mode the request's origin field holds the server's T2 of the previous exchange,
// which an attacker watching the server's replies could know; it is not one of our cookies.
uint64_t request_origin(const Packet& r, const Packet&) { return r.origin_time.raw(); }

INSTANTIATE_TEST_SUITE_P(
    Adversarial, SpoofedKissTest,
    ::testing::Values(Spoof{"DenyZeroOrigin", "DENY", false, zero_origin},
                      Spoof{"DenyOneBitOff", "DENY", false, one_bit_off},
                      Spoof{"DenyLastRequestsCookie", "DENY", false, last_cookie},
                      Spoof{"RstrZeroOrigin", "RSTR", false, zero_origin},
                      Spoof{"RstrOneBitOff", "RSTR", false, one_bit_off},
                      Spoof{"RstrLastRequestsCookie", "RSTR", false, last_cookie},
                      Spoof{"RateZeroOrigin", "RATE", false, zero_origin},
                      Spoof{"RateOneBitOff", "RATE", false, one_bit_off},
                      Spoof{"RateLastRequestsCookie", "RATE", false, last_cookie},
                      Spoof{"DenyInterleavedRequestOrigin", "DENY", true, request_origin},
                      Spoof{"RstrInterleavedOneBitOff", "RSTR", true, one_bit_off},
                      Spoof{"RateInterleavedRequestOrigin", "RATE", true, request_origin},
                      Spoof{"RateInterleavedLastCookie", "RATE", true, last_cookie}),
    [](const auto& param_info) { return std::string(param_info.param.name); });

// A KoD that does echo our cookie, but arrives after the genuine reply already answered the request
// (a replay, or a second packet from an on-path box): one reply per request, so it is dropped.
TEST(SpoofedKiss, LateKissWithOurCookieChangesNothing) {
  for (const char* code : {"DENY", "RSTR", "RATE"}) {
    SCOPED_TRACE(code);
    Twins twins({"s", 4, 10, false});
    const Packet request = twins.poll(t0);
    (void)twins.answer(reply_to(request, t0 + ms(2), t0 + ms(2) + us(20)), t0 + ms(3));
    Packet late = kiss(request, "DENY", t0 + ms(4));
    late.reference_id = kiss_code_of(code);
    twins.expect_dropped(late, t0 + ms(5), "no request outstanding");
    (void)twins.poll(t0 + twins.next_timer);
  }
}

TEST(GenuineKiss, DenyAndRstrWithOurCookieDemobilize) {
  for (const bool xleave : {false, true}) {
    for (const char* code : {"DENY", "RSTR"}) {
      SCOPED_TRACE(std::string(code) + (xleave ? " interleaved" : " basic"));
      Twins twins({"s", 4, 10, false, xleave});
      UtcTime now = twins.warm_up(t0, 2);
      const Packet request = twins.poll(now);
      Packet k = kiss(request, "DENY", now + ms(1));
      k.reference_id = kiss_code_of(code);
      if (xleave) k.origin_time = request.receive_time;  // echoes our interleaved cookie
      const Actions a = deliver(twins.victim, k, now + ms(2));
      ASSERT_EQ(all_of<Demobilize>(a).size(), 1U) << describe(a);
      EXPECT_NE(only<Demobilize>(a).reason.find(code), std::string::npos);
      EXPECT_TRUE(all_of<SampleAccepted>(a).empty());
      EXPECT_EQ(twins.victim.status().state, SourceState::demobilized);
      // Never polled again, and nothing it receives does anything.
      EXPECT_TRUE(twins.victim.on_timer({now + Duration::from_s(60), TimestampSource::kernel, -20})
                      .empty());
      EXPECT_TRUE(
          deliver(twins.victim, reply_to(request, now + ms(1), now + ms(1)), now + ms(3)).empty());
      EXPECT_EQ(twins.victim.status().requests_sent, 3U);
    }
  }
}

TEST(GenuineKiss, RateWithOurCookieRaisesThePollAndEndsTheBurst) {
  Twins twins({"s", 4, 10, true});
  const Packet request = twins.poll(t0);
  ASSERT_EQ(twins.victim.status().burst_remaining, 7);
  Packet k = kiss(request, "RATE", t0 + ms(1));
  k.poll = 3;  // below our own poll: we still back off one step
  const Actions a = deliver(twins.victim, k, t0 + ms(2));
  EXPECT_TRUE(all_of<Demobilize>(a).empty());
  EXPECT_EQ(twins.victim.status().poll_log2_s, 5);
  EXPECT_EQ(twins.victim.status().burst_remaining, 0);
  EXPECT_EQ(twins.victim.status().state, SourceState::init);  // a KoD is not a sample
  // The next request waits about 2^5 s (poll randomization may move it a little), where the twin
  // still bursts after 2 s.
  const Duration after = only<SetTimer>(a).after;
  EXPECT_GT(after, Duration::from_s(16)) << after.to_string();
  EXPECT_LE(after, Duration::from_s(64)) << after.to_string();
  EXPECT_EQ(twins.next_timer, Duration::from_s(2));
  // The next poll keeps the RATE poll: the kiss was an answer (RateKissIsAnAnswerNotSilence), and
  // the poll never comes back under the RATE floor.
  const Actions next = twins.victim.on_timer({t0 + after, TimestampSource::kernel, -20});
  const Duration then = only<SetTimer>(next).after;
  EXPECT_GT(then, Duration::from_s(16)) << then.to_string();
  EXPECT_GE(decode_request(next).poll, 5);
}

// A genuine RATE kiss is an answer: the poll after it must not count the source as silent (it
// used to log "unreachable, no reply to 1 request(s)" and double the poll a second time, 2^4 s ->
// 2^5 by RATE -> 2^6).
TEST(GenuineKiss, RateKissIsAnAnswerNotSilence) {
  Exchange ex = make({"s", 4, 10, false});
  const Packet request = decode_request(ex.on_timer({t0, TimestampSource::kernel, -20}));
  Packet k = kiss(request, "RATE", t0 + ms(1));
  k.poll = 3;  // the server asks for no more than one step back
  const Actions a = deliver(ex, k, t0 + ms(2));
  ASSERT_EQ(ex.status().poll_log2_s, 5);
  const Actions next = ex.on_timer({t0 + only<SetTimer>(a).after, TimestampSource::kernel, -20});
  for (const LogLine& l : all_of<LogLine>(next))
    EXPECT_EQ(l.text.find("no reply"), std::string::npos) << l.text;
  EXPECT_NE(ex.status().state, SourceState::unreachable);
  EXPECT_EQ(decode_request(next).poll, 5);
}

// --- 2. Truncated datagrams ---------------------------------------------------------------

TEST(Truncated, EveryPrefixOfAReplyIsDroppedAndTheRequestSurvives) {
  Twins twins({"s", 4, 6, false});
  UtcTime now = twins.warm_up(t0, 2);
  const Packet request = twins.poll(now);
  const Packet reply = twins.reply(request, now);
  const std::vector<uint8_t> bytes = encode(reply);
  ASSERT_EQ(bytes.size(), kHeaderSize);
  for (std::size_t n = 0; n < kHeaderSize; ++n) {
    SCOPED_TRACE(n);
    const std::vector<uint8_t> prefix(bytes.begin(),
                                      bytes.begin() + static_cast<std::ptrdiff_t>(n));
    twins.expect_dropped(prefix, now + ms(3),
                         "malformed: header: " + std::to_string(n) + " bytes, need 48");
  }
  EXPECT_EQ(twins.victim.status().rejected, 48U);
  const Actions a = twins.answer(reply, now + ms(3));
  EXPECT_EQ(all_of<SampleAccepted>(a).size(), 1U) << describe(a);
}

// A reply with one 28-byte extension field (the smallest a last field without MAC can be), cut
// anywhere inside the field. RFC 7822 §7.5 makes 4, 20 and 24 trailing bytes a MAC trailer, so
// those cuts are well-formed packets (taid ignores MACs it has no key for, as chrony does); every
// other cut is dropped naming the field, and the request still waits for its real reply.
TEST(Truncated, ExtensionFieldCutShortIsDroppedAndTheRequestSurvives) {
  Twins twins({"s", 4, 6, false});
  UtcTime now = twins.warm_up(t0, 2);
  const Packet request = twins.poll(now);
  Packet reply = twins.reply(request, now);
  reply.extensions = {{0x0104, std::vector<uint8_t>(24, 0xAB)}};
  const std::vector<uint8_t> bytes = encode(reply);
  ASSERT_EQ(bytes.size(), kHeaderSize + 28);
  int dropped = 0;
  for (std::size_t tail = 1; tail < 28; ++tail) {
    if (tail == 4 || tail == 20 || tail == 24) continue;
    SCOPED_TRACE(tail);
    const std::vector<uint8_t> cut(bytes.begin(),
                                   bytes.begin() + static_cast<std::ptrdiff_t>(kHeaderSize + tail));
    const std::string reason = tail > 24
                                   ? "malformed: extension field 1 length: 28 runs past the end (" +
                                         std::to_string(tail) + " bytes left)"
                                   : "malformed: mac: " + std::to_string(tail) + " bytes";
    twins.expect_dropped(cut, now + ms(3), reason);
    ++dropped;
  }
  EXPECT_EQ(dropped, 24);
  // A field that claims more than the datagram holds, in a packet of exactly 48 + 28 bytes.
  std::vector<uint8_t> lying = bytes;
  lying[kHeaderSize + 3] = 32;
  twins.expect_dropped(lying, now + ms(3),
                       "malformed: extension field 1 length: 32 runs past the end (28 bytes left)");
  const Actions a = twins.answer(reply, now + ms(3));
  EXPECT_EQ(all_of<SampleAccepted>(a).size(), 1U) << describe(a);
}

// --- 4. Duplicates and unsolicited replies ----------------------------------------------------

TEST(Unsolicited, ReplyBeforeAnyRequestChangesNothing) {
  Twins twins({"s", 4, 6, true});
  // An attacker who guessed the first cookie ahead of time (here: it read the twin's request).
  Exchange peek = make({"s", 4, 6, true});
  const Packet fake = decode_request(peek.on_timer({t0, TimestampSource::kernel, -20}));
  twins.expect_dropped(reply_to(fake, t0, t0), t0, "no request outstanding");
  // The first request and its reply go exactly as the twin's.
  const Packet request = twins.poll(t0);
  const Actions a = twins.answer(reply_to(request, t0 + ms(1), t0 + ms(1)), t0 + ms(2));
  EXPECT_EQ(all_of<SampleAccepted>(a).size(), 1U);
  EXPECT_EQ(twins.victim.status().reach, 1);
}

TEST(Unsolicited, SecondReplyToAnsweredRequestChangesNothing) {
  Twins twins({"s", 4, 6, false});
  UtcTime now = twins.warm_up(t0, 3);
  const Packet request = twins.poll(now);
  (void)twins.answer(twins.reply(request, now), now + ms(3));
  // Same cookie, new transmit time (a server answering twice, or an on-path copy altered).
  twins.expect_dropped(reply_to(request, now + ms(5), now + ms(5)), now + ms(6),
                       "no request outstanding");
  (void)twins.poll(now + twins.next_timer);
}

TEST(Duplicate, SameReplyTwiceChangesNothing) {
  for (const bool xleave : {false, true}) {
    SCOPED_TRACE(xleave ? "interleaved" : "basic");
    Twins twins({"s", 4, 6, false, xleave});
    UtcTime now = twins.warm_up(t0, 3);
    const Packet request = twins.poll(now);
    const Packet reply = twins.reply(request, now);
    const Actions a = twins.answer(reply, now + ms(3));
    ASSERT_EQ(all_of<SampleAccepted>(a).size(), 1U);
    EXPECT_EQ(only<SampleAccepted>(a).sample.interleaved, xleave);
    twins.expect_dropped(reply, now + ms(4), "duplicate");
    // Also while the next request is outstanding: the copy must not end that request.
    now = now + twins.next_timer;
    const Packet next = twins.poll(now);
    twins.expect_dropped(reply, now + ms(1), "duplicate");
    const Actions b = twins.answer(twins.reply(next, now), now + ms(3));
    EXPECT_EQ(all_of<SampleAccepted>(b).size(), 1U) << describe(b);
    (void)twins.poll(now + twins.next_timer);
  }
}

// A reply from an exchange before the last one (delayed in the network) echoes an old cookie.
TEST(Duplicate, StaleReplyToAnEarlierRequestChangesNothing) {
  Twins twins({"s", 4, 6, false});
  const Packet first = twins.poll(t0);
  const Packet stale = reply_to(first, t0 + ms(2), t0 + ms(2) + us(20));
  const UtcTime now = t0 + twins.next_timer;  // the first request went unanswered
  const Packet second = twins.poll(now);
  twins.expect_dropped(stale, now + ms(1), "bogus");
  const Actions a = twins.answer(reply_to(second, now + ms(2), now + ms(2) + us(20)), now + ms(3));
  EXPECT_EQ(all_of<SampleAccepted>(a).size(), 1U);
}

// --- 3. The 2036 era rollover in the exchange -------------------------------------------------

struct EraCase {
  const char* name;
  // T1..T4 relative to 2036-02-07 06:28:16 UTC; T1 and T4 on the local clock, T2 and T3 on the
  // server's.
  Duration t1, t2, t3, t4;
  int64_t offset_ns;  // θ = ((T2 − T1) + (T3 − T4)) / 2, truncated toward zero
  int64_t delay_ns;   // δ = (T4 − T1) − (T3 − T2)
};

class EraRolloverTest : public ::testing::TestWithParam<EraCase> {};

TEST_P(EraRolloverTest, OffsetAndDelayToTheNanosecond) {
  const EraCase& c = GetParam();
  Exchange ex = make({"s", 4, 6, false});
  const Packet request = decode_request(ex.on_timer({kEra1 + c.t1, TimestampSource::kernel, -20}));
  const Packet reply = reply_to(request, kEra1 + c.t2, kEra1 + c.t3);
  // On the wire an era-1 stamp has small seconds, an era-0 one seconds near 2^32.
  EXPECT_EQ(reply.receive_time.seconds() < (1U << 31), c.t2 >= Duration{});
  EXPECT_EQ(reply.transmit_time.seconds() < (1U << 31), c.t3 >= Duration{});
  const Actions a = deliver(ex, reply, kEra1 + c.t4);
  const SampleAccepted s = only<SampleAccepted>(a);
  EXPECT_EQ(s.sample.offset.ns(), c.offset_ns);
  EXPECT_EQ(s.sample.delay.ns(), c.delay_ns);
  EXPECT_EQ(s.sample.time, kEra1 + c.t4);
}

INSTANTIATE_TEST_SUITE_P(
    Adversarial, EraRolloverTest,
    ::testing::Values(
        // Local clock 400 ms behind: T1, T4 still in era 0, the server already in era 1.
        // T2 − T1 = 401 ms − 7 ns, T3 − T4 = 397 ms: θ = (798 ms − 7 ns) / 2 = 398999996.5 ns;
        // δ = (4.2 ms − 7 ns) − 0.2 ms.
        EraCase{"ClientEra0ServerEra1", -ms(390) + ns(7), ms(11), ms(11) + us(200), -us(385800),
                398999996, 3999993},
        // Local clock 400 ms ahead: T1, T4 in era 1, the server still in era 0.
        // T2 − T1 = −398 ms − 3 ns, T3 − T4 = −402 ms: θ = (−800 ms − 3 ns) / 2;
        // δ = (4.5 ms − 2 ns) − (0.5 ms + 1 ns).
        EraCase{"ClientEra1ServerEra0", ms(390) + ns(3), -ms(8), -us(7500) + ns(1),
                us(394500) + ns(1), -400000001, 3999997},
        // The rollover inside the server's turnaround: T1, T2 in era 0, T3, T4 in era 1.
        // θ = ((1 ms + 250 ns) + (−1 ms − 100 ns)) / 2 = 75 ns; δ = (4 ms + 100 ns) − (2 ms − 250
        // ns).
        EraCase{"RolloverInServerTurnaround", -ms(2), -ms(1) + ns(250), ms(1), ms(2) + ns(100), 75,
                2000350},
        // The rollover during the request's flight: only T1 in era 0.
        // θ = ((1.5 ms + 1 ns) + (−1.49 ms)) / 2 = 5000.5 ns; δ = 3 ms − (10 µs − 1 ns).
        EraCase{"RolloverOnTheWayOut", -ms(1), us(500) + ns(1), us(510), ms(2), 5000, 2990001},
        // The rollover during the reply's flight: only T4 in era 1.
        // θ = ((1 ms − 9 ns) + (−1.9 ms − 2 ns)) / 2 = −450005.5 ns;
        // δ = (3 ms + 1 ns) − (0.1 ms + 8 ns).
        EraCase{"RolloverOnTheWayBack", -ms(3), -ms(2) - ns(9), -us(1900) - ns(1), ns(1), -450005,
                2899993},
        // Local clock in era 1, 30 s ahead of a server still in era 0.
        // θ = ((−30 s + 1 ms) + (−30 s − 0.9 ms)) / 2 = −29.99995 s; δ = 2 ms − 0.1 ms.
        EraCase{"LocalEra1ServerEra0ThirtySecondsBehind", Duration::from_s(20),
                -Duration::from_s(10) + ms(1), -Duration::from_s(10) + us(1100),
                Duration::from_s(20) + ms(2), -29999950000, 1900000},
        // The other way: local clock in era 0, 30 s behind a server in era 1.
        // θ = ((30 s + 1 ms) + (30 s − 0.9 ms)) / 2 = 30.00005 s; δ = 2 ms − 0.1 ms.
        EraCase{"LocalEra0ServerEra1ThirtySecondsAhead", -Duration::from_s(20),
                Duration::from_s(10) + ms(1), Duration::from_s(10) + us(1100),
                -Duration::from_s(20) + ms(2), 30000050000, 1900000},
        // Local clock a day into era 1, the server a day before it (two days behind): the server's
        // stamps still belong to the era nearest T1.
        EraCase{"LocalEra1ServerEra0TwoDaysBehind", Duration::from_s(86400),
                -Duration::from_s(86400) + ms(1), -Duration::from_s(86400) + ms(1) + us(30),
                Duration::from_s(86400) + ms(2), -172800000000000 + 15000, 1970000}),
    [](const auto& param_info) { return std::string(param_info.param.name); });

// A source followed across the rollover: polls before, at and after it, with the server 250 µs
// ahead and 1 ms away each way. Every sample says the same, the filter keeps releasing, and the
// envelope fits one line through the rollover (a wrong era would be a 136-year step).
TEST(EraRollover, SourceFollowedAcrossTheRollover) {
  Exchange ex = make({"s", 4, 4, false});
  UtcTime now = kEra1 - Duration::from_s(16 * 5) + ns(123);
  int accepted = 0;
  for (int i = 0; i < 10; ++i) {
    const Actions polled = ex.on_timer({now, TimestampSource::kernel, -20});
    const Packet request = decode_request(polled);
    const UtcTime t2 = now + ms(1) + us(250);
    const Actions a = deliver(ex, reply_to(request, t2, t2 + us(50)), now + ms(2) + us(50));
    const SampleAccepted s = only<SampleAccepted>(a);
    EXPECT_EQ(s.sample.offset, us(250)) << i << " at " << now.to_string();
    EXPECT_EQ(s.sample.delay, ms(2)) << i;
    accepted += 1;
    now = now + only<SetTimer>(polled).after;
  }
  EXPECT_EQ(accepted, 10);
  EXPECT_GT(now, kEra1 + Duration::from_s(60));
  ASSERT_TRUE(ex.offset_estimate());
  EXPECT_LE((ex.offset_estimate()->offset - us(250)).abs(), ns(2));
  EXPECT_EQ(ex.envelope().restarts(), 0U);
}

}  // namespace
}  // namespace taid::ntp
