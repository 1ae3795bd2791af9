/* taid_clock.h: taid's shared-memory clock record and a header-only reader, taid_now(), that
 * turns it into an interval of TAI nanoseconds guaranteed to hold the true time (C99 and C++).
 *
 * The daemon (lib/publish/shm_clock_writer) keeps one record in a small file, by default
 * /dev/shm/taid-clock, mode 0644; readers map it read-only. The record says: at as_of on
 * CLOCK_MONOTONIC, |true TAI - CLOCK_TAI| <= bound_ns, growing by at most max_drift_ppb after
 * that. taid_now() reads CLOCK_TAI and the monotonic clock and returns
 *     [tai - B, tai + B],  B = bound_ns + ceil(max_drift_ppb * (now - as_of) / 1e9)
 * when, and only when, the record is consistent, fresh, vouched for, and synchronized or free
 * running. In every other case the status says why and the interval is the widest one,
 * [INT64_MIN, INT64_MAX]: a reader can never get a tight interval from a record it should not
 * trust. Always check taid_clock_usable(interval.status).
 *
 * Layout: fixed-width fields in the host's byte order (little-endian on every platform taid
 * runs on), naturally aligned, versioned by magic + size + version. Like AWS ClockBound's
 * segment (magic, size, version, an even/odd generation, as-of and void-after on the monotonic
 * clock, bound, max drift, the same four statuses), with a 64-bit sequence that never wraps, a
 * boot id, and TAI instead of CLOCK_REALTIME. Like fbclock, the interval is computed from an
 * anchor plus a drift term; unlike fbclock's v1 CRC check, a read that cannot get a consistent
 * copy says so (TAID_CLOCK_TORN) instead of using whatever it copied.
 *
 * Seqlock (Boehm, "Can seqlocks get along with programming language memory models?"): every
 * field is accessed atomically (relaxed). The writer stores seq odd, a release fence, the fields,
 * then seq even with release; the reader loads seq with acquire, the fields, an acquire fence,
 * seq again, and retries a bounded number of times (TAID_CLOCK_READ_TRIES).
 *
 * Needs POSIX.1-2008 declarations: compile with _POSIX_C_SOURCE >= 200809L (or _GNU_SOURCE /
 * _DEFAULT_SOURCE, the default of gcc and g++ outside strict ISO modes). GCC or Clang (the
 * __atomic builtins). Linux only (CLOCK_TAI, /proc/sys/kernel/random/boot_id).
 *
 * A struct taid_clock may be shared by threads: taid_now() only reads it.
 */
#ifndef TAID_TAID_CLOCK_H
#define TAID_TAID_CLOCK_H

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#if !defined(_POSIX_C_SOURCE) || _POSIX_C_SOURCE < 200809L
#error "taid_clock.h needs POSIX.1-2008: define _POSIX_C_SOURCE 200809L before any #include"
#endif
#if !defined(__GNUC__)
#error "taid_clock.h needs GCC or Clang (__atomic builtins)"
#endif

#ifdef __cplusplus
/* C casts are the only ones C has; C++ users building with -Wold-style-cast need not see them. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wold-style-cast"
extern "C" {
#endif

#define TAID_CLOCK_DEFAULT_PATH "/dev/shm/taid-clock"

/* "TAIDCLK" and a NUL, read as a little-endian uint64. */
#define TAID_CLOCK_MAGIC UINT64_C(0x004B4C4344494154)
#define TAID_CLOCK_VERSION 1u

/* Statuses. 0..3 are what the daemon writes into the record; 4.. are the reader's verdicts. */
#define TAID_CLOCK_UNKNOWN 0       /* no synchronization yet, or taid stopped */
#define TAID_CLOCK_SYNCHRONIZED 1  /* taid is steering (or measuring, -x) against its sources */
#define TAID_CLOCK_FREE_RUNNING 2  /* sources lost: the bound grows by the drift from as_of */
#define TAID_CLOCK_DISRUPTED 3     /* the clock was stepped or changed behind taid's back */
#define TAID_CLOCK_TAI_UNVOUCHED 4 /* the kernel's TAI offset is not vouched for by taid */
#define TAID_CLOCK_STALE 5         /* past void_after, as_of in the future, or another boot */
#define TAID_CLOCK_TORN 6          /* no consistent copy within TAID_CLOCK_READ_TRIES */
#define TAID_CLOCK_BAD_RECORD 7    /* wrong magic, version or size, or absurd fields */
#define TAID_CLOCK_ERROR 8         /* handle not open, or clock_gettime failed */

