// NTPv4 packet codec (RFC 5905 §7.3, RFC 7822 extension fields, legacy MAC trailer) — sans-IO.
//
// decode() accepts any byte string and either returns a Packet or an Error whose context names
// the offending field ("version: 5 is not 1..4", "extension field 1 length: ..."). encode()
// writes exactly what decode() reads back.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "core/result.hpp"
#include "core/time.hpp"

namespace taid::ntp {

inline constexpr std::size_t kHeaderSize = 48;
inline constexpr uint8_t kVersion = 4;

enum class Mode : uint8_t {
  reserved = 0,
  symmetric_active = 1,
  symmetric_passive = 2,
  client = 3,
  server = 4,
  broadcast = 5,
  control = 6,
  private_use = 7,
};

enum class Leap : uint8_t {
  none = 0,
  add_second = 1,     // last minute of the day has 61 s
  delete_second = 2,  // last minute of the day has 59 s
  unsynchronized = 3,
};

// RFC 7822 extension field: type and the value bytes after the 4-byte header, padding included
// as received (encode pads to a multiple of 4 and to the 16-byte minimum field size; the last
// field is padded further so decode cannot take it for a MAC: to 28 bytes when there is no MAC,
// 24 ahead of a crypto-NAK). Values longer than 65528 bytes cannot be encoded.
struct ExtensionField {
  uint16_t type = 0;
  std::vector<uint8_t> value;
  friend bool operator==(const ExtensionField&, const ExtensionField&) = default;
};

struct Packet {
  Leap leap = Leap::none;
  uint8_t version = kVersion;
  Mode mode = Mode::client;
  uint8_t stratum = 0;
  int8_t poll = 0;       // log2 s
  int8_t precision = 0;  // log2 s
  NtpShort root_delay;
  NtpShort root_dispersion;
  uint32_t reference_id = 0;  // host byte order; for stratum 0 the kiss code as 4 ASCII chars
  NtpTimestamp reference_time;
  NtpTimestamp origin_time;
  NtpTimestamp receive_time;
  NtpTimestamp transmit_time;
  std::vector<ExtensionField> extensions;
  // Key id + digest, kept as bytes (20 or 24 bytes), empty if none; decode also accepts a
  // 4-byte key id alone (crypto-NAK) and leaves judging it to the exchange.
  std::vector<uint8_t> mac;

  friend bool operator==(const Packet&, const Packet&) = default;
};

Result<Packet> decode(std::span<const uint8_t> bytes);
std::vector<uint8_t> encode(const Packet& packet);

// Reference ID as text: the kiss code / refid ASCII ("RATE", "GPS") for stratum 0 and 1 (hex
// "0x%08x" when that is empty or not printable), dotted quad for stratum 2 and up.
std::string reference_id_to_string(uint32_t reference_id, uint8_t stratum);
// "RATE" -> 0x52415445.
constexpr uint32_t kiss_code(const char (&code)[5]) {
  return (static_cast<uint32_t>(static_cast<uint8_t>(code[0])) << 24) |
         (static_cast<uint32_t>(static_cast<uint8_t>(code[1])) << 16) |
         (static_cast<uint32_t>(static_cast<uint8_t>(code[2])) << 8) |
         static_cast<uint32_t>(static_cast<uint8_t>(code[3]));
}

}  // namespace taid::ntp
