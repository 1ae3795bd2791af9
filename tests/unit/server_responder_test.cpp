// Responder: exact reply bytes, the interleaved sequence, every drop reason, KoD RATE, counters.
#include <gtest/gtest.h>

#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <random>
#include <vector>

#include "server/responder.hpp"

namespace taid::server {
namespace {

using Bytes = std::vector<uint8_t>;

constexpr uint64_t kT1 = 0xE8F0A1B212345678ULL;  // the client's transmit field
constexpr uint64_t kT2 = 0xE8F0A1B220000001ULL;  // our receive stamp

Bytes request_bytes(uint8_t first = 0x23, uint64_t transmit = kT1, uint64_t origin = 0,
                    uint64_t receive = 0, int8_t poll = 6) {
  Bytes b(48, 0);
  b[0] = first;  // LI 0, VN 4, mode 3
  b[2] = static_cast<uint8_t>(poll);
  b[3] = 0xEC;  // precision -20
  const auto put = [&](std::size_t at, uint64_t v) {
    for (int i = 0; i < 8; ++i) b[at + i] = static_cast<uint8_t>(v >> (56 - 8 * i));
  };
  put(24, origin);
  put(32, receive);
  put(40, transmit);
  return b;
}

uint64_t field(const Reply& r, std::size_t at) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | r.bytes[at + i];
  return v;
}

ServerClockState clock_state() {
  ServerClockState c;
  c.leap = ntp::Leap::none;
  c.stratum = 2;
  c.precision_log2 = -24;
  c.reference_id = 0xC0000201;  // 192.0.2.1
  c.root_delay = NtpShort::from_raw(0x00000123);
  c.root_dispersion = NtpShort::from_raw(0x00000456);
  c.reference_time = NtpTimestamp::from_raw(0xE8F0A1A000000000ULL);
  return c;
}

ClientAddress client(uint8_t last = 1) {
  ClientAddress a;
  a.address[10] = a.address[11] = 0xff;
  a.address[12] = 192;
  a.address[13] = 0;
  a.address[14] = 2;
  a.address[15] = last;
  a.port = 40000;
  return a;
}

ResponderSettings open_settings() {
  ResponderSettings s;
  s.access.add(*parse_access_rule("allow", ""));
  return s;
}

Request request(const Bytes& bytes, uint64_t t2 = kT2, ClientAddress from = client(),
                int64_t monotonic_ns = 0) {
  return Request{bytes, from, NtpTimestamp::from_raw(t2), monotonic_ns};
}

TEST(ServerResponder, BasicReplyExactBytes) {
  Responder responder(open_settings());
  const Bytes in = request_bytes();
  auto result = responder.respond(request(in), clock_state());
  ASSERT_TRUE(std::holds_alternative<Reply>(result));
  Reply reply = std::get<Reply>(result);
  EXPECT_TRUE(reply.needs_transmit);
  EXPECT_FALSE(reply.interleaved);
  EXPECT_FALSE(reply.kiss_of_death);
  EXPECT_EQ(reply.receive_time.raw(), kT2);
  ASSERT_EQ(reply.size, 48u);
  const std::array<uint8_t, 48> before = {
      0x24, 0x02, 0x06, 0xE8,                          // LI 0 VN 4 mode 4, stratum 2, poll 6, -24
      0x00, 0x00, 0x01, 0x23, 0x00, 0x00, 0x04, 0x56,  // root delay, root dispersion
      0xC0, 0x00, 0x02, 0x01,                          // reference id
      0xE8, 0xF0, 0xA1, 0xA0, 0x00, 0x00, 0x00, 0x00,  // reference time
      0xE8, 0xF0, 0xA1, 0xB2, 0x12, 0x34, 0x56, 0x78,  // origin = the request's transmit
      0xE8, 0xF0, 0xA1, 0xB2, 0x20, 0x00, 0x00, 0x01,  // receive = T2
      0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  // transmit: patched by the I/O
  };
  EXPECT_EQ(reply.bytes, before);
  responder.patch_transmit(reply, NtpTimestamp::from_raw(0xE8F0A1B220010000ULL));
  EXPECT_FALSE(reply.needs_transmit);
  EXPECT_EQ(field(reply, 40), 0xE8F0A1B220010000ULL);
  for (std::size_t i = 0; i < 40; ++i) EXPECT_EQ(reply.bytes[i], before[i]) << i;
  EXPECT_EQ(responder.stats().received, 1u);
  EXPECT_EQ(responder.stats().replied, 1u);
  EXPECT_EQ(responder.interleave_table().size(), 1u);
}

TEST(ServerResponder, VersionAndPollEchoed) {
  Responder responder(open_settings());
  // NTPv3 (0x1B), poll 10.
  auto r = std::get<Reply>(
      responder.respond(request(request_bytes(0x1B, kT1, 0, 0, 10)), clock_state()));
  EXPECT_EQ(r.bytes[0], 0x1C);  // LI 0, VN 3, mode 4
  EXPECT_EQ(r.bytes[2], 10);
  // NTPv1 with mode 3 is a client request too.
  auto v1 =
      std::get<Reply>(responder.respond(request(request_bytes(0x0B), kT2 + 100), clock_state()));
  EXPECT_EQ(v1.bytes[0], 0x0C);
}

TEST(ServerResponder, InterleavedSequence) {
  Responder responder(open_settings());
  const ServerClockState clock = clock_state();
  // 1: basic (a chrony xleave client's first request has origin and receive zero).
  Reply r1 = std::get<Reply>(responder.respond(request(request_bytes()), clock));
  ASSERT_FALSE(r1.interleaved);
  const uint64_t user_t3 = kT2 + 0x10000;
  responder.patch_transmit(r1, NtpTimestamp::from_raw(user_t3));
  // The kernel's TX stamp of reply 1 arrives and replaces the user-space T3.
  const uint64_t kernel_tx = kT2 + 0x12000;
  responder.on_transmit_stamp(r1.receive_time, NtpTimestamp::from_raw(kernel_tx));

  // 2: origin = reply 1's receive field, receive = when the client got reply 1, from another
  // port (chrony opens a new socket per request).
  const uint64_t client_rx = 0xE8F0A1B230000000ULL, t1b = 0xE8F0A1C212345678ULL;
  const uint64_t t2b = 0xE8F0A1C220000000ULL;
  ClientAddress other_port = client();
  other_port.port = 40001;
  Reply r2 = std::get<Reply>(responder.respond(
      request(request_bytes(0x23, t1b, r1.receive_time.raw(), client_rx), t2b, other_port), clock));
  EXPECT_TRUE(r2.interleaved);
  EXPECT_FALSE(r2.needs_transmit);
  EXPECT_EQ(field(r2, 24), client_rx);  // origin = the request's receive field
  EXPECT_EQ(field(r2, 32), t2b);        // receive = this request's T2
  EXPECT_EQ(field(r2, 40), kernel_tx);  // transmit = reply 1's kernel TX stamp
  EXPECT_EQ(r2.receive_time.raw(), t2b);
  EXPECT_EQ(responder.stats().interleaved, 1u);

  // The same request again (a replay, or a lost reply): reply 1's entry served once, now basic.
  Reply again = std::get<Reply>(responder.respond(
      request(request_bytes(0x23, t1b, r1.receive_time.raw(), client_rx), t2b + 0x100), clock));
  EXPECT_FALSE(again.interleaved);
  EXPECT_EQ(field(again, 24), t1b);

  // 3: origin = reply 2's T2, whose TX stamp was never reported: basic.
  Reply r3 = std::get<Reply>(responder.respond(
      request(request_bytes(0x23, t1b + 0x1000, t2b, client_rx + 0x1000), t2b + 0x200), clock));
  EXPECT_FALSE(r3.interleaved);
  // Reported now (user-space time for an interleaved reply): the next one is interleaved.
  responder.on_transmit_stamp(NtpTimestamp::from_raw(t2b), NtpTimestamp::from_raw(t2b + 0x500));
  Reply r4 = std::get<Reply>(responder.respond(
      request(request_bytes(0x23, t1b + 0x2000, t2b, client_rx + 0x2000), t2b + 0x300), clock));
  EXPECT_TRUE(r4.interleaved);
  EXPECT_EQ(field(r4, 40), t2b + 0x500);
  EXPECT_EQ(responder.stats().interleaved, 2u);
}

TEST(ServerResponder, InterleavedOnlyForNtpv4WithReceiveUnlikeTransmit) {
  Responder responder(open_settings());
  Reply r1 = std::get<Reply>(responder.respond(request(request_bytes()), clock_state()));
  responder.patch_transmit(r1, NtpTimestamp::from_raw(kT2 + 0x10000));
  const uint64_t origin = r1.receive_time.raw();
  // receive == transmit: basic (chrony's test).
  Reply same = std::get<Reply>(responder.respond(
      request(request_bytes(0x23, kT1 + 1, origin, kT1 + 1), kT2 + 0x100000), clock_state()));
  EXPECT_FALSE(same.interleaved);
  // NTPv3: basic.
  Reply v3 = std::get<Reply>(responder.respond(
      request(request_bytes(0x1B, kT1 + 2, origin, kT1 + 7), kT2 + 0x200000), clock_state()));
  EXPECT_FALSE(v3.interleaved);
  // The entry was not used up by those: NTPv4 now gets it.
  Reply v4 = std::get<Reply>(responder.respond(
      request(request_bytes(0x23, kT1 + 3, origin, kT1 + 7), kT2 + 0x300000), clock_state()));
  EXPECT_TRUE(v4.interleaved);
  EXPECT_EQ(field(v4, 40), kT2 + 0x10000);  // the user-space T3: no kernel stamp came
}

TEST(ServerResponder, ReceiveStampsStayUnique) {
  Responder responder(open_settings());
  // Two requests stamped with the same T2 (two workers, a coarse clock): the second goes out
  // one 2^-32 s unit later, and both are in the table.
  Reply a = std::get<Reply>(responder.respond(request(request_bytes(0x23, kT1)), clock_state()));
  Reply b =
      std::get<Reply>(responder.respond(request(request_bytes(0x23, kT1 + 9)), clock_state()));
  EXPECT_EQ(a.receive_time.raw(), kT2);
  EXPECT_EQ(b.receive_time.raw(), kT2 + 1);
  EXPECT_EQ(field(b, 32), kT2 + 1);
  EXPECT_EQ(responder.interleave_table().size(), 2u);
  // T2 equal to the request's transmit (the reply's origin): bumped too.
  Reply c = std::get<Reply>(
      responder.respond(request(request_bytes(0x23, kT2 + 50), kT2 + 50), clock_state()));
  EXPECT_EQ(field(c, 24), kT2 + 50);
  EXPECT_EQ(field(c, 32), kT2 + 51);
  // T3 equal to the receive field is bumped past it.
  responder.patch_transmit(c, NtpTimestamp::from_raw(kT2 + 51));
  EXPECT_EQ(field(c, 40), kT2 + 52);
}

TEST(ServerResponder, EveryDropReasonCounted) {
  ResponderSettings settings = open_settings();
  settings.access = AccessList{};
  settings.access.add(*parse_access_rule("allow", "192.0.2.0/24"));
  settings.rate_limit = RateLimitSettings{12, 1, 4, 0};
  Responder responder(std::move(settings));
  const auto drop_of = [&](const Bytes& bytes, ClientAddress from = client()) {
    auto result = responder.respond(request(bytes, kT2, from), clock_state());
    EXPECT_TRUE(std::holds_alternative<Drop>(result));
    return std::holds_alternative<Drop>(result) ? std::get<Drop>(result) : Drop::malformed;
  };
  Bytes short_request = request_bytes();
  short_request.resize(47);
  EXPECT_EQ(drop_of(short_request), Drop::too_short);
  EXPECT_EQ(drop_of({}), Drop::too_short);
  EXPECT_EQ(drop_of(request_bytes(0x03)), Drop::bad_version);  // version 0
  EXPECT_EQ(drop_of(request_bytes(0x2B)), Drop::bad_version);  // version 5
  EXPECT_EQ(drop_of(request_bytes(0x3B)), Drop::bad_version);  // version 7
  for (int mode : {0, 1, 2, 4, 5, 6, 7}) {
    EXPECT_EQ(drop_of(request_bytes(static_cast<uint8_t>(0x20 | mode))), Drop::not_client_mode)
        << mode;
  }
  Bytes trailing = request_bytes();
  trailing.resize(56, 0xAA);  // 8 bytes: neither a MAC nor an extension field
  EXPECT_EQ(drop_of(trailing), Drop::malformed);
  EXPECT_EQ(drop_of(request_bytes(0x23, 0)), Drop::zero_transmit);
  Bytes mac = request_bytes();
  mac.resize(48 + 20, 0x11);  // key id + MD5 digest
  EXPECT_EQ(drop_of(mac), Drop::authenticated);
  Bytes ef = request_bytes();
  const uint8_t field_header[] = {0x01, 0x04, 0x00, 0x1C};  // type 0x0104, 28 bytes
  ef.insert(ef.end(), std::begin(field_header), std::end(field_header));
  ef.resize(48 + 28, 0);
  EXPECT_EQ(drop_of(ef), Drop::authenticated);
  ClientAddress stranger = client();
  stranger.address[14] = 3;  // 192.0.3.1
  EXPECT_EQ(drop_of(request_bytes(), stranger), Drop::denied);
  // Burst 1, one in 16 leaked: the first is answered, then mostly dropped.
  EXPECT_TRUE(
      std::holds_alternative<Reply>(responder.respond(request(request_bytes()), clock_state())));
  int rate_limited = 0;
  for (int i = 0; i < 32; ++i) {
    auto result =
        responder.respond(request(request_bytes(0x23, kT1 + 1 + i), kT2 + 1000 * i), clock_state());
    if (std::holds_alternative<Drop>(result)) {
      EXPECT_EQ(std::get<Drop>(result), Drop::rate_limited);
      ++rate_limited;
    }
  }
  EXPECT_GT(rate_limited, 16);

  const auto& dropped = responder.stats().dropped;
  EXPECT_EQ(dropped[static_cast<std::size_t>(Drop::too_short)], 2u);
  EXPECT_EQ(dropped[static_cast<std::size_t>(Drop::bad_version)], 3u);
  EXPECT_EQ(dropped[static_cast<std::size_t>(Drop::not_client_mode)], 7u);
  EXPECT_EQ(dropped[static_cast<std::size_t>(Drop::malformed)], 1u);
  EXPECT_EQ(dropped[static_cast<std::size_t>(Drop::zero_transmit)], 1u);
  EXPECT_EQ(dropped[static_cast<std::size_t>(Drop::authenticated)], 2u);
  EXPECT_EQ(dropped[static_cast<std::size_t>(Drop::denied)], 1u);
  EXPECT_EQ(dropped[static_cast<std::size_t>(Drop::rate_limited)],
            static_cast<uint64_t>(rate_limited));
  EXPECT_EQ(responder.stats().received, 17u + 1u + 32u);
  EXPECT_EQ(responder.stats().replied, 1u + 32u - rate_limited);
  EXPECT_EQ(to_string(Drop::not_client_mode), "not_client_mode");
}

TEST(ServerResponder, EmptyAccessListDeniesEveryone) {
  Responder responder(ResponderSettings{});
  auto result = responder.respond(request(request_bytes()), clock_state());
  ASSERT_TRUE(std::holds_alternative<Drop>(result));
  EXPECT_EQ(std::get<Drop>(result), Drop::denied);
}

TEST(ServerResponder, KissOfDeathRate) {
  ResponderSettings settings = open_settings();
  settings.rate_limit = RateLimitSettings{12, 1, 1, 1};  // over the limit: 1/2 leak, 1/4 KoD
  settings.random_seed = 77;
  Responder responder(std::move(settings));
  Bytes in = request_bytes(0x23, kT1, 0, 0, 4);
  in[4] = 0x00, in[5] = 0x01;  // root delay 1 s
  in[11] = 0x42;               // root dispersion
  in[16] = 0xAB;               // reference time
  ASSERT_TRUE(std::holds_alternative<Reply>(responder.respond(request(in), clock_state())));
  std::optional<Reply> kod;
  for (int i = 0; i < 64 && !kod; ++i) {
    auto result = responder.respond(request(in, kT2 + 1000 * (i + 1)), clock_state());
    if (auto* r = std::get_if<Reply>(&result); r && r->kiss_of_death) kod = *r;
  }
  ASSERT_TRUE(kod.has_value());
  EXPECT_FALSE(kod->needs_transmit);
  EXPECT_FALSE(kod->interleaved);
  EXPECT_TRUE(kod->receive_time.is_zero());
  const std::array<uint8_t, 48> expected = {
      0xE4, 0x00, 0x0C, 0xEC,                          // LI 3 VN 4 mode 4, stratum 0, poll 12
      0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x42,  // the request's root delay, dispersion
      'R',  'A',  'T',  'E',                           // kiss code
      0xAB, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  // the request's reference time
      0xE8, 0xF0, 0xA1, 0xB2, 0x12, 0x34, 0x56, 0x78,  // origin = the request's transmit
      0xE8, 0xF0, 0xA1, 0xB2, 0x12, 0x34, 0x56, 0x78,  // receive = the same
      0xE8, 0xF0, 0xA1, 0xB2, 0x12, 0x34, 0x56, 0x78,  // transmit = the same
  };
  EXPECT_EQ(kod->bytes, expected);
  EXPECT_EQ(kod->size, 48u);
  EXPECT_GE(responder.stats().kiss_of_death, 1u);
  // A KoD leaves nothing in the interleave table.
  EXPECT_EQ(responder.interleave_table().size(),
            responder.stats().replied - responder.stats().kiss_of_death);
}

// A client the XDP path already holds over its rate gets no fresh burst here: only the leak and
// KoD draws (without the flag, the same requests would all be answered from a full bucket).
TEST(ServerResponder, OverLimitElsewhereGetsNoSecondBurst) {
  ResponderSettings settings = open_settings();
  settings.rate_limit = RateLimitSettings{3, 8, 2, 0};  // burst 8, leak 1 in 4, no KoD
  settings.random_seed = 5;
  Responder responder(settings);
  Responder fresh(settings);
  int answered = 0;
  int answered_fresh = 0;
  for (int i = 0; i < 400; ++i) {
    const Bytes bytes = request_bytes(0x23, kT1 + static_cast<uint64_t>(i));  // the span's owner
    Request over = request(bytes, kT2 + 1000 * static_cast<uint64_t>(i));
    over.over_limit_elsewhere = true;
    if (std::holds_alternative<Reply>(responder.respond(over, clock_state()))) ++answered;
    if (i < 8) {
      const Request plain = request(bytes, kT2 + 1000 * static_cast<uint64_t>(i));
      if (std::holds_alternative<Reply>(fresh.respond(plain, clock_state()))) ++answered_fresh;
    }
  }
  EXPECT_EQ(answered_fresh, 8);  // the burst, had the flag been ignored
  // 1 in 4 leaks: 100 expected of 400 (binomial sd ~8.7).
  EXPECT_GT(answered, 60);
  EXPECT_LT(answered, 140);
  EXPECT_EQ(responder.stats().dropped[static_cast<std::size_t>(Drop::rate_limited)],
            static_cast<uint64_t>(400 - answered));
}

TEST(ServerResponder, PollRaisedToTheRateLimitInterval) {
  ResponderSettings settings = open_settings();
  settings.rate_limit = RateLimitSettings{3, 8, 2, 0};
  Responder responder(std::move(settings));
  auto low =
      std::get<Reply>(responder.respond(request(request_bytes(0x23, kT1, 0, 0, 2)), clock_state()));
  EXPECT_EQ(low.bytes[2], 3);
  auto high = std::get<Reply>(
      responder.respond(request(request_bytes(0x23, kT1 + 1, 0, 0, 7)), clock_state()));
  EXPECT_EQ(high.bytes[2], 7);
}

TEST(ServerResponder, ReplyNeverLargerThanRequest) {
  Responder responder(open_settings());
  std::mt19937_64 rng(3);
  int replies = 0;
  for (int i = 0; i < 20000; ++i) {
    Bytes in(rng() % 120);
    for (auto& b : in) b = static_cast<uint8_t>(rng());
    if (!in.empty() && rng() % 2) in[0] = static_cast<uint8_t>((in[0] & 0xC0) | 0x23);
    if (in.size() > 48 && rng() % 2) in.resize(48);
    auto result =
        responder.respond(request(in, kT2 + static_cast<uint64_t>(i) * 4096), clock_state());
    if (auto* r = std::get_if<Reply>(&result)) {
      EXPECT_LE(r->size, in.size());
      ++replies;
    }
  }
  EXPECT_GT(replies, 1000);
}

TEST(ServerInterleaveTable, OldestEntriesGoFirst) {
  InterleaveTable table(4);
  for (uint64_t i = 1; i <= 6; ++i) {
    table.insert(NtpTimestamp::from_raw(i << 20));
    table.set_transmit(NtpTimestamp::from_raw(i << 20), NtpTimestamp::from_raw((i << 20) + 7));
  }
  EXPECT_EQ(table.size(), 4u);
  EXPECT_EQ(table.capacity(), 4u);
  EXPECT_FALSE(table.contains(NtpTimestamp::from_raw(1 << 20)));
  EXPECT_FALSE(table.contains(NtpTimestamp::from_raw(2 << 20)));
  for (uint64_t i = 3; i <= 6; ++i) {
    EXPECT_EQ(table.transmit_of(NtpTimestamp::from_raw(i << 20)),
              NtpTimestamp::from_raw((i << 20) + 7));
  }
  // Zero is never a key; unknown keys take no transmit stamp.
  table.insert(NtpTimestamp{});
  EXPECT_FALSE(table.contains(NtpTimestamp{}));
  table.set_transmit(NtpTimestamp::from_raw(99), NtpTimestamp::from_raw(100));
  EXPECT_FALSE(table.transmit_of(NtpTimestamp::from_raw(99)).has_value());
  table.disable(NtpTimestamp::from_raw(3 << 20));
  EXPECT_FALSE(table.transmit_of(NtpTimestamp::from_raw(3 << 20)).has_value());
  EXPECT_TRUE(table.contains(NtpTimestamp::from_raw(3 << 20)));
}

TEST(ServerInterleaveTable, AgreesWithAReferenceModelUnderChurn) {
  // Keys drawn from a small range so probe chains collide and wrap, against a map that keeps
  // the same last `capacity` distinct keys.
  constexpr std::size_t kCapacity = 37;
  InterleaveTable table(kCapacity);
  std::map<uint64_t, uint64_t> model;  // key -> transmit (0: none)
  std::vector<uint64_t> order;         // insertion order of the keys in the model
  std::mt19937_64 rng(11);
  int mismatches = 0;
  for (int step = 0; step < 200000; ++step) {
    const uint64_t key = 1 + rng() % 300;
    const auto ts = NtpTimestamp::from_raw(key);
    switch (rng() % 3) {
      case 0:
        if (!model.contains(key)) {
          if (order.size() == kCapacity) {
            model.erase(order.front());
            order.erase(order.begin());
          }
          model[key] = 0;
          order.push_back(key);
        }
        table.insert(ts);
        break;
      case 1:
        if (model.contains(key)) model[key] = key + 1000;
        table.set_transmit(ts, NtpTimestamp::from_raw(key + 1000));
        break;
      default: {
        const auto got = table.transmit_of(ts);
        const auto it = model.find(key);
        const bool want = it != model.end() && it->second != 0;
        mismatches += table.contains(ts) != (it != model.end());
        mismatches += got.has_value() != want;
        if (got && want) mismatches += got->raw() != it->second;
      }
    }
    mismatches += table.size() != model.size();
  }
  EXPECT_EQ(mismatches, 0);
  EXPECT_EQ(table.size(), kCapacity);
}

TEST(ServerResponder, InterleavedNeedsTheEntryStillInTheTable) {
  ResponderSettings settings = open_settings();
  settings.interleave_entries = 2;
  Responder responder(std::move(settings));
  Reply first = std::get<Reply>(responder.respond(request(request_bytes()), clock_state()));
  responder.patch_transmit(first, NtpTimestamp::from_raw(kT2 + 0x10000));
  for (uint64_t i = 1; i <= 2; ++i) {  // two more replies push the first one out
    (void)responder.respond(request(request_bytes(0x23, kT1 + i), kT2 + (i << 24)), clock_state());
  }
  Reply late = std::get<Reply>(responder.respond(
      request(request_bytes(0x23, kT1 + 9, first.receive_time.raw(), kT1 + 5), kT2 + (9 << 24)),
      clock_state()));
  EXPECT_FALSE(late.interleaved);
  EXPECT_TRUE(late.needs_transmit);
  EXPECT_EQ(responder.interleave_table().size(), 2u);
}

}  // namespace
}  // namespace taid::server
