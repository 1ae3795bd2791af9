// Unit tests for the per-source exchange: requests, formulas, sanity tests, KoD, poll control,
// steps of the local clock, the choice between the two estimators, poll randomization.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <iostream>
#include <map>
#include <random>

#include "ntp/exchange.hpp"
#include "tests/unit/ntp_actions.hpp"

namespace taid::ntp {
namespace {

const UtcTime t0 = UtcTime::from_unix_ns(1700000000LL * 1000000000);
Duration ms(int64_t v) { return Duration::from_ms(v); }

class ExchangeTest : public ::testing::Test {
 protected:
  Exchange make(SourceConfig config) {
    return Exchange(std::move(config), [this] { return last_random_ = next_cookie_++; });
  }
  // The poll interval the exchange must have drawn last: the random value goes to the timer
  // after the request's cookies.
  Duration randomized(int poll_log2_s) const {
    return randomized_poll_interval(poll_log2_s, last_random_);
  }
  // Sends a request at `t1` and returns it decoded.
  Packet poll(Exchange& ex, UtcTime t1) {
    const Actions actions = ex.on_timer({t1, TimestampSource::user, -20});
    const auto bytes = only<SendRequest>(actions).bytes;
    auto p = decode(bytes);
    EXPECT_TRUE(p.ok());
    return p.ok() ? *p : Packet{};
  }
  static Actions deliver(Exchange& ex, const Packet& p, UtcTime t4,
                         TimestampSource source = TimestampSource::kernel) {
    const auto bytes = encode(p);
    return ex.on_packet(bytes, {t4, source, -20});
  }
  static std::string last_log(const Actions& actions) {
    auto logs = all_of<LogLine>(actions);
    return logs.empty() ? "" : logs.back().text;
  }