#define TAID_CLOCK_FLAG_TAI_VOUCHED 1u

/* Bounded retries of a seqlock read. A writer takes tens of ns per record; a reader that still
 * finds it busy after this many tries (the writer preempted or dead mid-write) reports TORN. */
#define TAID_CLOCK_READ_TRIES 256
/* A record's as_of may lie this far after the reader's monotonic reading (clock read order
 * across CPUs) before the record counts as from the future (STALE). */
#define TAID_CLOCK_CAUSALITY_SLACK_NS INT64_C(1000000)
/* max_drift_ppb at or above 1e9 (100 %) is nonsense: BAD_RECORD (ClockBound's check). */
#define TAID_CLOCK_MAX_DRIFT_PPB 1000000000u

/* The record, 96 bytes; every field is naturally aligned. Offsets are part of the format. */
struct taid_clock_record {
  uint64_t magic;             /*  0 TAID_CLOCK_MAGIC */
  uint32_t size;              /*  8 sizeof(struct taid_clock_record) */
  uint16_t version;           /* 12 TAID_CLOCK_VERSION */
  uint16_t reserved0;         /* 14 zero */
  uint64_t seq;               /* 16 odd while being written; 0: never published */
  int64_t as_of_mono_ns;      /* 24 CLOCK_MONOTONIC instant at which bound_ns holds */
  int64_t bound_ns;           /* 32 |true TAI - CLOCK_TAI| at as_of, >= 0 */
  int64_t void_after_mono_ns; /* 40 the writer republishes before this; after it: STALE */
  uint32_t max_drift_ppb;     /* 48 growth of the bound per second after as_of, ppb */
  int32_t tai_offset_s;       /* 52 the kernel's TAI - UTC as taid set or saw it */
  uint32_t status;            /* 56 TAID_CLOCK_UNKNOWN .. TAID_CLOCK_DISRUPTED */
  uint32_t flags;             /* 60 TAID_CLOCK_FLAG_TAI_VOUCHED */
  uint64_t boot_id[2];        /* 64 /proc/sys/kernel/random/boot_id of the writer's boot */
  uint32_t writer_pid;        /* 80 the daemon's pid, for diagnostics */
  uint32_t reserved1;         /* 84 zero */
  uint64_t publications;      /* 88 count of publish() calls by this writer (diagnostics) */
};

/* One consistent copy of the record's fields. */
struct taid_clock_snapshot {
  int64_t as_of_mono_ns;
  int64_t bound_ns;
  int64_t void_after_mono_ns;
  uint32_t max_drift_ppb;
  int32_t tai_offset_s;
  uint32_t status;
  uint32_t flags;
  uint64_t boot_id[2];
};

/* What taid_now() returns. Use the bounds only when taid_clock_usable(status). */
struct taid_interval {
  int64_t earliest_tai_ns; /* ns since 1970-01-01 00:00:00 TAI */
  int64_t latest_tai_ns;
  int32_t status;
};

struct taid_clock {
  const struct taid_clock_record* record; /* NULL when not open */
  uint64_t boot_id[2];                    /* this boot's id; zero if /proc did not say */
  int64_t coarse_slack_ns;                /* CLOCK_MONOTONIC_COARSE's tick + 10 ms */
};

static inline int taid_clock_usable(int32_t status) {
  return status == TAID_CLOCK_SYNCHRONIZED || status == TAID_CLOCK_FREE_RUNNING;
}

