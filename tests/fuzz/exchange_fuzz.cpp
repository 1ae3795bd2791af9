// libFuzzer target: a client exchange fed a sequence of replies must never crash, never accept a
// sample or act on a kiss-o'-death that does not echo one of its cookies, never accept two
// samples for one request, and do nothing at all once demobilized.
//
// Input (tests/fuzz/corpus/exchange holds real chronyd 4.3 replies in this form, written by
// tests/fuzz/make_corpus.py):
//   byte 0        flags: bit 0 xleave, bit 1 iburst, bits 2-3 minpoll 4, 6, 0 or -4 (maxpoll
//                 4 above: the poll can climb within the few samples of one input)
//   then records, each
//     control     bits 0-1 origin: 0 and 3 as given, 1 our transmit cookie, 2 our interleaved
//                 cookie (the transmit cookie when the request carries none);
//                 bit 2 no new request before this record (a second reply to the same one);
//                 bit 3 report a kernel TX stamp for the request first;
//                 bits 4-5 delay out, bits 6-7 delay back, (1 + n) × 100 µs each (the
//                 asymmetry moves the offset, so the poll hysteresis sees residuals)
//     length      one byte, then that many bytes of reply (fewer if the input ends)
//
// Why the target writes our cookie into the origin field: the exchange draws a random 64-bit
// cookie per request and drops every reply that does not echo it, before any state is touched.
// Coverage feedback cannot find 64 random bits, so without the patch almost every input — the
// real replies of the corpus included — would stop at that one test. With it, mutations of the
// other fields reach the KoD, header, fitness, interleaved and filter code behind it. Origin
// modes 0 and 3 keep the bytes as given, so forged origins (the bogus path) stay in reach.
// The cookies are deterministic (splitmix64 from a fixed seed), so every input replays the same.
#include <cstdint>
#include <cstdlib>
#include <span>
#include <variant>
#include <vector>

#include "ntp/exchange.hpp"

namespace {

using namespace taid;
using namespace taid::ntp;

// 2023-11-14 22:13:20 UTC: places the wire stamps of the corpus (2026) and of mutations (any era
// within 68 years) in time.
const UtcTime kPivot = UtcTime::from_unix_ns(1700000000LL * 1000000000);
// Enough for an iburst (8) and for the delay envelope to fit (4) and restart; every accepted
// sample costs a fit, which is what bounds the run's speed.
constexpr int kMaxRecords = 12;

uint64_t load_u64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | p[i];
  return v;
}

void store_u64(uint8_t* p, uint64_t v) {
  for (int i = 7; i >= 0; --i, v >>= 8) p[i] = static_cast<uint8_t>(v);
}

void check(bool ok) {
  if (!ok) std::abort();
}

struct Request {
  uint64_t cookie = 0;         // our transmit timestamp
  uint64_t xleave_cookie = 0;  // our receive field, 0 in basic mode
  int samples = 0;             // samples accepted for it
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t flags = data[0];
  constexpr int kMinPolls[] = {4, 6, 0, -4};
  const int minpoll = kMinPolls[(flags >> 2) & 3];
  uint64_t state = 0x7461696466757a7aULL;  // "taidfuzz"
  Exchange ex({"fuzz", minpoll, minpoll + 4, (flags & 2) != 0, (flags & 1) != 0}, [&state] {
    uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  });

  bool demobilized = false;
  Request request;
  bool polled = false;
  UtcTime now = kPivot;
  Duration next_timer;
  std::size_t at = 1;
  for (int record = 0; record < kMaxRecords && at + 2 <= size; ++record) {
    const uint8_t control = data[at];
    const std::size_t length = std::min<std::size_t>(data[at + 1], size - at - 2);
    std::vector<uint8_t> bytes(data + at + 2, data + at + 2 + length);
    at += 2 + length;
    const Duration out = Duration::from_us(100 * (1 + ((control >> 4) & 3)));
    const Duration back = Duration::from_us(100 * (1 + (control >> 6)));

    // The local clock reads what the server's does (its receive stamp, less the delay out), so
    // real replies give small offsets and the filter and envelope see sane samples.
    const UtcTime t1 =
        bytes.size() >= 40
            ? NtpTimestamp::from_raw(load_u64(bytes.data() + 32)).to_utc(kPivot) - out
            : now + next_timer;
    if ((control & 4) == 0 || !polled) {
      const Actions actions = ex.on_timer({t1, TimestampSource::kernel, -20});
      if (demobilized) check(actions.empty());
      for (const Action& a : actions) {
        if (const auto* send = std::get_if<SendRequest>(&a)) {
          const auto sent = decode(send->bytes);
          check(sent.ok() && sent->mode == Mode::client);
          request = {sent->transmit_time.raw(), sent->receive_time.raw(), 0};
          polled = true;
        } else if (const auto* timer = std::get_if<SetTimer>(&a)) {
          check(timer->after > Duration{});
          next_timer = timer->after;
        }
      }
      now = t1;
    }
    if ((control & 8) != 0) ex.on_transmit_timestamp({now, TimestampSource::kernel, -24});

    const int origin_mode = control & 3;
    if (bytes.size() >= 32 && (origin_mode == 1 || origin_mode == 2)) {
      const uint64_t cookie =
          origin_mode == 2 && request.xleave_cookie != 0 ? request.xleave_cookie : request.cookie;
      store_u64(bytes.data() + 24, cookie);
    }
    const Actions actions = ex.on_packet(
        bytes, {now + out + back + Duration::from_us(10), TimestampSource::kernel, -20});
    if (demobilized) check(actions.empty());

    const auto reply = decode(bytes);
    const uint64_t origin = reply ? reply->origin_time.raw() : 0;
    const bool echoes_cookie =
        polled && (origin == request.cookie ||
                   (request.xleave_cookie != 0 && origin == request.xleave_cookie));
    for (const Action& a : actions) {
      if (const auto* s = std::get_if<SampleAccepted>(&a)) {
        // Only a reply echoing a cookie of the request in flight, once per request.
        check(reply.ok() && echoes_cookie);
        check(++request.samples == 1);
        check(s->sample.interleaved == (origin == request.xleave_cookie));
        check(s->sample.delay > Duration{});
        check(s->sample.dispersion >= Duration{});
      } else if (std::get_if<Demobilize>(&a) != nullptr) {
        check(
            reply.ok() && echoes_cookie && reply->stratum == 0 &&
            (reply->reference_id == kiss_code("DENY") || reply->reference_id == kiss_code("RSTR")));
        demobilized = true;
      } else if (const auto* timer = std::get_if<SetTimer>(&a)) {
        check(reply.ok() && echoes_cookie);  // a forged reply cannot move the poll
        check(timer->after > Duration{});
        next_timer = timer->after;
      } else {
        check(std::get_if<SendRequest>(&a) == nullptr);  // replies never send
      }
    }
  }
  // What taictl shows of the source: no offset without an accepted sample.
  check(!ex.offset_estimate() || ex.status().samples > 0);
  check(!to_string(ex.status().state).empty());
  return 0;
}