  uint64_t next_cookie_ = 0x1234567890abcdefULL;
  uint64_t last_random_ = 0;
};

TEST_F(ExchangeTest, RequestCarriesRandomCookieNotTheClock) {
  Exchange ex = make({"s", 4, 6, false});
  const Packet req = poll(ex, t0);
  EXPECT_EQ(req.mode, Mode::client);
  EXPECT_EQ(req.version, 4);
  EXPECT_EQ(req.transmit_time.raw(), 0x1234567890abcdefULL);
  EXPECT_TRUE(req.origin_time.is_zero());
  EXPECT_TRUE(req.receive_time.is_zero());
  const Packet second = poll(ex, t0 + Duration::from_s(16));
  EXPECT_NE(second.transmit_time, req.transmit_time);
}

TEST_F(ExchangeTest, OffsetAndDelayMatchHandComputedExample) {
  // Server 10 ms ahead; 5 ms out, 1 ms in the server, 5 ms back.
  // T1 = 0, T2 = 15 ms, T3 = 16 ms, T4 = 11 ms:
  // θ = ((15 − 0) + (16 − 11)) / 2 = 10 ms; δ = (11 − 0) − (16 − 15) = 10 ms.
  Exchange ex = make({"s", 4, 6, false});
  const Packet req = poll(ex, t0);
  const Actions a = deliver(ex, reply_to(req, t0 + ms(15), t0 + ms(16)), t0 + ms(11));
  const SampleAccepted s = only<SampleAccepted>(a);
  EXPECT_EQ(s.sample.offset, ms(10));
  EXPECT_EQ(s.sample.delay, ms(10));
  EXPECT_EQ(s.sample.rx_source, TimestampSource::kernel);
  EXPECT_EQ(s.sample.stratum, 2);
  // ε = 2^-20 (server) + 2^-20 (our stamp) + 15 ppm × 11 ms
  EXPECT_EQ(s.sample.dispersion.ns(), 954 + 954 + 165);
  ASSERT_TRUE(s.released);
  EXPECT_EQ(s.released->offset, ms(10));
  EXPECT_EQ(ex.status().reach, 1);
  EXPECT_EQ(ex.status().samples, 1U);
}

TEST_F(ExchangeTest, AsymmetricCaseAndNegativeOffset) {
  // Server 3 ms behind; 2 ms out, 6 ms back, 0.5 ms turnaround.
  // T1=0, T2=−1, T3=−0.5, T4=7.5: θ = ((−1) + (−8)) / 2 = −4.5 ms; δ = 7.5 − 0.5 = 7 ms.
  Exchange ex = make({"s", 4, 6, false});
  const Packet req = poll(ex, t0);
  const auto s = only<SampleAccepted>(deliver(
      ex, reply_to(req, t0 - ms(1), t0 - Duration::from_us(500)), t0 + Duration::from_us(7500)));
  EXPECT_EQ(s.sample.offset, -Duration::from_us(4500));
  EXPECT_EQ(s.sample.delay, ms(7));
}

TEST_F(ExchangeTest, DelayNeverBelowPrecision) {
  Exchange ex = make({"s", 4, 6, false});
  const Packet req = poll(ex, t0);
  // T3 − T2 larger than T4 − T1: a negative δ is clamped to the stamps' precision.
  const auto s = only<SampleAccepted>(deliver(ex, reply_to(req, t0, t0 + ms(2)), t0 + ms(1)));
  EXPECT_EQ(s.sample.delay, Duration::from_log2_s(-20));
}

TEST_F(ExchangeTest, TransmitTimestampReplacesT1) {
  Exchange ex = make({"s", 4, 6, false});
  const Packet req = poll(ex, t0);
  ex.on_transmit_timestamp({t0 + ms(1), TimestampSource::kernel, -24});
  const auto s =
      only<SampleAccepted>(deliver(ex, reply_to(req, t0 + ms(2), t0 + ms(2)), t0 + ms(3)));
  EXPECT_EQ(s.sample.offset, Duration{});
  EXPECT_EQ(s.sample.delay, ms(2));
  EXPECT_EQ(s.sample.tx_source, TimestampSource::kernel);
}

TEST_F(ExchangeTest, EraBoundaryBetweenT1AndServerStamps) {
  // T1 one second before era 1 starts, server stamps just after it.
  const UtcTime era1 =
      UtcTime::from_unix_ns(((int64_t{1} << 32) - kNtpUnixEpochDelta) * 1000000000);
  Exchange ex = make({"s", 4, 6, false});
  const Packet req = poll(ex, era1 - Duration::from_s(1));
  const Packet r = reply_to(req, era1 + ms(500), era1 + ms(501));
  EXPECT_LT(r.receive_time.seconds(), 2U);  // wrapped on the wire
  const auto s = only<SampleAccepted>(deliver(ex, r, era1 - Duration::from_s(1) + ms(2)));
  // θ = ((0.5 + 1) + (0.501 − (−0.998))) / 2 = 1.4995 s
  EXPECT_EQ(s.sample.offset, Duration::from_us(1499500));
}

TEST_F(ExchangeTest, DuplicateReplyRejected) {
  Exchange ex = make({"s", 4, 6, false});
  const Packet req = poll(ex, t0);
  const Packet r = reply_to(req, t0 + ms(1), t0 + ms(1));
  ASSERT_EQ(all_of<SampleAccepted>(deliver(ex, r, t0 + ms(2))).size(), 1U);
  const Actions again = deliver(ex, r, t0 + ms(3));
  EXPECT_TRUE(all_of<SampleAccepted>(again).empty());
  EXPECT_NE(last_log(again).find("duplicate"), std::string::npos);
  EXPECT_EQ(ex.status().rejected, 1U);
}

TEST_F(ExchangeTest, BogusOriginRejectedAndChangesNothing) {
  Exchange ex = make({"s", 4, 6, false});
  const Packet req = poll(ex, t0);
  Packet forged = reply_to(req, t0 + ms(1), t0 + ms(1));
  forged.origin_time = NtpTimestamp::from_raw(req.transmit_time.raw() + 1);
  const Actions a = deliver(ex, forged, t0 + ms(2));
  EXPECT_TRUE(all_of<SampleAccepted>(a).empty());
  EXPECT_NE(last_log(a).find("bogus"), std::string::npos);
  // The genuine reply still gets through: the forgery consumed nothing.
  Packet genuine = reply_to(req, t0 + ms(1), t0 + ms(1) + Duration::from_ns(10));
  EXPECT_EQ(all_of<SampleAccepted>(deliver(ex, genuine, t0 + ms(2))).size(), 1U);
}

TEST_F(ExchangeTest, OnlyOneReplyPerRequest) {
  Exchange ex = make({"s", 4, 6, false});
  const Packet req = poll(ex, t0);
  ASSERT_EQ(
      all_of<SampleAccepted>(deliver(ex, reply_to(req, t0 + ms(1), t0 + ms(1)), t0 + ms(2))).size(),
      1U);
  // A second, different reply echoing the same origin.
  const Actions a = deliver(ex, reply_to(req, t0 + ms(1), t0 + ms(3)), t0 + ms(4));
  EXPECT_TRUE(all_of<SampleAccepted>(a).empty());
  EXPECT_NE(last_log(a).find("no request outstanding"), std::string::npos);
}

struct BadReply {
  const char* name;
  void (*spoil)(Packet&);
  const char* expected;
};

class ExchangeSanityTest : public ExchangeTest, public ::testing::WithParamInterface<BadReply> {};

TEST_P(ExchangeSanityTest, Rejected) {
  Exchange ex = make({"s", 4, 6, false});
  const Packet req = poll(ex, t0);
  Packet r = reply_to(req, t0 + ms(1), t0 + ms(1));
  GetParam().spoil(r);
  const Actions a = deliver(ex, r, t0 + ms(2));
  EXPECT_TRUE(all_of<SampleAccepted>(a).empty());
  EXPECT_NE(last_log(a).find(GetParam().expected), std::string::npos) << last_log(a);
  EXPECT_EQ(ex.status().samples, 0U);
}

TEST_F(ExchangeTest, FitnessRejectionStillCountsAsReachable) {
  // RFC 5905 sets the reach bit once the header is valid; the distance test decides use only.
  Exchange ex = make({"s", 4, 6, false});
  const Packet req = poll(ex, t0);
  Packet r = reply_to(req, t0 + ms(1), t0 + ms(1));
  r.root_dispersion = NtpShort::from_duration(Duration::from_s(17));
  (void)deliver(ex, r, t0 + ms(2));
  EXPECT_EQ(ex.status().samples, 0U);
  EXPECT_EQ(ex.status().reach, 1);
  EXPECT_EQ(ex.status().state, SourceState::reachable);
}

TEST_F(ExchangeTest, HeaderRejectionLeavesReachAlone) {
  Exchange ex = make({"s", 4, 6, false});
  const Packet req = poll(ex, t0);
  Packet r = reply_to(req, t0 + ms(1), t0 + ms(1));
  r.leap = Leap::unsynchronized;
  (void)deliver(ex, r, t0 + ms(2));
  EXPECT_EQ(ex.status().reach, 0);
}

INSTANTIATE_TEST_SUITE_P(
    SanityTests, ExchangeSanityTest,
    ::testing::Values(
        BadReply{"ZeroTransmit", [](Packet& p) { p.transmit_time = {}; }, "zero transmit"},
        BadReply{"ZeroOrigin", [](Packet& p) { p.origin_time = {}; }, "bogus"},
        BadReply{"ZeroReceive", [](Packet& p) { p.receive_time = {}; }, "zero receive"},
        BadReply{"Leap3", [](Packet& p) { p.leap = Leap::unsynchronized; }, "unsynchronized"},
        BadReply{"Stratum16", [](Packet& p) { p.stratum = 16; }, "stratum 16"},
        BadReply{"ClientMode", [](Packet& p) { p.mode = Mode::client; }, "not server"},
        BadReply{
            "RootDistance",
            [](Packet& p) { p.root_dispersion = NtpShort::from_duration(Duration::from_s(17)); },
            "root distance"},
        BadReply{"RootDelay",
                 [](Packet& p) { p.root_delay = NtpShort::from_duration(Duration::from_s(33)); },
                 "exceeds 16 s"},
        BadReply{"PrecisionPositive", [](Packet& p) { p.precision = 40; }, "precision 40"},
        BadReply{"PrecisionTooFine", [](Packet& p) { p.precision = -100; }, "precision -100"},
        BadReply{"ServerIntervalOver4s",
                 [](Packet& p) {
                   p.transmit_time = NtpTimestamp::from_raw(p.receive_time.raw() + (5ULL << 32));
                 },
                 "server interval"},
        BadReply{"TransmitBeforeReceive",
                 [](Packet& p) {
                   p.transmit_time = NtpTimestamp::from_raw(p.receive_time.raw() - (1ULL << 30));
                 },
                 "server interval"},
        BadReply{"UnknownKiss",
                 [](Packet& p) {
                   p.stratum = 0;
                   p.reference_id = kiss_code("ABCD");
                 },
                 "ABCD"}),
    [](const auto& param_info) { return std::string(param_info.param.name); });

TEST_F(ExchangeTest, MalformedReplyNamesTheField) {
  Exchange ex = make({"s", 4, 6, false});
  (void)poll(ex, t0);
  const std::vector<uint8_t> short_packet(20, 0x24);
  const Actions a = ex.on_packet(short_packet, {t0, TimestampSource::user, -20});
  EXPECT_NE(last_log(a).find("malformed: header"), std::string::npos) << last_log(a);
}

TEST_F(ExchangeTest, KissRateBacksOffOnlyAfterOriginCheck) {
  Exchange ex = make({"s", 4, 10, false});
  const Packet req = poll(ex, t0);
  Packet kiss = reply_to(req, t0, t0);
  kiss.stratum = 0;
  kiss.reference_id = kiss_code("RATE");
  kiss.origin_time = NtpTimestamp::from_raw(42);  // spoofed: must be ignored
  (void)deliver(ex, kiss, t0 + ms(1));
  EXPECT_EQ(ex.status().poll_log2_s, 4);
  kiss.origin_time = req.transmit_time;
  const Actions a = deliver(ex, kiss, t0 + ms(1));
  EXPECT_EQ(ex.status().poll_log2_s, 5);
  EXPECT_EQ(only<SetTimer>(a).after, randomized(5));
  EXPECT_NE(last_log(a).find("RATE"), std::string::npos);
}

TEST_F(ExchangeTest, KissRateFollowsServersPoll) {
  Exchange ex = make({"s", 4, 10, true});
  const Packet req = poll(ex, t0);
  Packet kiss = reply_to(req, t0, t0);
  kiss.stratum = 0;
  kiss.poll = 8;
  kiss.reference_id = kiss_code("RATE");
  (void)deliver(ex, kiss, t0 + ms(1));
  EXPECT_EQ(ex.status().poll_log2_s, 8);
  EXPECT_EQ(ex.status().burst_remaining, 0);  // a burst ends on RATE
}

TEST_F(ExchangeTest, KissDenyAndRstrDemobilize) {
  for (const char* code : {"DENY", "RSTR"}) {
    Exchange ex = make({"s", 4, 6, false});
    const Packet req = poll(ex, t0);
    Packet kiss = reply_to(req, t0, t0);
    kiss.stratum = 0;
    kiss.reference_id = kiss_code(code[0] == 'D' ? "DENY" : "RSTR");
    const Actions a = deliver(ex, kiss, t0 + ms(1));
    EXPECT_EQ(all_of<Demobilize>(a).size(), 1U) << code;
    EXPECT_EQ(ex.status().state, SourceState::demobilized);
    EXPECT_TRUE(ex.on_timer({t0 + Duration::from_s(16), TimestampSource::user, -20}).empty());
  }
}

TEST_F(ExchangeTest, IburstSendsEightTwoSecondsApartThenPolls) {
  Exchange ex = make({"s", 4, 6, true});
  UtcTime now = t0;
  for (int i = 0; i < 8; ++i) {
    const Actions a = ex.on_timer({now, TimestampSource::user, -20});
    const Packet req = *decode(only<SendRequest>(a).bytes);
    const Duration next = only<SetTimer>(a).after;
    EXPECT_EQ(next, i < 7 ? Duration::from_s(2) : randomized(4)) << i;
    (void)deliver(ex, reply_to(req, now + ms(1), now + ms(1)), now + ms(2));
    now = now + next;
  }
  EXPECT_EQ(ex.status().reach, 0xff);
  EXPECT_EQ(ex.status().samples, 8U);
  EXPECT_EQ(ex.status().state, SourceState::reachable);
}

// A lost request of the burst is replaced, up to eight more: a lossy path still gives the burst
// about eight replies to learn the frequency from. Here every third request goes unanswered.
TEST_F(ExchangeTest, BurstReplacesLostRequestsUpToEightMore) {
  Exchange ex = make({"s", 4, 6, true});
  UtcTime now = t0;
  int sent = 0, answered = 0;
  while (true) {
    const Actions a = ex.on_timer({now, TimestampSource::user, -20});
    const Packet req = *decode(only<SendRequest>(a).bytes);
    ++sent;
    const Duration next = only<SetTimer>(a).after;
    if (sent % 3 != 0) {
      (void)deliver(ex, reply_to(req, now + ms(1), now + ms(1)), now + ms(2));
      ++answered;
    }
    now = now + next;
    if (next != Duration::from_s(2)) {
      EXPECT_EQ(next, randomized(4));
      break;
    }
    ASSERT_LT(sent, 40);
  }
  // Requests 3, 6, 9 lost: each replaced while the burst was on, 8 + 3 = 11 sent in all
  // (the 12th would be the first poll), 8 of them answered.
  EXPECT_EQ(sent, 11);
  EXPECT_EQ(answered, 8);
  EXPECT_EQ(ex.status().samples, 8U);
}

TEST_F(ExchangeTest, BurstToASilentServerEndsAfterSixteenRequests) {
  Exchange ex = make({"s", 4, 6, true});
  UtcTime now = t0;
  std::vector<Duration> intervals;
  for (int i = 0; i < 18; ++i) {
    const Actions a = ex.on_timer({now, TimestampSource::user, -20});
    intervals.push_back(only<SetTimer>(a).after);
    now = now + intervals.back();
  }
  for (int i = 0; i < 15; ++i) EXPECT_EQ(intervals[i], Duration::from_s(2)) << i;
  // The 16th request ends the burst; unreachable by then, the poll backs off from there.
  EXPECT_GE(intervals[15], randomized(4));
  EXPECT_EQ(ex.status().burst_remaining, 0);
  EXPECT_EQ(ex.status().state, SourceState::unreachable);
}

TEST_F(ExchangeTest, BurstNeverWaitsLongerThanThePoll) {
  Exchange ex = make({"s", -2, -2, true});
  const Actions a = ex.on_timer({t0, TimestampSource::user, -20});
  EXPECT_EQ(only<SetTimer>(a).after, Duration::from_ms(250));
}

TEST_F(ExchangeTest, UnreachableDoublesPollUpToMaxpoll) {
  Exchange ex = make({"s", 4, 7, false});
  UtcTime now = t0;
  std::vector<Duration> intervals, expected;
  bool logged_unreachable = false;
  for (int i = 0; i < 6; ++i) {
    const Actions a = ex.on_timer({now, TimestampSource::user, -20});
    for (const LogLine& l : all_of<LogLine>(a))
      logged_unreachable |= l.text.find("unreachable") != std::string::npos;
    intervals.push_back(only<SetTimer>(a).after);
    expected.push_back(randomized(std::min(4 + i, 7)));  // 16, 32, 64, 128, 128, 128 s
    now = now + intervals.back();
  }
  EXPECT_EQ(intervals, expected);
  EXPECT_TRUE(logged_unreachable);
  EXPECT_EQ(ex.status().state, SourceState::unreachable);
}

// RFC 5905's poll(): the back-off lasts while the server is unreachable; its first reply brings
// the poll back to where the hysteresis had it, and the next poll comes at that interval.
TEST_F(ExchangeTest, FirstReplyAfterUnreachableRestoresThePoll) {
  Exchange ex = make({"s", 4, 10, false});
  UtcTime now = t0;
  Packet req;
  for (int i = 0; i < 5; ++i) {
    const Actions a = ex.on_timer({now, TimestampSource::user, -20});
    req = *decode(only<SendRequest>(a).bytes);
    now = now + only<SetTimer>(a).after;
  }
  EXPECT_EQ(ex.status().poll_log2_s, 8);  // 16 s backed off to 256 s
  const Actions a = deliver(ex, reply_to(req, now + ms(1), now + ms(1)), now + ms(2));
  EXPECT_EQ(ex.status().state, SourceState::reachable);
  EXPECT_EQ(ex.status().poll_log2_s, 4);
  const std::vector<SetTimer> timers = all_of<SetTimer>(a);
  ASSERT_EQ(timers.size(), 1U);
  EXPECT_EQ(timers[0].after, randomized(4));
}

TEST_F(ExchangeTest, MissedPollsShiftDummiesIntoTheFilter) {
  Exchange ex = make({"s", 4, 6, false});
  const Packet req = poll(ex, t0);
  ASSERT_EQ(all_of<SampleAccepted>(deliver(ex, reply_to(req, t0, t0), t0 + ms(1))).size(), 1U);
  EXPECT_EQ(ex.filter().stages()[0].valid, true);
  (void)poll(ex, t0 + Duration::from_s(16));  // reach 10b
  (void)poll(ex, t0 + Duration::from_s(32));  // reach 100b
  EXPECT_TRUE(ex.filter().stages()[0].valid);
  (void)poll(ex, t0 + Duration::from_s(48));  // reach 1000b: last three bits clear -> dummy
  EXPECT_FALSE(ex.filter().stages()[0].valid);
  EXPECT_EQ(ex.filter().valid_stages(), 1U);
}

// The exchange feeds every accepted sample to the delay envelope: after 4 samples the source has
// an estimate; when the server's clock steps by more than the round trip, the old samples no
// longer fit, the exchange says so, and the estimate starts over from the new samples.
TEST_F(ExchangeTest, EnvelopeEstimatesAndStartsOverWhenTheServerSteps) {
  Exchange ex = make({"s", 4, 6, false});
  UtcTime now = t0;
  Duration server_ahead = ms(3);  // 1 ms each way
  std::optional<filter::EnvelopeEstimate> last;
  std::string logged;
  for (int i = 0; i < 12; ++i) {
    if (i == 6) server_ahead = ms(50);  // the server's clock is stepped
    const Packet req = poll(ex, now);
    const UtcTime t2 = now + ms(1) + server_ahead;
    const Actions a = deliver(ex, reply_to(req, t2, t2), now + ms(2));
    const auto accepted = only<SampleAccepted>(a);
    if (i == 6) logged = last_log(a);
    last = accepted.envelope;
    if (i == 3 || i == 5) {
      ASSERT_TRUE(last) << i;
      EXPECT_LE(std::llabs(last->offset.ns() - ms(3).ns()), 2) << i;
    }
    if (i >= 6 && i < 9) {
      EXPECT_FALSE(last) << "sample " << i << " is within 4 of the step";
    }
    // The source's offset: the clock filter's until the envelope has 4 samples, again after
    // the step until it has 4 new ones; then whichever has the smaller bound (here, without
    // queueing, the two tie and the filter keeps it). Either says the server's offset.
    const auto offset = ex.offset_estimate();
    ASSERT_TRUE(offset) << i;
    if (!last) {
      EXPECT_EQ(offset->estimator, std::string_view("clock_filter")) << i;
    }
    EXPECT_LE(std::llabs(offset->offset.ns() - server_ahead.ns()), 2) << i;
    now = now + Duration::from_s(16);
  }
  EXPECT_NE(logged.find("no longer fit one line"), std::string::npos) << logged;
  ASSERT_TRUE(last);
  EXPECT_LE(std::llabs(last->offset.ns() - ms(50).ns()), 2);
  EXPECT_EQ(last->samples, 6u);
  EXPECT_EQ(ex.envelope().restarts(), 1u);
}

TEST_F(ExchangeTest, StablePollsClimbBelowSixteenSecondsToo) {
  Exchange ex = make({"s", -2, 0, false});
  UtcTime now = t0;
  for (int i = 0; i < 200 && ex.status().poll_log2_s < 0; ++i) {
    const Actions a = ex.on_timer({now, TimestampSource::user, -20});
    const Packet req = *decode(only<SendRequest>(a).bytes);
    (void)deliver(ex, reply_to(req, now + ms(2), now + ms(2)),
                  now + ms(2) + Duration::from_us(i % 2));
    now = now + only<SetTimer>(a).after;
  }
  EXPECT_EQ(ex.status().poll_log2_s, 0);
}

TEST_F(ExchangeTest, InterleavedStartsOverAfterFourSilentPolls) {
  Exchange ex = make({"s", 4, 6, false, true});
  (void)deliver(ex, reply_to(poll(ex, t0), t0 + ms(1), t0 + ms(1)), t0 + ms(2));
  UtcTime now = t0;
  Packet req;
  for (int i = 1; i <= 5; ++i) {  // the first four go unanswered
    now = now + Duration::from_s(16);
    req = poll(ex, now);
    if (i <= 4) {
      EXPECT_FALSE(req.origin_time.is_zero()) << i;
    }
  }
  EXPECT_TRUE(req.origin_time.is_zero());  // basic again
  EXPECT_TRUE(req.receive_time.is_zero());
}

TEST_F(ExchangeTest, StablePollsClimbTowardMaxpoll) {
  Exchange ex = make({"s", 4, 6, false});
  UtcTime now = t0;
  for (int i = 0; i < 30 && ex.status().poll_log2_s < 6; ++i) {
    const Actions a = ex.on_timer({now, TimestampSource::user, -20});
    const Packet req = *decode(only<SendRequest>(a).bytes);
    // Constant 1 ms offset, alternating delay so the filter keeps releasing new samples.
    (void)deliver(ex, reply_to(req, now + ms(2), now + ms(2)),
                  now + ms(2) + Duration::from_us(i % 2));
    now = now + only<SetTimer>(a).after;
  }
  EXPECT_EQ(ex.status().poll_log2_s, 6);
}

TEST_F(ExchangeTest, InterleavedRequestNamesThePreviousExchange) {
  Exchange ex = make({"s", 4, 6, false, true});
  const Packet first = poll(ex, t0);
  EXPECT_TRUE(first.origin_time.is_zero());  // nothing to interleave with yet
  EXPECT_TRUE(first.receive_time.is_zero());
  const Packet r1 = reply_to(first, t0 + ms(1), t0 + ms(1) + Duration::from_us(50));
  const auto basic = only<SampleAccepted>(deliver(ex, r1, t0 + ms(2)));
  EXPECT_FALSE(basic.sample.interleaved);
  const Packet second = poll(ex, t0 + Duration::from_s(16));
  EXPECT_EQ(second.origin_time, r1.receive_time);
  EXPECT_FALSE(second.receive_time.is_zero());
  EXPECT_NE(second.receive_time, second.transmit_time);
}

TEST_F(ExchangeTest, InterleavedReplyMeasuresThePreviousExchangeWithItsRealTransmitStamp) {
  // Exchange 1: T1 = 0, T2 = 1 ms, T4 = 2 ms; the server wrote T3 = 1.050 ms (an estimate)
  // but the packet really left at 1.010 ms. Reply 2 carries 1.010 ms as its transmit stamp.
  Exchange ex = make({"s", 4, 6, false, true});
  const Packet first = poll(ex, t0);
  ex.on_transmit_timestamp({t0, TimestampSource::kernel, -24});
  const Packet r1 = reply_to(first, t0 + ms(1), t0 + ms(1) + Duration::from_us(50));
  (void)deliver(ex, r1, t0 + ms(2));
  const UtcTime t1b = t0 + Duration::from_s(16);
  const Packet second = poll(ex, t1b);
  Packet r2 = reply_to(second, t1b + ms(1), t0 + ms(1) + Duration::from_us(10));
  r2.origin_time = second.receive_time;  // the server interleaves
  const auto s = only<SampleAccepted>(deliver(ex, r2, t1b + ms(2)));
  EXPECT_TRUE(s.sample.interleaved);
  // θ = ((1 − 0) + (1.010 − 2)) / 2 = 0.005 ms; δ = (2 − 0) − (1.010 − 1) = 1.990 ms
  EXPECT_EQ(s.sample.offset, Duration::from_us(5));
  EXPECT_EQ(s.sample.delay, Duration::from_us(1990));
  EXPECT_EQ(s.sample.time, t0 + ms(2));
  EXPECT_EQ(s.sample.tx_source, TimestampSource::kernel);
  EXPECT_EQ(ex.status().interleaved_samples, 1U);
}

TEST_F(ExchangeTest, ServerThatDoesNotInterleaveIsUsedInBasicMode) {
  Exchange ex = make({"s", 4, 6, false, true});
  (void)deliver(ex, reply_to(poll(ex, t0), t0 + ms(1), t0 + ms(1)), t0 + ms(2));
  const UtcTime t = t0 + Duration::from_s(16);
  const Packet second = poll(ex, t);
  const auto s =
      only<SampleAccepted>(deliver(ex, reply_to(second, t + ms(1), t + ms(1)), t + ms(2)));
  EXPECT_FALSE(s.sample.interleaved);
  EXPECT_EQ(s.sample.offset, Duration{});
}

TEST_F(ExchangeTest, LateTransmitStampReachesTheNextInterleavedSample) {
  Exchange ex = make({"s", 4, 6, false, true});
  const Packet first = poll(ex, t0 - ms(5));  // user-space T1, 5 ms early
  // The server's estimated T3 (1.050 ms) differs from its real one (1 ms), sent next time.
  (void)deliver(ex, reply_to(first, t0 + ms(1), t0 + ms(1) + Duration::from_us(50)), t0 + ms(2));
  ex.on_transmit_timestamp({t0, TimestampSource::kernel, -24});  // arrives after the reply
  const UtcTime t = t0 + Duration::from_s(16);
  const Packet second = poll(ex, t);
  Packet r2 = reply_to(second, t + ms(1), t0 + ms(1));
  r2.origin_time = second.receive_time;
  const auto s = only<SampleAccepted>(deliver(ex, r2, t + ms(2)));
  ASSERT_TRUE(s.sample.interleaved);
  EXPECT_EQ(s.sample.offset, Duration{});
  EXPECT_EQ(s.sample.delay, ms(2));
}

// --- Steps of the local clock -------------------------------------------------------------

// A local clock whose reading is CLOCK_MONOTONIC plus an offset that a step changes; the server
// runs on the monotonic scale plus `server_ahead`. Stamps carry their monotonic reading, as the
// daemon supplies it.
struct SteppedClock {
  Duration step;                  // what the local clock reads beyond t0 + monotonic
  Duration server_ahead = ms(3);  // the server's clock against t0 + monotonic
  LocalTimestamp at(Duration monotonic) const {
    return {t0 + monotonic + step, TimestampSource::kernel, -20, monotonic};
  }
};

// One exchange at `monotonic` over legs of `leg` each way; returns the reply's actions and the
// on_timer actions through `timer_actions`.
Actions exchange_once(Exchange& ex, const SteppedClock& clock, Duration monotonic, Duration leg,
                      Actions* timer_actions = nullptr) {
  const Actions a = ex.on_timer(clock.at(monotonic));
  if (timer_actions) *timer_actions = a;
  const Packet request = *decode(only<SendRequest>(a).bytes);
  Packet r;
  r.mode = Mode::server;
  r.stratum = 2;
  r.poll = request.poll;
  r.precision = -20;
  r.origin_time = request.transmit_time;
  const UtcTime server_t2 = t0 + monotonic + leg + clock.server_ahead;
  r.receive_time = NtpTimestamp::from_utc(server_t2);
  r.transmit_time = NtpTimestamp::from_utc(server_t2 + Duration::from_us(10));
  const auto bytes = encode(r);
  return ex.on_packet(bytes, clock.at(monotonic + leg * 2 + Duration::from_us(10)));
}

int count_step_logs(const Actions& actions) {
  int n = 0;
  for (const LogLine& l : all_of<LogLine>(actions))
    n += l.text.find("start over") != std::string::npos;
  return n;
}

// A 50 s step back (or forward) of the local clock: the next sample is released by the clock
// filter at once with the new offset, the envelope starts over from post-step samples only, and
// the step is logged once. Before, the never-older rule held every sample back until the clock
// passed the last T4 again (the pre-step offset showed for 46 s in a run), and the envelope mixed
// both scales. The pre-step samples travel faster than the post-step ones, so the filter would
// otherwise keep picking them after a forward step too.
void steps_of_the_local_clock(Exchange& ex, Duration step) {
  SteppedClock clock;
  Duration mono = Duration::from_s(100);
  for (int i = 0; i < 10; ++i, mono += Duration::from_s(16)) {
    const Actions a = exchange_once(ex, clock, mono, ms(1));
    ASSERT_EQ(all_of<SampleAccepted>(a).size(), 1U) << i;
    EXPECT_EQ(count_step_logs(a), 0) << i;
  }
  ASSERT_TRUE(ex.envelope().estimate());
  ASSERT_LE(std::llabs((ex.offset_estimate()->offset - ms(3)).ns()), 2);

  clock.step = step;
  const Duration expected = ms(3) - step;  // the local clock is that much further behind
  int step_logs = 0;
  for (int i = 0; i < 6; ++i, mono += Duration::from_s(16)) {
    Actions timer;
    const Actions a = exchange_once(ex, clock, mono, ms(2), &timer);
    step_logs += count_step_logs(timer) + count_step_logs(a);
    const auto accepted = only<SampleAccepted>(a);
    if (i == 0) {
      ASSERT_TRUE(accepted.released) << "the first post-step sample is released";
      EXPECT_EQ(ex.filter().valid_stages(), 1U);
      EXPECT_EQ(ex.envelope().size(), 1U);
    }
    const auto offset = ex.offset_estimate();
    ASSERT_TRUE(offset) << i;
    EXPECT_LE(std::llabs((offset->offset - expected).ns()), 2) << i << " " << offset->estimator;
  }
  EXPECT_EQ(step_logs, 1);
  ASSERT_TRUE(ex.envelope().estimate());
  EXPECT_EQ(ex.envelope().size(), 6U);
  EXPECT_EQ(ex.envelope().restarts(), 0U);
}

TEST_F(ExchangeTest, LocalClockSteppedBackRestartsBothEstimators) {
  Exchange ex = make({"s", 4, 4, false});
  steps_of_the_local_clock(ex, -Duration::from_s(50));
}

TEST_F(ExchangeTest, LocalClockSteppedForwardRestartsBothEstimators) {
  Exchange ex = make({"s", 4, 4, false});
  steps_of_the_local_clock(ex, Duration::from_s(50));
}

// A step while the request is in flight: T1 is on the old scale, T4 on the new; such a sample
// (its delay negative by the step, clamped to the precision) must not reach the filter, where
// its tiny delay would make it the pick for eight polls.
TEST_F(ExchangeTest, ExchangeStraddlingAStepIsNotUsed) {
  Exchange ex = make({"s", 4, 4, false});
  SteppedClock clock;
  Duration mono = Duration::from_s(100);
  for (int i = 0; i < 3; ++i, mono += Duration::from_s(16))
    ASSERT_EQ(all_of<SampleAccepted>(exchange_once(ex, clock, mono, ms(1))).size(), 1U);
  const Packet request = *decode(only<SendRequest>(ex.on_timer(clock.at(mono))).bytes);
  clock.step = -Duration::from_s(1);
  Packet r = reply_to(request, t0 + mono + ms(1) + clock.server_ahead,
                      t0 + mono + ms(1) + clock.server_ahead);
  const Actions a = ex.on_packet(encode(r), clock.at(mono + ms(2)));
  EXPECT_TRUE(all_of<SampleAccepted>(a).empty());
  EXPECT_EQ(count_step_logs(a), 1);
  EXPECT_NE(last_log(a).find("stepped during the exchange"), std::string::npos) << last_log(a);
  EXPECT_EQ(ex.status().reach & 1, 1);  // the server answered; only the sample is unusable
  mono += Duration::from_s(16);
  const auto next = only<SampleAccepted>(exchange_once(ex, clock, mono, ms(1)));
  ASSERT_TRUE(next.released);
  EXPECT_EQ(next.released->offset, ms(3) + Duration::from_s(1));
}

// Slewing is no step: (realtime − monotonic) drifting at 400 ppm (6.4 ms per 16 s poll, beyond
// the 1 ms margin alone) restarts nothing.
TEST_F(ExchangeTest, SlewingWithinFiveHundredPpmIsNoStep) {
  Exchange ex = make({"s", 4, 4, false});
  SteppedClock clock;
  Duration mono = Duration::from_s(100);
  for (int i = 0; i < 12; ++i, mono += Duration::from_s(16)) {
    clock.step = Duration::from_seconds(400e-6 * (mono - Duration::from_s(100)).seconds());
    Actions timer;
    const Actions a = exchange_once(ex, clock, mono, ms(1), &timer);
    EXPECT_EQ(count_step_logs(timer) + count_step_logs(a), 0) << i;
  }
  EXPECT_EQ(ex.envelope().size(), 12U);
}

// --- Changes taid makes to the local clock -------------------------------------------------

int count_warnings(const Actions& actions) {
  int n = 0;
  for (const LogLine& l : all_of<LogLine>(actions)) n += l.warning;
  return n;
}

// taid steps the local clock 0.5 s forward and says so: no step of the local clock is seen,
// nothing starts over, and the source's offset is the new clock's at once, before any new
// sample. The post-step legs are slower, so the filter keeps picking its remeasured pre-step
// stages. A step by someone else afterwards is still seen, once.
TEST_F(ExchangeTest, OwnStepOfTheLocalClockIsCorrectedNotDetected) {
  Exchange ex = make({"s", 4, 4, false});
  SteppedClock clock;
  Duration mono = Duration::from_s(100);
  for (int i = 0; i < 10; ++i, mono += Duration::from_s(16))
    ASSERT_EQ(all_of<SampleAccepted>(exchange_once(ex, clock, mono, ms(1))).size(), 1U) << i;
  ASSERT_EQ(ex.filter().valid_stages(), 8U);
  ASSERT_EQ(ex.envelope().size(), 10U);

  // 8 s after the last exchange, by the clock as it read before.
  clock.step = ms(500);
  ex.correct_for_local_clock(t0 + mono - Duration::from_s(8), 0, ms(500));
  const Duration expected = ms(3) - ms(500);
  ASSERT_TRUE(ex.offset_estimate());
  EXPECT_LE(std::llabs((ex.offset_estimate()->offset - expected).ns()), 2);
  ASSERT_TRUE(ex.envelope().estimate());
  EXPECT_LE(std::llabs((ex.envelope().estimate()->offset - expected).ns()), 2);
  EXPECT_EQ(ex.filter().estimate()->offset, expected);

  for (int i = 0; i < 6; ++i, mono += Duration::from_s(16)) {
    Actions timer;
    const Actions a = exchange_once(ex, clock, mono, ms(2), &timer);
    EXPECT_EQ(count_warnings(timer) + count_warnings(a), 0) << i << ": " << last_log(a);
    const auto accepted = only<SampleAccepted>(a);
    EXPECT_EQ(accepted.sample.offset, expected) << i;
    EXPECT_FALSE(accepted.released) << i << ": the pre-step stages travelled faster";
    ASSERT_TRUE(ex.offset_estimate()) << i;
    EXPECT_LE(std::llabs((ex.offset_estimate()->offset - expected).ns()), 2) << i;
  }
  EXPECT_EQ(ex.filter().valid_stages(), 8U);
  EXPECT_EQ(ex.filter().estimate()->offset, expected);
  EXPECT_EQ(ex.envelope().size(), 16U);
  EXPECT_EQ(ex.envelope().restarts(), 0U);

  // Someone else steps it 0.5 s further, untold: seen and logged once; both start over.
  clock.step = ms(1000);
  Actions timer;
  const Actions a = exchange_once(ex, clock, mono, ms(2), &timer);
  EXPECT_EQ(count_step_logs(timer) + count_step_logs(a), 1);
  EXPECT_EQ(ex.filter().valid_stages(), 1U);
  EXPECT_EQ(ex.envelope().size(), 1U);
  EXPECT_EQ(only<SampleAccepted>(a).released->offset, ms(3) - ms(1000));
}

// The step while a request is in flight: its T1 is remapped with the rest, so the exchange is
// measured across the step on one scale and used (untold, ExchangeStraddlingAStepIsNotUsed).
TEST_F(ExchangeTest, OwnStepWhileARequestIsInFlightKeepsTheSample) {
  Exchange ex = make({"s", 4, 4, false});
  SteppedClock clock;
  Duration mono = Duration::from_s(100);
  for (int i = 0; i < 3; ++i, mono += Duration::from_s(16))
    ASSERT_EQ(all_of<SampleAccepted>(exchange_once(ex, clock, mono, ms(1))).size(), 1U);
  const Packet request = *decode(only<SendRequest>(ex.on_timer(clock.at(mono))).bytes);
  ex.correct_for_local_clock(t0 + mono + ms(1), 0, ms(500));
  clock.step = ms(500);
  const UtcTime t2 = t0 + mono + ms(1) + clock.server_ahead;
  const Actions a = ex.on_packet(encode(reply_to(request, t2, t2 + Duration::from_us(10))),
                                 clock.at(mono + ms(2) + Duration::from_us(10)));
  EXPECT_EQ(count_warnings(a), 0) << last_log(a);
  const auto accepted = only<SampleAccepted>(a);
  // θ = ((T2 − T1') + (T3 − T4)) / 2 with T1' = T1 + 0.5 s; δ = 2.01 ms − 10 µs.
  EXPECT_EQ(accepted.sample.offset, ms(3) - ms(500));
  EXPECT_EQ(accepted.sample.delay, ms(2));
  EXPECT_EQ(ex.filter().valid_stages(), 4U);
  EXPECT_EQ(ex.envelope().size(), 4U);
}

// Interleaved mode measures the previous exchange, made before the step; its T1 and T4 are
// remapped, so the sample says what the new clock would have measured (untold to the exchange,
// the old stamps would make it 3 ms, the old clock's offset).
TEST_F(ExchangeTest, OwnStepRemapsTheInterleavedPreviousExchange) {
  Exchange ex = make({"s", 4, 6, false, true});
  SteppedClock clock;
  const Duration mono = Duration::from_s(100);
  const Packet first = *decode(only<SendRequest>(ex.on_timer(clock.at(mono))).bytes);
  const UtcTime t2 = t0 + mono + ms(1) + clock.server_ahead;
  // The server's T3 estimate is 50 µs late; its real departure, 10 µs after T2, comes next.
  const Packet r1 = reply_to(first, t2, t2 + Duration::from_us(50));
  ASSERT_EQ(all_of<SampleAccepted>(ex.on_packet(encode(r1), clock.at(mono + ms(2)))).size(), 1U);

  ex.correct_for_local_clock(t0 + mono + Duration::from_s(8), 0, ms(500));
  clock.step = ms(500);
  const Duration mono2 = mono + Duration::from_s(16);
  const Packet second = *decode(only<SendRequest>(ex.on_timer(clock.at(mono2))).bytes);
  ASSERT_EQ(second.origin_time, r1.receive_time);
  const UtcTime t2b = t0 + mono2 + ms(1) + clock.server_ahead;
  Packet r2 = reply_to(second, t2b, t2 + Duration::from_us(10));
  r2.origin_time = second.receive_time;  // the server interleaves
  const Actions a = ex.on_packet(encode(r2), clock.at(mono2 + ms(2)));
  EXPECT_EQ(count_warnings(a), 0) << last_log(a);
  const auto s = only<SampleAccepted>(a);
  ASSERT_TRUE(s.sample.interleaved);
  // Exchange 1 on the new scale: T1' = 100.5 s, T2 = 100.004 s, T3 = 100.00401 s,
  // T4' = 100.502 s: θ = 3.005 ms − 0.5 s, δ = 1.99 ms.
  EXPECT_EQ(s.sample.offset, ms(3) + Duration::from_us(5) - ms(500));
  EXPECT_EQ(s.sample.delay, Duration::from_us(1990));
  EXPECT_EQ(s.sample.time, t0 + mono + ms(2) + ms(500));
}

// Our own steps leave the poll hysteresis alone: an exchange whose clock taid steps by 0.5 s
// every third poll, telling it, climbs from minpoll to maxpoll exactly as one whose clock is
// never stepped. (Comparing the release after a step with the last release before it, as
// measured, would be a residual of 0.5 s: the poll counter would fall instead.)
TEST_F(ExchangeTest, OwnStepsAreNoResidualToThePollHysteresis) {
  Exchange stepped = make({"s", 4, 6, false}), steady = make({"s", 4, 6, false});
  SteppedClock clock, still;
  Duration mono = Duration::from_s(100);
  std::vector<int> polls_stepped, polls_steady;
  for (int i = 0; i < 24; ++i, mono += Duration::from_s(16)) {
    if (i % 3 == 2) {
      stepped.correct_for_local_clock(t0 + mono - Duration::from_s(8) + clock.step, 0, ms(500));
      clock.step += ms(500);
    }
    const auto a = only<SampleAccepted>(exchange_once(stepped, clock, mono, ms(1)));
    const auto b = only<SampleAccepted>(exchange_once(steady, still, mono, ms(1)));
    ASSERT_TRUE(a.released) << i;
    ASSERT_TRUE(b.released) << i;
    EXPECT_EQ(a.released->offset, ms(3) - clock.step) << i;
    polls_stepped.push_back(stepped.status().poll_log2_s);
    polls_steady.push_back(steady.status().poll_log2_s);
  }
  EXPECT_EQ(polls_stepped, polls_steady);
  EXPECT_EQ(polls_stepped.back(), 6);
  EXPECT_EQ(stepped.envelope().restarts(), 0U);
}

// --- Interleaved mode after replies that are not used ---------------------------------------

// A server that interleaves: it answers a request naming one of its earlier receive stamps with
// the real transmit stamp of that exchange. While it says LI = 3 (or stratum 16, or kisses), our
// requests must stop naming the last good exchange: an hour later it would pair stamps an hour
// old, and that sample, placed an hour back, wipes the envelope.
class InterleavedAfterUnusedReplies : public ExchangeTest,
                                      public ::testing::WithParamInterface<BadReply> {};

TEST_P(InterleavedAfterUnusedReplies, NextRequestNamesNoStaleExchange) {
  Exchange ex = make({"s", 6, 6, false, true});
  std::map<uint64_t, UtcTime> real_transmit;  // by the receive stamp on the wire
  UtcTime now = t0;
  const auto serve = [&](const Packet& request, bool good) {
    Packet r = reply_to(request, now + ms(1), now + ms(1) + Duration::from_us(50));
    real_transmit[r.receive_time.raw()] = now + ms(1) + Duration::from_us(20);
    if (!request.origin_time.is_zero()) {
      const auto named = real_transmit.find(request.origin_time.raw());
      if (named != real_transmit.end()) {
        r.origin_time = request.receive_time;  // interleaved: the previous exchange's real T3
        r.transmit_time = NtpTimestamp::from_utc(named->second);
      }
    }
    if (!good) GetParam().spoil(r);
    return deliver(ex, r, now + ms(2));
  };
  for (int i = 0; i < 6; ++i, now = now + Duration::from_s(64))
    ASSERT_EQ(all_of<SampleAccepted>(serve(poll(ex, now), true)).size(), 1U) << i;
  ASSERT_TRUE(ex.envelope().estimate());
  // An hour of replies that pass the origin test and fail a header test.
  for (int i = 0; i < 56; ++i, now = now + Duration::from_s(64)) {
    const Packet request = poll(ex, now);
    if (i > 0) {
      EXPECT_TRUE(request.origin_time.is_zero()) << i << ": names an exchange never used";
    }
    (void)serve(request, false);
  }
  // The server recovers: the first exchange is basic, the envelope keeps its window.
  const auto s = only<SampleAccepted>(serve(poll(ex, now), true));
  EXPECT_FALSE(s.sample.interleaved);
  EXPECT_EQ(s.sample.time, now + ms(2));
  EXPECT_EQ(ex.envelope().restarts(), 0U);
}

INSTANTIATE_TEST_SUITE_P(
    HeaderFailures, InterleavedAfterUnusedReplies,
    ::testing::Values(BadReply{"Leap3", [](Packet& p) { p.leap = Leap::unsynchronized; }, ""},
                      BadReply{"Stratum16", [](Packet& p) { p.stratum = 16; }, ""},
                      BadReply{"UnknownKiss",
                               [](Packet& p) {
                                 p.stratum = 0;
                                 p.reference_id = kiss_code("ABCD");
                               },
                               ""}),
    [](const auto& param_info) { return std::string(param_info.param.name); });

// --- KoD RATE floor -----------------------------------------------------------------------

// After RATE the poll never returns below what the kiss raised it to, though the hysteresis
// would lower it: here every ninth sample is fast with offset 0, the rest slow at 10 ms, so each
// time the fast one leaves the register the released offset jumps by far more than 4 × jitter.
TEST_F(ExchangeTest, KissRateFloorHoldsAgainstTheHysteresis) {
  Exchange ex = make({"s", 4, 10, false});
  UtcTime now = t0;
  const Packet request = poll(ex, now);
  Packet kiss = reply_to(request, now, now);
  kiss.stratum = 0;
  kiss.reference_id = kiss_code("RATE");
  (void)deliver(ex, kiss, now + ms(1));
  ASSERT_EQ(ex.status().poll_log2_s, 5);
  EXPECT_EQ(ex.poll_floor_log2_s(), 5);
  int lowest = 5;
  for (int i = 0; i < 120; ++i) {
    now = now + Duration::from_s(32);
    const Packet req = poll(ex, now);
    const bool fast = i % 9 == 0;
    const Duration leg = fast ? ms(1) : ms(5);
    const Duration ahead = fast ? Duration{} : ms(10);
    (void)deliver(ex, reply_to(req, now + leg + ahead, now + leg + ahead), now + leg * 2);
    lowest = std::min(lowest, ex.status().poll_log2_s);
  }
  EXPECT_EQ(lowest, 5);
}

// --- Poll randomization -------------------------------------------------------------------

// Each interval is 2^poll stretched by a uniform factor in [1, 1 + 1/16): never shorter than the
// poll a request advertises, spread over the whole range, 1 + 1/32 on average.
TEST(PollRandomization, UniformOverTheSixteenthAboveThePoll) {
  std::mt19937_64 rng(7);
  for (const int poll : {-6, 0, 6, 17}) {
    const double nominal = Duration::from_log2_s(poll).seconds();
    double lowest = 2, highest = 0, sum = 0;
    const int n = 20000;
    for (int i = 0; i < n; ++i) {
      const double factor = randomized_poll_interval(poll, rng()).seconds() / nominal;
      lowest = std::min(lowest, factor);
      highest = std::max(highest, factor);
      sum += factor;
    }
    EXPECT_GE(lowest, 1.0) << poll;
    EXPECT_LT(highest, 1.0 + 1.0 / 16) << poll;
    EXPECT_LT(lowest, 1.0 + 0.001) << poll;
    EXPECT_GT(highest, 1.0 + 1.0 / 16 - 0.001) << poll;
    EXPECT_NEAR(sum / n, 1.0 + 1.0 / 32, 0.001) << poll;
  }
  EXPECT_EQ(randomized_poll_interval(6, 0), Duration::from_s(64));
}

// Two clients started together drift apart instead of polling a server in step.
TEST(PollRandomization, ClientsStartedTogetherDriftApart) {
  std::mt19937_64 a_rng(1), b_rng(2);
  Exchange a({"a", 6, 6, false}, [&] { return a_rng(); });
  Exchange b({"b", 6, 6, false}, [&] { return b_rng(); });
  UtcTime a_now = t0, b_now = t0;
  for (int i = 0; i < 10; ++i) {
    a_now = a_now + only<SetTimer>(a.on_timer({a_now, TimestampSource::user})).after;
    b_now = b_now + only<SetTimer>(b.on_timer({b_now, TimestampSource::user})).after;
  }
  EXPECT_GT((a_now - b_now).abs(), Duration::from_ms(500));
}

// --- Which estimator a source reports -----------------------------------------------------

// A reproducible model of many sources (seeded): offset within ±1 ms, frequency within ±15 ppm
// (PHI), 2 ms each way plus exponential queueing of mean 300 µs each way, 16 s polls. At every
// sample count the offset the exchange reports (Exchange::offset_estimate) must be no worse in
// RMS than the clock filter's pick alone, each judged at the time it refers to. Switching to the
// envelope after 4 samples regardless of the bounds was worse (the "always" column: 123 µs
// against the pick's 82 µs at 4 samples, 115 against 66 at 6).
struct Rms {
  double sum_sq = 0;
  int n = 0;
  void add(double error_s) {
    sum_sq += error_s * error_s;
    ++n;
  }
  double value() const { return std::sqrt(sum_sq / n); }
};

struct ModelRun {
  std::vector<Rms> chosen, filter, always;
  std::vector<int> envelope_chosen;
};

ModelRun run_model(int runs, int samples, double poll_s, double base_s, double queue_mean_s,
                   double offset_range_s, double frequency_range) {
  ModelRun out;
  out.chosen.resize(samples);
  out.filter.resize(samples);
  out.always.resize(samples);
  out.envelope_chosen.resize(samples);
  std::mt19937_64 rng(20261201);
  const auto uniform = [&] { return static_cast<double>(rng() >> 11) * 0x1.0p-53; };
  const auto queue = [&] { return -queue_mean_s * std::log1p(-uniform()); };
  uint64_t cookie = 1;
  for (int run = 0; run < runs; ++run) {
    const double x0 = (2 * uniform() - 1) * offset_range_s;
    const double f = (2 * uniform() - 1) * frequency_range;
    const auto truth = [&](UtcTime t) { return x0 + f * (t - t0).seconds(); };
    Exchange ex({"m", 4, 4, false}, [&cookie] { return ++cookie; });
    for (int i = 0; i < samples; ++i) {
      const UtcTime t1 = t0 + Duration::from_seconds(poll_s * i);
      const auto request =
          decode(only<SendRequest>(ex.on_timer({t1, TimestampSource::kernel})).bytes);
      const double forward = base_s + queue(), back = base_s + queue();
      Packet r;
      r.mode = Mode::server;
      r.stratum = 2;
      r.precision = -20;
      r.origin_time = request->transmit_time;
      const UtcTime t2 = t1 + Duration::from_seconds(forward + truth(t1));
      r.receive_time = NtpTimestamp::from_utc(t2);
      r.transmit_time = NtpTimestamp::from_utc(t2 + Duration::from_us(10));
      const UtcTime t4 = t1 + Duration::from_seconds(forward + 10e-6 + back);
      const auto bytes = encode(r);
      (void)only<SampleAccepted>(ex.on_packet(bytes, {t4, TimestampSource::kernel}));
      const auto chosen = ex.offset_estimate();
      const auto& picked = ex.filter().estimate();
      if (!chosen || !picked) continue;
      // Each judged at the time it refers to (OffsetEstimate::time), as in the envelope's tests:
      // the pick at its sample's, the envelope at the newest.
      out.chosen[i].add(chosen->offset.seconds() - truth(chosen->time));
      out.filter[i].add(picked->offset.seconds() - truth(picked->time));
      const auto& envelope = ex.envelope().estimate();
      out.always[i].add(envelope ? envelope->offset.seconds() - truth(envelope->time)
                                 : picked->offset.seconds() - truth(picked->time));
      out.envelope_chosen[i] += chosen->estimator == "delay_envelope";
    }
  }
  return out;
}

TEST(ExchangeEstimator, ChosenOffsetIsNoWorseThanTheClockFilterWithFewSamples) {
  const int runs = 400, samples = 16;
  const ModelRun m = run_model(runs, samples, 16, 2e-3, 300e-6, 1e-3, 15e-6);
  for (int i = 0; i < samples; ++i) {
    std::cout << "n=" << i + 1 << " RMS chosen " << m.chosen[i].value() * 1e6 << " us, filter "
              << m.filter[i].value() * 1e6 << " us, envelope from 4 samples "
              << m.always[i].value() * 1e6 << " us; envelope chosen in " << m.envelope_chosen[i]
              << "/" << runs << "\n";
    EXPECT_LE(m.chosen[i].value(), m.filter[i].value()) << "n = " << i + 1;
  }
}

// The FarCloserThanTheClockFilterThroughQueueing case through the exchange: 1 s polls, 1 ms each
// way plus 100 µs mean queueing. Once the window holds tens of samples the envelope's bound wins
// nearly always, and what the source reports is several times closer than the filter's pick.
TEST(ExchangeEstimator, EnvelopeTakesOverWhenItIsBetter) {
  const int runs = 20, samples = 200;
  const ModelRun m = run_model(runs, samples, 1, 1e-3, 100e-6, 1e-3, 15e-6);
  Rms chosen, filter;
  int envelope = 0, total = 0;
  for (int i = 64; i < samples; ++i) {
    chosen.sum_sq += m.chosen[i].sum_sq;
    chosen.n += m.chosen[i].n;
    filter.sum_sq += m.filter[i].sum_sq;
    filter.n += m.filter[i].n;
    envelope += m.envelope_chosen[i];
    total += runs;
  }
  std::cout << "after 64 samples: RMS chosen " << chosen.value() * 1e6 << " us, filter "
            << filter.value() * 1e6 << " us; envelope chosen " << envelope << "/" << total << "\n";
  EXPECT_GT(envelope, total * 9 / 10);
  EXPECT_LT(chosen.value(), filter.value() / 3);
}

}  // namespace
}  // namespace taid::ntp
