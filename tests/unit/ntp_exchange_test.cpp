// Unit tests for the per-source exchange: requests, formulas, sanity tests, KoD, poll control.
#include <gtest/gtest.h>

#include <cstdlib>

#include "ntp/exchange.hpp"

namespace taid::ntp {
namespace {

const UtcTime t0 = UtcTime::from_unix_ns(1700000000LL * 1000000000);
Duration ms(int64_t v) { return Duration::from_ms(v); }

template <typename T>
std::vector<T> all_of(const Actions& actions) {
  std::vector<T> out;
  for (const Action& a : actions)
    if (const T* t = std::get_if<T>(&a)) out.push_back(*t);
  return out;
}

template <typename T>
T only(const Actions& actions) {
  auto v = all_of<T>(actions);
  EXPECT_EQ(v.size(), 1U);
  return v.empty() ? T{} : v.front();
}

class ExchangeTest : public ::testing::Test {
 protected:
  Exchange make(SourceConfig config) {
    return Exchange(std::move(config), [this] { return next_cookie_++; });
  }
  // Sends a request at `t1` and returns it decoded.
  Packet poll(Exchange& ex, UtcTime t1) {
    const Actions actions = ex.on_timer({t1, TimestampSource::user, -20});
    const auto bytes = only<SendRequest>(actions).bytes;
    auto p = decode(bytes);
    EXPECT_TRUE(p.ok());
    return p.ok() ? *p : Packet{};
  }
  // A server reply to `request` received at T2 and sent at T3 (server clock).
  static Packet reply_to(const Packet& request, UtcTime t2, UtcTime t3) {
    Packet r;
    r.mode = Mode::server;
    r.stratum = 2;
    r.poll = request.poll;
    r.precision = -20;
    r.reference_id = 0x7f000001;
    r.reference_time = NtpTimestamp::from_utc(t2 - Duration::from_s(10));
    r.origin_time = request.transmit_time;
    r.receive_time = NtpTimestamp::from_utc(t2);
    r.transmit_time = NtpTimestamp::from_utc(t3);
    return r;
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
  EXPECT_EQ(only<SetTimer>(a).after, Duration::from_s(32));
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
    EXPECT_EQ(next, i < 7 ? Duration::from_s(2) : Duration::from_s(16)) << i;
    (void)deliver(ex, reply_to(req, now + ms(1), now + ms(1)), now + ms(2));
    now = now + next;
  }
  EXPECT_EQ(ex.status().reach, 0xff);
  EXPECT_EQ(ex.status().samples, 8U);
  EXPECT_EQ(ex.status().state, SourceState::reachable);
}

TEST_F(ExchangeTest, BurstNeverWaitsLongerThanThePoll) {
  Exchange ex = make({"s", -2, -2, true});
  const Actions a = ex.on_timer({t0, TimestampSource::user, -20});
  EXPECT_EQ(only<SetTimer>(a).after, Duration::from_ms(250));
}

TEST_F(ExchangeTest, UnreachableDoublesPollUpToMaxpoll) {
  Exchange ex = make({"s", 4, 7, false});
  UtcTime now = t0;
  std::vector<Duration> intervals;
  bool logged_unreachable = false;
  for (int i = 0; i < 6; ++i) {
    const Actions a = ex.on_timer({now, TimestampSource::user, -20});
    for (const LogLine& l : all_of<LogLine>(a))
      logged_unreachable |= l.text.find("unreachable") != std::string::npos;
    intervals.push_back(only<SetTimer>(a).after);
    now = now + intervals.back();
  }
  const std::vector<Duration> expected{Duration::from_s(16),  Duration::from_s(32),
                                       Duration::from_s(64),  Duration::from_s(128),
                                       Duration::from_s(128), Duration::from_s(128)};
  EXPECT_EQ(intervals, expected);
  EXPECT_TRUE(logged_unreachable);
  EXPECT_EQ(ex.status().state, SourceState::unreachable);
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
    // the step until it has 4 new ones.
    const auto offset = ex.offset_estimate();
    ASSERT_TRUE(offset) << i;
    EXPECT_EQ(offset->estimator, last ? "delay_envelope" : "clock_filter") << i;
    if (last) {
      EXPECT_EQ(offset->offset, last->offset) << i;
    }
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

}  // namespace
}  // namespace taid::ntp
