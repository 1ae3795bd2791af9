// Unit tests for the NTPv4 packet codec: header fields, extension fields, MAC trailer, errors.
#include "ntp/packet.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

namespace taid::ntp {
namespace {

using Bytes = std::vector<uint8_t>;

// A server reply written out byte by byte so the test does not depend on encode().
const Bytes kServerPacket = {
    0x64,                    // LI 1 (add second), VN 4, mode 4 (server): 01 100 100
    0x02,                    // stratum 2
    0x06,                    // poll 2^6 s
    0xEC,                    // precision -20
    0x00, 0x00, 0x0A, 0x80,  // root delay 0x00000a80 (16.16)
    0x00, 0x01, 0x12, 0x34,  // root dispersion 0x00011234
    0xC0, 0xA8, 0x01, 0x01,  // reference id 192.168.1.1
    0xE9, 0x5C, 0x3F, 0x00, 0x80, 0x00, 0x00, 0x00,  // reference time
    0xE9, 0x5C, 0x3F, 0x10, 0x11, 0x22, 0x33, 0x44,  // origin time
    0xE9, 0x5C, 0x3F, 0x10, 0x55, 0x66, 0x77, 0x88,  // receive time
    0xE9, 0x5C, 0x3F, 0x10, 0x99, 0xAA, 0xBB, 0xCC,  // transmit time
};

Packet server_packet() {
  Packet p;
  p.leap = Leap::add_second;
  p.version = 4;
  p.mode = Mode::server;
  p.stratum = 2;
  p.poll = 6;
  p.precision = -20;
  p.root_delay = NtpShort::from_raw(0x00000A80);
  p.root_dispersion = NtpShort::from_raw(0x00011234);
  p.reference_id = 0xC0A80101;
  p.reference_time = NtpTimestamp::from_raw(0xE95C3F0080000000);
  p.origin_time = NtpTimestamp::from_raw(0xE95C3F1011223344);
  p.receive_time = NtpTimestamp::from_raw(0xE95C3F1055667788);
  p.transmit_time = NtpTimestamp::from_raw(0xE95C3F1099AABBCC);
  return p;
}

Bytes concat(Bytes a, const Bytes& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// An extension field as it appears on the wire: type, length, then the value as given.
Bytes ef_bytes(uint16_t type, uint16_t length, const Bytes& value) {
  Bytes out = {static_cast<uint8_t>(type >> 8), static_cast<uint8_t>(type),
               static_cast<uint8_t>(length >> 8), static_cast<uint8_t>(length)};
  return concat(out, value);
}

Bytes filled(std::size_t n, uint8_t first) {
  Bytes out(n);
  for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<uint8_t>(first + i);
  return out;
}

// The error text for bytes that must be rejected ("" if decode accepted them, which fails the
// caller's prefix check).
std::string error_of(const Bytes& bytes) {
  auto r = decode(bytes);
  if (r.ok()) return "";
  return r.error().message();
}

TEST(NtpPacketDecode, HandBuiltServerPacketFieldByField) {
  auto r = decode(kServerPacket);
  ASSERT_TRUE(r.ok()) << r.error().message();
  const Packet& p = *r;
  EXPECT_EQ(p.leap, Leap::add_second);
  EXPECT_EQ(p.version, 4);
  EXPECT_EQ(p.mode, Mode::server);
  EXPECT_EQ(p.stratum, 2);
  EXPECT_EQ(p.poll, 6);
  EXPECT_EQ(p.precision, -20);
  EXPECT_EQ(p.root_delay.raw(), 0x00000A80u);
  EXPECT_EQ(p.root_delay.to_duration(), Duration::from_ns(41015625));  // 0x0a80 / 65536 s
  EXPECT_EQ(p.root_dispersion.raw(), 0x00011234u);
  EXPECT_EQ(p.reference_id, 0xC0A80101u);
  EXPECT_EQ(reference_id_to_string(p.reference_id, p.stratum), "192.168.1.1");
  EXPECT_EQ(p.reference_time.seconds(), 0xE95C3F00u);
  EXPECT_EQ(p.reference_time.fraction(), 0x80000000u);
  EXPECT_EQ(p.origin_time.raw(), 0xE95C3F1011223344u);
  EXPECT_EQ(p.receive_time.raw(), 0xE95C3F1055667788u);
  EXPECT_EQ(p.transmit_time.raw(), 0xE95C3F1099AABBCCu);
  EXPECT_TRUE(p.extensions.empty());
  EXPECT_TRUE(p.mac.empty());
  EXPECT_EQ(p, server_packet());
}

TEST(NtpPacketEncode, WritesHandBuiltBytes) { EXPECT_EQ(encode(server_packet()), kServerPacket); }

TEST(NtpPacketEncode, NegativePollAndPrecisionAreTwosComplement) {
  Packet p = server_packet();
  p.poll = -3;
  p.precision = -128;
  const Bytes b = encode(p);
  EXPECT_EQ(b[2], 0xFD);
  EXPECT_EQ(b[3], 0x80);
  auto r = decode(b);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->poll, -3);
  EXPECT_EQ(r->precision, -128);
}

TEST(NtpPacketDecode, OtherBitPatternsAreDecodedAsIs) {
  // LI 3, VN 1, mode 7: odd but structurally valid; the exchange judges it, not the codec.
  Bytes b = kServerPacket;
  b[0] = 0xCF;  // 11 001 111
  b[1] = 0xFF;
  auto r = decode(b);
  ASSERT_TRUE(r.ok()) << r.error().message();
  EXPECT_EQ(r->leap, Leap::unsynchronized);
  EXPECT_EQ(r->version, 1);
  EXPECT_EQ(r->mode, Mode::private_use);
  EXPECT_EQ(r->stratum, 255);
}

TEST(NtpPacketDecode, EveryTruncatedHeaderIsRejected) {
  for (std::size_t n = 0; n < kHeaderSize; ++n) {
    const Bytes b(kServerPacket.begin(), kServerPacket.begin() + static_cast<std::ptrdiff_t>(n));
    const std::string e = error_of(b);
    EXPECT_TRUE(e.starts_with("header: ")) << n << " bytes gave \"" << e << "\"";
    EXPECT_NE(e.find(std::to_string(n) + " bytes"), std::string::npos) << e;
  }
  EXPECT_EQ(error_of(Bytes(kServerPacket.begin(), kServerPacket.end() - 1)),
            "header: 47 bytes, need 48");
}

TEST(NtpPacketDecode, BadVersionIsRejectedNamingTheField) {
  for (const int version : {0, 5, 6, 7}) {
    Bytes b = kServerPacket;
    b[0] = static_cast<uint8_t>((b[0] & 0xC7) | (version << 3));
    EXPECT_EQ(error_of(b), "version: " + std::to_string(version) + " is not 1..4");
  }
  for (const int version : {1, 2, 3, 4}) {
    Bytes b = kServerPacket;
    b[0] = static_cast<uint8_t>((b[0] & 0xC7) | (version << 3));
    auto r = decode(b);
    ASSERT_TRUE(r.ok()) << "version " << version << ": " << r.error().message();
    EXPECT_EQ(r->version, version);
  }
}

TEST(NtpPacketDecode, ReservedModeIsRejectedNamingTheField) {
  Bytes b = kServerPacket;
  b[0] = static_cast<uint8_t>(b[0] & 0xF8);
  EXPECT_EQ(error_of(b), "mode: 0 (reserved) is not valid");
  for (uint8_t mode = 1; mode <= 7; ++mode) {
    b[0] = static_cast<uint8_t>((b[0] & 0xF8) | mode);
    auto r = decode(b);
    ASSERT_TRUE(r.ok()) << "mode " << int{mode};
    EXPECT_EQ(static_cast<uint8_t>(r->mode), mode);
  }
}

TEST(NtpPacketDecode, ExtensionFieldLengthBelowMinimum) {
  const Bytes b = concat(kServerPacket, ef_bytes(0x0104, 10, filled(24, 1)));
  EXPECT_EQ(error_of(b), "extension field 1 length: 10 is below 16");
  // 0 would never advance; 12 is aligned and fits but is below the RFC 7822 minimum.
  for (const uint16_t length : {uint16_t{0}, uint16_t{4}, uint16_t{12}}) {
    EXPECT_EQ(error_of(concat(kServerPacket, ef_bytes(0x0104, length, filled(24, 1)))),
              "extension field 1 length: " + std::to_string(length) + " is below 16");
  }
}

TEST(NtpPacketDecode, ExtensionFieldLengthNotMultipleOfFour) {
  const Bytes b = concat(kServerPacket, ef_bytes(0x0104, 18, filled(24, 1)));
  EXPECT_EQ(error_of(b), "extension field 1 length: 18 is not a multiple of 4");
}

TEST(NtpPacketDecode, ExtensionFieldLengthPastTheEnd) {
  // 28 bytes follow the header; the field claims 32.
  const Bytes b = concat(kServerPacket, ef_bytes(0x0104, 32, filled(24, 1)));
  EXPECT_EQ(error_of(b), "extension field 1 length: 32 runs past the end (28 bytes left)");
}

TEST(NtpPacketDecode, SecondExtensionFieldErrorNamesIt) {
  const Bytes first = ef_bytes(0x0104, 16, filled(12, 1));
  const Bytes b = concat(concat(kServerPacket, first), ef_bytes(0x0204, 40, filled(24, 1)));
  EXPECT_EQ(error_of(b), "extension field 2 length: 40 runs past the end (28 bytes left)");
}

// Every cut of a reply that carries a 28-byte extension field and a SHA-1 MAC (48 + 28 + 24
// bytes). RFC 7822 §7.5 decides what the trailing bytes are: up to 24 a MAC, so only 4, 20 and 24
// of them decode (as a crypto-NAK or a MAC); 25..27 are a field that runs past the end; from 28
// the field is whole and what follows it is judged as a MAC again.
TEST(NtpPacketDecode, EveryCutOfAnExtensionFieldAndMac) {
  const Bytes ef = ef_bytes(0x0104, 28, filled(24, 0x10));
  const Bytes mac = filled(24, 0x80);
  const Bytes full = concat(concat(kServerPacket, ef), mac);
  int decoded = 0;
  for (std::size_t tail = 1; tail < 52; ++tail) {
    SCOPED_TRACE(tail);
    const Bytes cut(full.begin(), full.begin() + static_cast<std::ptrdiff_t>(kHeaderSize + tail));
    const auto r = decode(cut);
    const std::size_t mac_size = tail >= 28 ? tail - 28 : tail;
    const bool is_mac = mac_size == 0 || mac_size == 4 || mac_size == 20 || mac_size == 24;
    if (tail > 24 && tail < 28) {
      EXPECT_EQ(error_of(cut), "extension field 1 length: 28 runs past the end (" +
                                   std::to_string(tail) + " bytes left)");
    } else if (!is_mac) {
      EXPECT_TRUE(error_of(cut).starts_with("mac: " + std::to_string(mac_size) + " bytes"))
          << error_of(cut);
    } else {
      ASSERT_TRUE(r.ok()) << r.error().message();
      EXPECT_EQ(r->extensions.size(), tail >= 28 ? 1U : 0U);
      EXPECT_EQ(r->mac, Bytes(cut.end() - static_cast<std::ptrdiff_t>(mac_size), cut.end()));
      ++decoded;
    }
  }
  EXPECT_EQ(decoded, 6);  // tails 4, 20, 24, 28, 32, 48
  auto whole = decode(full);
  ASSERT_TRUE(whole.ok());
  EXPECT_EQ(whole->mac, mac);
}

TEST(NtpPacketDecode, MacOfWrongLengthIsRejected) {
  EXPECT_EQ(error_of(concat(kServerPacket, filled(13, 1))),
            "mac: 13 bytes is not a key id plus a 16- or 20-byte digest (or a 4-byte crypto-NAK)");
  for (const std::size_t n : {1, 2, 3, 5, 8, 12, 16, 19, 21, 22, 23}) {
    const std::string e = error_of(concat(kServerPacket, filled(n, 1)));
    EXPECT_TRUE(e.starts_with("mac: " + std::to_string(n) + " bytes")) << n << ": " << e;
  }
  // After an extension field too: 16-byte field + 13 bytes = 29 > 24, so one EF then the MAC.
  const Bytes b = concat(concat(kServerPacket, ef_bytes(0x0104, 16, filled(12, 1))), filled(13, 1));
  EXPECT_TRUE(error_of(b).starts_with("mac: 13 bytes")) << error_of(b);
}

TEST(NtpPacketDecode, AcceptedMacSizes) {
  for (const std::size_t n : {4, 20, 24}) {
    const Bytes mac = filled(n, 0x40);
    auto r = decode(concat(kServerPacket, mac));
    ASSERT_TRUE(r.ok()) << n << ": " << r.error().message();
    EXPECT_EQ(r->mac, mac);
    EXPECT_TRUE(r->extensions.empty());
  }
}

TEST(NtpPacketDecode, TwoExtensionFieldsAndSha1Mac) {
  const Bytes ef1 = ef_bytes(0x0104, 36, filled(32, 0x10));  // NTS unique identifier, 32 bytes
  const Bytes ef2 = ef_bytes(0x0204, 16, {0xAA, 0xBB, 0xCC, 0xDD, 0xEE, 0, 0, 0, 0, 0, 0, 0});
  const Bytes mac = {0x00, 0x00, 0x00, 0x2A, 1,  2,  3,  4,  5,  6,  7,  8,
                     9,    10,   11,   12,   13, 14, 15, 16, 17, 18, 19, 20};
  auto r = decode(concat(concat(concat(kServerPacket, ef1), ef2), mac));
  ASSERT_TRUE(r.ok()) << r.error().message();
  EXPECT_EQ(r->transmit_time.raw(), 0xE95C3F1099AABBCCu);
  ASSERT_EQ(r->extensions.size(), 2u);
  EXPECT_EQ(r->extensions[0].type, 0x0104);
  EXPECT_EQ(r->extensions[0].value, filled(32, 0x10));
  EXPECT_EQ(r->extensions[1].type, 0x0204);
  EXPECT_EQ(r->extensions[1].value, (Bytes{0xAA, 0xBB, 0xCC, 0xDD, 0xEE, 0, 0, 0, 0, 0, 0, 0}));
  EXPECT_EQ(r->mac, mac);
}

TEST(NtpPacketDecode, ShortTrailerIsAMacNotAnExtensionField) {
  // RFC 7822 §7.5: 24 bytes or fewer are a MAC even if they look like an extension field header.
  const Bytes trailer = ef_bytes(0x0104, 20, filled(16, 1));
  auto r = decode(concat(kServerPacket, trailer));
  ASSERT_TRUE(r.ok()) << r.error().message();
  EXPECT_TRUE(r->extensions.empty());
  EXPECT_EQ(r->mac, trailer);
}

TEST(NtpPacketEncode, PadsValuesToFourBytesAndSixteenByteFields) {
  Packet p = server_packet();
  p.extensions = {{0x0104, {1, 2, 3}}, {0x0204, filled(13, 0x20)}};
  p.mac = filled(20, 0x40);
  const Bytes expected = concat(
      concat(concat(kServerPacket, ef_bytes(0x0104, 16, {1, 2, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0})),
             ef_bytes(0x0204, 20, concat(filled(13, 0x20), {0, 0, 0}))),
      p.mac);
  EXPECT_EQ(encode(p), expected);
}

TEST(NtpPacketEncode, LastFieldWithoutMacIsPaddedTo28Bytes) {
  // Otherwise decode would read a 16-byte field at the end as a 16-byte MAC and reject it.
  Packet p = server_packet();
  p.extensions = {{0x0104, {1, 2, 3, 4}}};
  const Bytes b = encode(p);
  ASSERT_EQ(b.size(), kHeaderSize + 28);
  EXPECT_EQ(b[kHeaderSize + 3], 28);
  auto r = decode(b);
  ASSERT_TRUE(r.ok()) << r.error().message();
  ASSERT_EQ(r->extensions.size(), 1u);
  EXPECT_EQ(r->extensions[0].value, concat({1, 2, 3, 4}, Bytes(20, 0)));
  EXPECT_TRUE(r->mac.empty());

  p.mac = {0, 0, 0, 0};  // crypto-NAK: the last field needs 24 bytes
  const Bytes nak = encode(p);
  ASSERT_EQ(nak.size(), kHeaderSize + 24 + 4);
  auto rn = decode(nak);
  ASSERT_TRUE(rn.ok()) << rn.error().message();
  EXPECT_EQ(rn->extensions.size(), 1u);
  EXPECT_EQ(rn->mac, p.mac);
}

void expect_round_trip(const Packet& p) {
  const Bytes b = encode(p);
  auto r = decode(b);
  ASSERT_TRUE(r.ok()) << r.error().message();
  EXPECT_EQ(*r, p);
  EXPECT_EQ(encode(*r), b);
}

TEST(NtpPacketRoundTrip, HeaderOnly) { expect_round_trip(server_packet()); }

TEST(NtpPacketRoundTrip, WithMacOnly) {
  for (const std::size_t n : {4, 20, 24}) {
    Packet p = server_packet();
    p.mac = filled(n, 0x80);
    expect_round_trip(p);
  }
}

TEST(NtpPacketRoundTrip, WithExtensionFieldsOnly) {
  Packet p = server_packet();
  p.extensions = {{0x0104, filled(32, 1)}, {0x0404, filled(12, 2)}, {0x0204, filled(24, 3)}};
  expect_round_trip(p);
}

TEST(NtpPacketRoundTrip, WithExtensionFieldsAndMac) {
  Packet p = server_packet();
  p.extensions = {{0x0104, filled(12, 1)}, {0x0204, filled(12, 2)}};
  p.mac = filled(24, 0x80);
  expect_round_trip(p);
  p.mac = filled(20, 0x80);
  expect_round_trip(p);
}

TEST(NtpPacketRoundTrip, RandomPaddedPackets) {
  std::mt19937_64 rng(5905);
  auto byte = [&] { return static_cast<uint8_t>(rng()); };
  for (int i = 0; i < 500; ++i) {
    Packet p;
    p.leap = static_cast<Leap>(rng() % 4);
    p.version = static_cast<uint8_t>(1 + rng() % 4);
    p.mode = static_cast<Mode>(1 + rng() % 7);
    p.stratum = byte();
    p.poll = static_cast<int8_t>(byte());
    p.precision = static_cast<int8_t>(byte());
    p.root_delay = NtpShort::from_raw(static_cast<uint32_t>(rng()));
    p.root_dispersion = NtpShort::from_raw(static_cast<uint32_t>(rng()));
    p.reference_id = static_cast<uint32_t>(rng());
    p.reference_time = NtpTimestamp::from_raw(rng());
    p.origin_time = NtpTimestamp::from_raw(rng());
    p.receive_time = NtpTimestamp::from_raw(rng());
    p.transmit_time = NtpTimestamp::from_raw(rng());
    const std::size_t mac_sizes[] = {0, 4, 20, 24};
    p.mac = filled(mac_sizes[rng() % 4], byte());
    const std::size_t n_ef = rng() % 4;
    for (std::size_t k = 0; k < n_ef; ++k) {
      // Already padded: a multiple of 4, at least 12, and for the last field whatever encode
      // would pad it to ahead of this MAC (24 without one, 20 ahead of a crypto-NAK).
      std::size_t min = 12;
      if (k + 1 == n_ef && p.mac.empty()) min = 24;
      if (k + 1 == n_ef && p.mac.size() == 4) min = 20;
      const std::size_t size = min + 4 * (rng() % 20);
      p.extensions.push_back({static_cast<uint16_t>(rng()), filled(size, byte())});
    }
    SCOPED_TRACE(i);
    expect_round_trip(p);
  }
}

// Whatever decode accepts, encode writes back byte for byte: accepted values are already
// multiples of 4 and an accepted last field already outgrows the MAC rule. Trailers are built
// from plausible field headers so that a good share are accepted.
TEST(NtpPacketRoundTrip, AcceptedBytesReEncodeIdentically) {
  std::mt19937_64 rng(7822);
  int accepted = 0;
  for (int i = 0; i < 5000; ++i) {
    Bytes b = kServerPacket;
    for (auto& x : b) x = static_cast<uint8_t>(rng());
    const std::size_t n_ef = rng() % 3;
    for (std::size_t k = 0; k < n_ef; ++k) {
      const auto length = static_cast<uint16_t>(rng() % 8 == 0 ? rng() % 64 : 16 + 4 * (rng() % 8));
      b = concat(b, ef_bytes(static_cast<uint16_t>(rng()), length, filled(rng() % 40, 0)));
    }
    b = concat(b, filled(rng() % 2 == 0 ? 0 : rng() % 26, 0x60));
    auto r = decode(b);
    if (!r.ok()) continue;
    ++accepted;
    ASSERT_EQ(encode(*r), b) << "case " << i;
  }
  EXPECT_GT(accepted, 500);  // the property was actually exercised
}

TEST(NtpPacketRefId, KissCodeRate) {
  EXPECT_EQ(kiss_code("RATE"), 0x52415445u);
  EXPECT_EQ(reference_id_to_string(kiss_code("RATE"), 0), "RATE");
  Bytes b = kServerPacket;
  b[1] = 0;  // stratum 0: kiss-o'-death
  b[12] = 'R';
  b[13] = 'A';
  b[14] = 'T';
  b[15] = 'E';
  auto r = decode(b);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->reference_id, kiss_code("RATE"));
  EXPECT_EQ(reference_id_to_string(r->reference_id, r->stratum), "RATE");
}

TEST(NtpPacketRefId, ReferenceClockNameDropsTrailingNuls) {
  EXPECT_EQ(reference_id_to_string(0x47505300, 1), "GPS");  // "GPS\0"
  EXPECT_EQ(reference_id_to_string(0x50505300, 1), "PPS");
  EXPECT_EQ(reference_id_to_string(0x58000000, 1), "X");
}

TEST(NtpPacketRefId, NonPrintableIsHex) {
  EXPECT_EQ(reference_id_to_string(0x47005300, 1), "0x47005300");  // embedded NUL
  EXPECT_EQ(reference_id_to_string(0x0A414243, 0), "0x0a414243");  // newline
  EXPECT_EQ(reference_id_to_string(0x41C24243, 1), "0x41c24243");  // not ASCII
  EXPECT_EQ(reference_id_to_string(0, 1), "0x00000000");           // nothing to show
}

TEST(NtpPacketRefId, DottedQuadFromStratumTwo) {
  EXPECT_EQ(reference_id_to_string(0xC0A80101, 2), "192.168.1.1");
  EXPECT_EQ(reference_id_to_string(kiss_code("RATE"), 3), "82.65.84.69");
  EXPECT_EQ(reference_id_to_string(0xFF00000A, 15), "255.0.0.10");
}

}  // namespace
}  // namespace taid::ntp
