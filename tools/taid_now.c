/* taid-now: prints the interval taid_now() gives from taid's shared-memory clock record, the
 * whole of a C user's view of it (include/taid/taid_clock.h, header-only). Usage:
 *   taid-now [RECORD]     (default TAID_CLOCK_DEFAULT_PATH)
 * Exit status 0 when the interval is usable (synchronized or free-running), 1 when the record
 * says it is not (the interval is then the widest), 2 when the record cannot be opened. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <taid/taid_clock.h>

int main(int argc, char** argv) {
  const char* path = argc > 1 ? argv[1] : NULL;
  struct taid_clock clock;
  const int opened = taid_clock_open(&clock, path);
  if (opened != 0) {
    fprintf(stderr, "taid-now: %s: %s\n", path ? path : TAID_CLOCK_DEFAULT_PATH, strerror(-opened));
    return 2;
  }
  const struct taid_interval now = taid_now(&clock);
  taid_clock_close(&clock);
  if (!taid_clock_usable(now.status)) {
    printf("status %s: no usable interval\n", taid_clock_status_name(now.status));
    return 1;
  }
  const int64_t half = (now.latest_tai_ns - now.earliest_tai_ns) / 2;
  printf("status %s: TAI in [%" PRId64 ", %" PRId64 "] ns (midpoint %" PRId64 " ± %" PRId64
         " ns)\n",
         taid_clock_status_name(now.status), now.earliest_tai_ns, now.latest_tai_ns,
         now.earliest_tai_ns + half, half);
  return 0;
}
