// NTPv4 packet codec: the 48-byte header, RFC 7822 extension fields and the legacy MAC trailer.
#include "ntp/packet.hpp"

#include <algorithm>
#include <cassert>
#include <cstdio>

namespace taid::ntp {
namespace {

// RFC 7822 §7.5: a legacy MAC is at most a 4-byte key id plus a 20-byte (SHA-1) digest, so while
// more than this many bytes remain they must be an extension field.
constexpr std::size_t kMaxMacSize = 24;
constexpr std::size_t kEfHeaderSize = 4;
constexpr std::size_t kMinEfSize = 16;     // RFC 7822 §3
constexpr std::size_t kMaxEfSize = 65532;  // largest multiple of 4 the u16 length can hold
// Accepted MAC trailer sizes: crypto-NAK (key id only), MD5 and SHA-1 digests.
constexpr std::size_t kCryptoNakSize = 4;
constexpr std::size_t kMd5MacSize = 4 + 16;
constexpr std::size_t kSha1MacSize = 4 + 20;

uint16_t load_u16(const uint8_t* p) { return static_cast<uint16_t>((p[0] << 8) | p[1]); }

uint32_t load_u32(const uint8_t* p) {
  return (static_cast<uint32_t>(p[0]) << 24) | (static_cast<uint32_t>(p[1]) << 16) |
         (static_cast<uint32_t>(p[2]) << 8) | static_cast<uint32_t>(p[3]);
}

uint64_t load_u64(const uint8_t* p) {
  return (static_cast<uint64_t>(load_u32(p)) << 32) | load_u32(p + 4);
}

void store_u16(std::vector<uint8_t>& out, uint16_t v) {
  out.push_back(static_cast<uint8_t>(v >> 8));
  out.push_back(static_cast<uint8_t>(v));
}

void store_u32(std::vector<uint8_t>& out, uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<uint8_t>(v >> shift));
}

void store_u64(std::vector<uint8_t>& out, uint64_t v) {
  store_u32(out, static_cast<uint32_t>(v >> 32));
  store_u32(out, static_cast<uint32_t>(v));
}

constexpr std::size_t round_up_4(std::size_t n) { return (n + 3) & ~std::size_t{3}; }

Error field_error(const std::string& field, const std::string& message) {
  return Error::plain(field + ": " + message);
}

}  // namespace

Result<Packet> decode(std::span<const uint8_t> bytes) {
  if (bytes.size() < kHeaderSize) {
    return field_error(
        "header", std::to_string(bytes.size()) + " bytes, need " + std::to_string(kHeaderSize));
  }
  const uint8_t* h = bytes.data();
  Packet p;
  p.leap = static_cast<Leap>(h[0] >> 6);  // all four values are defined
  p.version = static_cast<uint8_t>((h[0] >> 3) & 0x7);
  // Version 0 was never assigned and 5..7 do not exist; anything else is the exchange's call.
  if (p.version < 1 || p.version > 4) {
    return field_error("version", std::to_string(p.version) + " is not 1..4");
  }
  const auto mode_bits = static_cast<uint8_t>(h[0] & 0x7);
  if (mode_bits == 0) return field_error("mode", "0 (reserved) is not valid");
  p.mode = static_cast<Mode>(mode_bits);
  p.stratum = h[1];
  p.poll = static_cast<int8_t>(h[2]);
  p.precision = static_cast<int8_t>(h[3]);
  p.root_delay = NtpShort::from_raw(load_u32(h + 4));
  p.root_dispersion = NtpShort::from_raw(load_u32(h + 8));
  p.reference_id = load_u32(h + 12);
  p.reference_time = NtpTimestamp::from_raw(load_u64(h + 16));
  p.origin_time = NtpTimestamp::from_raw(load_u64(h + 24));
  p.receive_time = NtpTimestamp::from_raw(load_u64(h + 32));
  p.transmit_time = NtpTimestamp::from_raw(load_u64(h + 40));

  std::span<const uint8_t> rest = bytes.subspan(kHeaderSize);
  // RFC 7822 §7.5: what cannot be a MAC must be an extension field. Since more than 24 bytes
  // remain, the 4-byte field header is always there to read.
  while (rest.size() > kMaxMacSize) {
    const std::string field = "extension field " + std::to_string(p.extensions.size() + 1);
    const uint16_t type = load_u16(rest.data());
    const std::size_t length = load_u16(rest.data() + 2);
    if (length < kMinEfSize) {
      return field_error(field + " length",
                         std::to_string(length) + " is below " + std::to_string(kMinEfSize));
    }
    if (length % 4 != 0) {
      return field_error(field + " length", std::to_string(length) + " is not a multiple of 4");
    }
    if (length > rest.size()) {
      return field_error(field + " length", std::to_string(length) + " runs past the end (" +
                                                std::to_string(rest.size()) + " bytes left)");
    }
    const auto value = rest.subspan(kEfHeaderSize, length - kEfHeaderSize);
    p.extensions.push_back(ExtensionField{type, {value.begin(), value.end()}});
    rest = rest.subspan(length);
  }

  // A 4-byte trailer is the crypto-NAK (key id alone, RFC 5905 §7.4 / ntpd); it is kept like any
  // MAC so the exchange can recognise it. It cannot be confused with an extension field, which is
  // never shorter than 16 bytes.
  if (!rest.empty() && rest.size() != kCryptoNakSize && rest.size() != kMd5MacSize &&
      rest.size() != kSha1MacSize) {
    return field_error("mac", std::to_string(rest.size()) +
                                  " bytes is not a key id plus a 16- or 20-byte digest "
                                  "(or a 4-byte crypto-NAK)");
  }
  p.mac.assign(rest.begin(), rest.end());
  return p;
}

