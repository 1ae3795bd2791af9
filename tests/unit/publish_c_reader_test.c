/* taid_clock.h from C99 (-Wall -Wextra -Wpedantic -Werror): a hand-made record, read back. */
#include <stdlib.h>
#include <string.h>
#include <taid/taid_clock.h>

static int failures = 0;

#define CHECK(cond)                                                            \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
      ++failures;                                                              \
    }                                                                          \
  } while (0)

static int64_t now_ns(clockid_t id) {
  struct timespec ts;
  clock_gettime(id, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int main(void) {
  char path[] = "/tmp/taid-c-reader-XXXXXX";
  struct taid_clock_record rec;
  struct taid_clock clock;
  struct taid_interval i;
  int64_t tai_before;
  int64_t tai_after;
  int fd = mkstemp(path);
  if (fd < 0) {
    perror("mkstemp");
    return 2;
  }
  fchmod(fd, 0644);
  memset(&rec, 0, sizeof rec);
  rec.magic = TAID_CLOCK_MAGIC;
  rec.size = (uint32_t)sizeof rec;
  rec.version = TAID_CLOCK_VERSION;
  rec.seq = 2;
  rec.as_of_mono_ns = now_ns(CLOCK_MONOTONIC);
  rec.bound_ns = 1500;
  rec.void_after_mono_ns = rec.as_of_mono_ns + INT64_C(10000000000);
  rec.max_drift_ppb = 0; /* no growth: the width is exact */
  rec.tai_offset_s = 37;
  rec.status = TAID_CLOCK_SYNCHRONIZED;
  rec.flags = TAID_CLOCK_FLAG_TAI_VOUCHED;
  taid_clock_read_boot_id(rec.boot_id);
  CHECK(write(fd, &rec, sizeof rec) == (ssize_t)sizeof rec);

  CHECK(taid_clock_open(&clock, path) == 0);
  tai_before = now_ns(CLOCK_TAI);
  i = taid_now(&clock);
  tai_after = now_ns(CLOCK_TAI);
  CHECK(i.status == TAID_CLOCK_SYNCHRONIZED);
  CHECK(i.latest_tai_ns - i.earliest_tai_ns == 3000);
  CHECK(i.earliest_tai_ns + 1500 >= tai_before && i.earliest_tai_ns + 1500 <= tai_after);
  printf("taid_now: [%lld, %lld] %s\n", (long long)i.earliest_tai_ns, (long long)i.latest_tai_ns,
         taid_clock_status_name(i.status));

  /* A wrong magic through the file: the mapping sees it, the widest interval comes back. */
  rec.magic = 0;
  CHECK(pwrite(fd, &rec, sizeof rec, 0) == (ssize_t)sizeof rec);
  i = taid_now(&clock);
  CHECK(i.status == TAID_CLOCK_BAD_RECORD);
  CHECK(i.earliest_tai_ns == INT64_MIN && i.latest_tai_ns == INT64_MAX);

  taid_clock_close(&clock);
  close(fd);
  unlink(path);
  if (failures != 0) return 1;
  printf("ok\n");
  return 0;
}