static inline const char* taid_clock_status_name(int32_t status) {
  switch (status) {
    case TAID_CLOCK_UNKNOWN:
      return "unknown";
    case TAID_CLOCK_SYNCHRONIZED:
      return "synchronized";
    case TAID_CLOCK_FREE_RUNNING:
      return "free-running";
    case TAID_CLOCK_DISRUPTED:
      return "disrupted";
    case TAID_CLOCK_TAI_UNVOUCHED:
      return "tai-unvouched";
    case TAID_CLOCK_STALE:
      return "stale";
    case TAID_CLOCK_TORN:
      return "torn";
    case TAID_CLOCK_BAD_RECORD:
      return "bad-record";
    default:
      return "error";
  }
}

static inline struct taid_interval taid_clock_widest_(int32_t status) {
  struct taid_interval widest;
  widest.earliest_tai_ns = INT64_MIN;
  widest.latest_tai_ns = INT64_MAX;
  widest.status = status;
  return widest;
}

/* Parses the kernel's boot id (a UUID, 32 hex digits and dashes) into two words; returns 0, or
 * -1 with both words zero when it cannot be read. The writer uses the same function. */
static inline int taid_clock_read_boot_id(uint64_t boot_id[2]) {
  char text[64];
  size_t n;
  size_t i;
  unsigned digits = 0;
  FILE* f = fopen("/proc/sys/kernel/random/boot_id", "r");
  boot_id[0] = 0;
  boot_id[1] = 0;
  if (f == NULL) return -1;
  n = fread(text, 1, sizeof text - 1, f);
  fclose(f);
  for (i = 0; i < n && digits < 32; ++i) {
    char c = text[i];
    uint64_t v;
    if (c >= '0' && c <= '9')
      v = (uint64_t)(c - '0');
    else if (c >= 'a' && c <= 'f')
      v = (uint64_t)(c - 'a' + 10);
    else if (c >= 'A' && c <= 'F')
      v = (uint64_t)(c - 'A' + 10);
    else
      continue;
    boot_id[digits / 16] = (boot_id[digits / 16] << 4) | v;
    ++digits;
  }
  if (digits != 32) {
    boot_id[0] = 0;
    boot_id[1] = 0;
    return -1;
  }
  return 0;
}

/* Copies the record under the seqlock. Returns TAID_CLOCK_SYNCHRONIZED as "ok" (the snapshot's
 * own status still has to be judged), TAID_CLOCK_UNKNOWN for a record never published,
 * TAID_CLOCK_BAD_RECORD or TAID_CLOCK_TORN. */