std::vector<uint8_t> encode(const Packet& packet) {
  std::vector<uint8_t> out;
  std::size_t size = kHeaderSize + packet.mac.size();
  for (const auto& ef : packet.extensions) size += kEfHeaderSize + ef.value.size() + 24;  // + pad
  out.reserve(size);

  // The masks keep out-of-range field values from spilling into their neighbours.
  out.push_back(static_cast<uint8_t>(((static_cast<unsigned>(packet.leap) & 0x3) << 6) |
                                     ((packet.version & 0x7u) << 3) |
                                     (static_cast<unsigned>(packet.mode) & 0x7)));
  out.push_back(packet.stratum);
  out.push_back(static_cast<uint8_t>(packet.poll));
  out.push_back(static_cast<uint8_t>(packet.precision));
  store_u32(out, packet.root_delay.raw());
  store_u32(out, packet.root_dispersion.raw());
  store_u32(out, packet.reference_id);
  store_u64(out, packet.reference_time.raw());
  store_u64(out, packet.origin_time.raw());
  store_u64(out, packet.receive_time.raw());
  store_u64(out, packet.transmit_time.raw());

  // decode() reads the trailing bytes as a MAC while at most 24 remain, so the last field must
  // leave more than that together with the MAC: 28 bytes without one (RFC 7822 §7.5), 24 ahead
  // of a crypto-NAK, the plain 16-byte minimum ahead of a digest.
  const std::size_t last_min_size =
      packet.mac.size() > kMaxMacSize
          ? kMinEfSize
          : std::max(kMinEfSize, round_up_4(kMaxMacSize + 1 - packet.mac.size()));
  for (std::size_t i = 0; i < packet.extensions.size(); ++i) {
    const ExtensionField& ef = packet.extensions[i];
    const std::size_t min_size = i + 1 == packet.extensions.size() ? last_min_size : kMinEfSize;
    const std::size_t length = std::max(min_size, round_up_4(kEfHeaderSize + ef.value.size()));
    assert(length <= kMaxEfSize && "extension field value too large for a u16 length");
    store_u16(out, ef.type);
    store_u16(out, static_cast<uint16_t>(length));
    out.insert(out.end(), ef.value.begin(), ef.value.end());
    out.resize(out.size() + (length - kEfHeaderSize - ef.value.size()), 0);
  }
  out.insert(out.end(), packet.mac.begin(), packet.mac.end());
  return out;
}

std::string reference_id_to_string(uint32_t reference_id, uint8_t stratum) {
  const auto hex = [&] {
    char buf[11];
    std::snprintf(buf, sizeof buf, "0x%08x", reference_id);
    return std::string(buf);
  };
  if (stratum <= 1) {
    // Kiss code (stratum 0) or reference clock name (stratum 1), left-justified and NUL-padded.
    std::string text;
    for (int shift = 24; shift >= 0; shift -= 8) text += static_cast<char>(reference_id >> shift);
    while (!text.empty() && text.back() == '\0') text.pop_back();
    // An empty string would read as a missing value in logs; embedded NULs or control bytes
    // mean this is not text at all.
    if (text.empty()) return hex();
    for (const char c : text) {
      const auto u = static_cast<unsigned char>(c);
      if (u < 0x20 || u > 0x7e) return hex();
    }
    return text;
  }
  std::string quad;
  for (int shift = 24; shift >= 0; shift -= 8) {
    if (!quad.empty()) quad += '.';
    quad += std::to_string((reference_id >> shift) & 0xff);
  }
  return quad;
}

}  // namespace taid::ntp
