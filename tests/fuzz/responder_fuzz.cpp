// libFuzzer target: the server's responder on arbitrary bytes (ntpd-rs fuzzes its server handler
// the same way): it never crashes, a reply is never larger than its request, a basic reply's
// patched transmit field lands in the 48 bytes, and the counters add up.
#include <cstdint>
#include <cstdlib>
#include <span>
#include <variant>

#include "server/responder.hpp"

namespace {

taid::server::Responder& responder() {
  static taid::server::Responder r = [] {
    taid::server::ResponderSettings s;
    s.access.add(*taid::server::parse_access_rule("allow", ""));
    s.rate_limit = taid::server::RateLimitSettings{-10, 4, 1, 1};
    s.interleave_entries = 64;
    s.rate_limit_entries = 64;
    return taid::server::Responder(std::move(s));
  }();
  return r;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static uint64_t t2 = 0xE8F0A1B200000000ULL;
  static int64_t monotonic_ns = 0;
  t2 += 0x1000;
  monotonic_ns += 1000000;
  auto& r = responder();
  taid::server::ClientAddress from;
  if (size > 0) from.address[15] = data[0] & 0x3;  // a few clients, so the limiter bites
  const taid::server::Request request{std::span<const uint8_t>(data, size), from,
                                      taid::NtpTimestamp::from_raw(t2), monotonic_ns};
  const taid::server::ServerClockState clock;
  auto result = r.respond(request, clock);
  if (auto* reply = std::get_if<taid::server::Reply>(&result)) {
    if (reply->size > size || reply->size != taid::server::kMaxReply) std::abort();
    if (reply->needs_transmit) {
      r.patch_transmit(*reply, taid::NtpTimestamp::from_raw(t2 + 0x100));
      if (reply->needs_transmit) std::abort();
      r.on_transmit_stamp(reply->receive_time, taid::NtpTimestamp::from_raw(t2 + 0x200));
    }
  }
  const auto& stats = r.stats();
  uint64_t dropped = 0;
  for (const uint64_t d : stats.dropped) dropped += d;
  if (stats.replied + dropped != stats.received) std::abort();
  if (r.interleave_table().size() > r.interleave_table().capacity()) std::abort();
  return 0;
}