static inline int32_t taid_clock_read_snapshot(const struct taid_clock_record* r,
                                               struct taid_clock_snapshot* out) {
  int tries;
  for (tries = 0; tries < TAID_CLOCK_READ_TRIES; ++tries) {
    uint64_t seq0 = __atomic_load_n(&r->seq, __ATOMIC_ACQUIRE);
    uint64_t magic;
    uint32_t size;
    uint16_t version;
    uint64_t seq1;
    if (seq0 & 1u) continue; /* being written */
    magic = __atomic_load_n(&r->magic, __ATOMIC_RELAXED);
    size = __atomic_load_n(&r->size, __ATOMIC_RELAXED);
    version = __atomic_load_n(&r->version, __ATOMIC_RELAXED);
    out->as_of_mono_ns = __atomic_load_n(&r->as_of_mono_ns, __ATOMIC_RELAXED);
    out->bound_ns = __atomic_load_n(&r->bound_ns, __ATOMIC_RELAXED);
    out->void_after_mono_ns = __atomic_load_n(&r->void_after_mono_ns, __ATOMIC_RELAXED);
    out->max_drift_ppb = __atomic_load_n(&r->max_drift_ppb, __ATOMIC_RELAXED);
    out->tai_offset_s = __atomic_load_n(&r->tai_offset_s, __ATOMIC_RELAXED);
    out->status = __atomic_load_n(&r->status, __ATOMIC_RELAXED);
    out->flags = __atomic_load_n(&r->flags, __ATOMIC_RELAXED);
    out->boot_id[0] = __atomic_load_n(&r->boot_id[0], __ATOMIC_RELAXED);
    out->boot_id[1] = __atomic_load_n(&r->boot_id[1], __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
    seq1 = __atomic_load_n(&r->seq, __ATOMIC_RELAXED);
    if (seq1 != seq0) continue; /* changed under us */
    if (magic != TAID_CLOCK_MAGIC || size != (uint32_t)sizeof(struct taid_clock_record) ||
        version != TAID_CLOCK_VERSION) {
      return TAID_CLOCK_BAD_RECORD;
    }
    return seq0 == 0 ? TAID_CLOCK_UNKNOWN : TAID_CLOCK_SYNCHRONIZED;
  }
  return TAID_CLOCK_TORN;
}

/* The pure part of taid_now(), for tests: the interval for a CLOCK_TAI reading tai_ns, given
 * mono_ns, an upper bound of CLOCK_MONOTONIC taken after it (a later reading only widens the
 * interval), and this boot's id (zeros: unchecked). */
static inline struct taid_interval taid_clock_interval_at(const struct taid_clock_snapshot* s,
                                                          int64_t tai_ns, int64_t mono_ns,
                                                          const uint64_t boot_id[2]) {
  struct taid_interval out;
  uint64_t age_ns;
  uint64_t age_s;
  uint64_t frac_ns;
  uint64_t growth_ns;
  uint64_t half_ns;
  const uint64_t kLimitNs = UINT64_C(1) << 61; /* ~73 years: anything larger is nonsense */

  if (s->status > TAID_CLOCK_DISRUPTED) return taid_clock_widest_(TAID_CLOCK_BAD_RECORD);
  if (s->status == TAID_CLOCK_UNKNOWN || s->status == TAID_CLOCK_DISRUPTED) {
    return taid_clock_widest_((int32_t)s->status);
  }
  if ((boot_id[0] | boot_id[1]) != 0 &&
      (s->boot_id[0] != boot_id[0] || s->boot_id[1] != boot_id[1])) {
    return taid_clock_widest_(TAID_CLOCK_STALE); /* written during an earlier boot */
  }
  if (mono_ns > s->void_after_mono_ns) return taid_clock_widest_(TAID_CLOCK_STALE);
  /* Differences in uint64_t: a damaged record's extreme values must not overflow int64_t. */
  if (s->as_of_mono_ns > mono_ns &&
      (uint64_t)s->as_of_mono_ns - (uint64_t)mono_ns > (uint64_t)TAID_CLOCK_CAUSALITY_SLACK_NS) {
    return taid_clock_widest_(TAID_CLOCK_STALE);
  }
  if (s->bound_ns < 0 || (uint64_t)s->bound_ns > kLimitNs ||
      s->max_drift_ppb >= TAID_CLOCK_MAX_DRIFT_PPB) {
    return taid_clock_widest_(TAID_CLOCK_BAD_RECORD);
  }
  if (!(s->flags & TAID_CLOCK_FLAG_TAI_VOUCHED)) {
    return taid_clock_widest_(TAID_CLOCK_TAI_UNVOUCHED);
  }

  /* growth = ceil(drift * age / 1e9) without overflow: whole seconds, then the fraction. */
  age_ns = mono_ns > s->as_of_mono_ns ? (uint64_t)mono_ns - (uint64_t)s->as_of_mono_ns : 0;
  age_s = age_ns / 1000000000u;
  frac_ns = age_ns % 1000000000u;
  if (s->max_drift_ppb != 0 && age_s > kLimitNs / s->max_drift_ppb) {
    return taid_clock_widest_(TAID_CLOCK_STALE);
  }
  growth_ns = age_s * s->max_drift_ppb + (frac_ns * s->max_drift_ppb + 999999999u) / 1000000000u;
  half_ns = (uint64_t)s->bound_ns + growth_ns; /* both <= 2^61: no overflow */
  if (half_ns > kLimitNs) return taid_clock_widest_(TAID_CLOCK_STALE);
  if (tai_ns < INT64_MIN + (int64_t)half_ns || tai_ns > INT64_MAX - (int64_t)half_ns) {
    return taid_clock_widest_(TAID_CLOCK_ERROR);
  }
  out.earliest_tai_ns = tai_ns - (int64_t)half_ns;
  out.latest_tai_ns = tai_ns + (int64_t)half_ns;
  out.status = (int32_t)s->status;
  return out;
}

/* Maps the record at path (NULL: TAID_CLOCK_DEFAULT_PATH) read-only. Returns 0, or -errno:
 * -EINVAL when the file is too small to hold a record, -EPERM when it is writable by group or
 * others (anyone could forge it). The file's content is judged at every taid_now(). */
static inline int taid_clock_open(struct taid_clock* c, const char* path) {
  struct stat st;
  struct timespec res;
  void* p;
  int fd;
  c->record = NULL;
  c->boot_id[0] = 0;
  c->boot_id[1] = 0;
  c->coarse_slack_ns = 0;
  if (path == NULL) path = TAID_CLOCK_DEFAULT_PATH;
  fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -errno;
  if (fstat(fd, &st) != 0) {
    int e = errno;
    close(fd);
    return -e;
  }
  if (!S_ISREG(st.st_mode) || st.st_size < (off_t)sizeof(struct taid_clock_record)) {
    close(fd);
    return -EINVAL;
  }
  if (st.st_mode & (S_IWGRP | S_IWOTH)) {
    close(fd);
    return -EPERM;
  }
  p = mmap(NULL, sizeof(struct taid_clock_record), PROT_READ, MAP_SHARED, fd, 0);
  close(fd); /* the mapping keeps the file */
  if (p == MAP_FAILED) return -errno;
  /* Unreadable /proc leaves the id zero, which skips the boot check rather than fail. */
  (void)taid_clock_read_boot_id(c->boot_id);
  /* The coarse clock trails CLOCK_MONOTONIC by up to a tick; 10 ms more covers a late tick
   * (at 1 ppm it widens the bound by 10 ns). */
  if (clock_getres(CLOCK_MONOTONIC_COARSE, &res) == 0) {
    c->coarse_slack_ns = (int64_t)res.tv_sec * 1000000000 + res.tv_nsec + 10000000;
  } else {
    c->coarse_slack_ns = 1000000000; /* no coarse clock? then a second's slack */
  }
  c->record = (const struct taid_clock_record*)p;
  return 0;
}

static inline void taid_clock_close(struct taid_clock* c) {
  /* Through uintptr_t: munmap takes void*, the mapping is read-only anyway (-Wcast-qual). */
  if (c->record != NULL) munmap((void*)(uintptr_t)c->record, sizeof(struct taid_clock_record));
  c->record = NULL;
}

/* The interval that holds true TAI now. CLOCK_TAI is read first and the monotonic clock after
 * it, so the age is never underestimated. The monotonic reading is CLOCK_MONOTONIC_COARSE
 * (no hardware counter read: it keeps taid_now() near one clock_gettime) plus its tick and
 * 10 ms, an upper bound of CLOCK_MONOTONIC at that moment. */
static inline struct taid_interval taid_now(const struct taid_clock* c) {
  struct taid_clock_snapshot s;
  struct timespec tai;
  struct timespec mono;
  int32_t read;
  if (c == NULL || c->record == NULL) return taid_clock_widest_(TAID_CLOCK_ERROR);
  read = taid_clock_read_snapshot(c->record, &s);
  if (read != TAID_CLOCK_SYNCHRONIZED) return taid_clock_widest_(read);
  if (clock_gettime(CLOCK_TAI, &tai) != 0 || clock_gettime(CLOCK_MONOTONIC_COARSE, &mono) != 0) {
    return taid_clock_widest_(TAID_CLOCK_ERROR);
  }
  return taid_clock_interval_at(
      &s, (int64_t)tai.tv_sec * 1000000000 + tai.tv_nsec,
      (int64_t)mono.tv_sec * 1000000000 + mono.tv_nsec + c->coarse_slack_ns, c->boot_id);
}

#ifdef __cplusplus
} /* extern "C" */
#pragma GCC diagnostic pop
#endif

#endif /* TAID_TAID_CLOCK_H */
