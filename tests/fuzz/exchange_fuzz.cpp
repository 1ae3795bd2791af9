// libFuzzer target: a client exchange fed arbitrary bytes as the reply to its request must
// never crash, and must never accept a sample whose origin does not match its cookies.
#include <cstdint>
#include <cstdlib>
#include <span>
#include <variant>

#include "ntp/exchange.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace taid;
  using namespace taid::ntp;
  uint64_t cookie = 0x0123456789abcdefULL;
  Exchange ex({"fuzz", 4, 6, true, size % 2 == 0}, [&cookie] { return cookie += 0x9e3779b9; });
  const UtcTime t0 = UtcTime::from_unix_ns(1700000000LL * 1000000000);
  (void)ex.on_timer({t0, TimestampSource::kernel, -24});
  const Actions actions = ex.on_packet(std::span<const uint8_t>(data, size),
                                       {t0 + Duration::from_us(50), TimestampSource::kernel, -24});
  for (const Action& a : actions) {
    if (const auto* s = std::get_if<SampleAccepted>(&a)) {
      // Only a reply echoing our transmit cookie can be accepted.
      const auto reply = decode(std::span<const uint8_t>(data, size));
      if (!reply || reply->origin_time.raw() != cookie) std::abort();
      (void)s;
    }
  }
  (void)ex.on_timer({t0 + Duration::from_s(2), TimestampSource::kernel, -24});
  return 0;
}
