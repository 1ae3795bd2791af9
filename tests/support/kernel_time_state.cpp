// kernel_time_state: prints the system clock's kernel NTP state on one line, read with
// adjtimex(modes = 0) through lib/clock's read-out, so scripts/test can show that a whole test
// run left this machine's clock discipline exactly as it found it. Never writes.
#include <cinttypes>
#include <cstdio>

#include "clock/clock_driver.hpp"

int main() {
  auto state = taid::clock::read_kernel_time_state();
  if (!state.ok()) {
    std::fprintf(stderr, "kernel_time_state: %s\n", state.error().message().c_str());
    return 1;
  }
  // Only what a writer would change: the clock state, status bits, frequency, PLL offset, the
  // TAI offset, tick. maxerror grows by itself every second, so it is left out.
  std::printf("state=%s status=0x%04" PRIx32 " freq_ppb=%.3f offset_ns=%" PRId64
              " tai_offset_s=%" PRId32 " tick_us=%" PRId64 "\n",
              state->clock_state_name().c_str(), state->status, state->frequency_ppb,
              state->offset.ns(), state->tai_offset_s, state->tick_us);
  return 0;
}
