// libFuzzer target: any bytes either fail to decode with a named field, or round-trip
// decode → encode → decode to the same packet (ntpd-rs keeps the same target).
#include <cstdint>
#include <cstdlib>
#include <span>

#include "ntp/packet.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace taid::ntp;
  const auto first = decode(std::span<const uint8_t>(data, size));
  if (!first) {
    if (first.error().message().empty()) std::abort();  // every error names its field
    return 0;
  }
  const auto bytes = encode(*first);
  const auto second = decode(bytes);
  if (!second || !(*second == *first)) std::abort();
  return 0;
}
