// libFuzzer target: the config parser either returns a Config or throws ConfigError whose
// message starts with "file:line: " — never anything else.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "daemon/config.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  try {
    (void)taid::daemon::parse_config(text, "fuzz.conf");
  } catch (const taid::daemon::ConfigError& e) {
    if (std::string_view(e.what()).rfind("fuzz.conf:", 0) != 0) std::abort();
  }
  return 0;
}
