/* Map layout shared by the XDP NTP server program (C, BPF) and its loader (C++, user space). */
/*
 * Fixed-width fields only, pads explicit and zero: the kernel compares keys as raw bytes and both
 * sides must agree on every offset. Numbers are host byte order unless a comment says "wire".
 */
#ifndef TAID_BPF_NTP_SERVER_XDP_H
#define TAID_BPF_NTP_SERVER_XDP_H

#include <linux/bpf.h>
#include <linux/types.h>

/* Capacity of each access trie (prefix rules) and of the per-client rate table (LRU). */
#define XDP_NTP_ACCESS_ENTRIES 4096
#define XDP_NTP_CLIENT_ENTRIES 65536

/* The exact request size answered in the kernel: the header alone (RFC 5905 §7.3). */
#define XDP_NTP_HEADER_LEN 48

/* What the server says about its clock (RFC 5905 §7.3), and how to read T2/T3 in UTC. */
struct xdp_ntp_clock {
  __u8 valid; /* 0 (never written, or withdrawn): every request goes to user space */
  __u8 leap;  /* LI, 0..3 */
  __u8 stratum;
  __s8 precision_log2;
  __u32 reference_id;    /* as a number; the program writes it big-endian */
  __u32 root_delay;      /* NTP short 16.16, raw */
  __u32 root_dispersion; /* NTP short 16.16, raw */
  __u64 reference_time;  /* NTP 32.32, raw */
  __s64 tai_offset_s;    /* TAI - UTC in seconds: UTC = CLOCK_TAI - this */
};

/*
 * The one element of the settings map. Written by user space with BPF_F_LOCK and copied out by the
 * program under bpf_spin_lock, so a reply never mixes two updates (a plain array update is a
 * memcpy into the live element, which a program on another CPU may be reading).
 */
struct xdp_ntp_settings {
  struct bpf_spin_lock lock; /* only the helpers touch it */
  __u32 access_slot;         /* which access trie is current: 0 or 1 */
  struct xdp_ntp_clock clock;
  __u64 rate_interval_ns; /* 0: no rate limit; else 2^interval_log2 s */
  __u64 rate_burst_ns;    /* (burst - 1) * interval: how far ahead a client may run */
};

/* LPM trie key: prefixlen first (the kernel's bpf_lpm_trie_key layout), then the address.
 * IPv4 as v4-mapped ::ffff:a.b.c.d, its prefix length 96 + n. */
struct xdp_ntp_prefix_key {
  __u32 prefixlen;
  __u8 addr[16];
};

/* Trie value: 1 allow, 0 deny. No match: user space decides (its own access list). */
struct xdp_ntp_access {
  __u32 allow;
};

/* Rate table key and value: the client address (v4-mapped for IPv4). */
struct xdp_ntp_client_key {
  __u8 addr[16];
};
struct xdp_ntp_client {
  __u64 tat_ns; /* GCRA's theoretical arrival time, CLOCK_MONOTONIC ns */
};

/* Per-CPU counters, indexed by outcome. Packets not for our port are not counted. */
enum xdp_ntp_stat {
  XDP_NTP_ANSWERED = 0,            /* XDP_TX */
  XDP_NTP_TOO_SHORT = 1,           /* to our port, less than an NTP header */
  XDP_NTP_TOO_LONG = 2,            /* extension fields or a MAC: user space */
  XDP_NTP_BAD_VERSION_OR_MODE = 3, /* not a version 1..4 client request */
  XDP_NTP_ZERO_TRANSMIT = 4,       /* transmit 0: cannot be matched by the client */
  XDP_NTP_ORIGIN_SET = 5,          /* may be interleaved (RFC 9769): user space knows */
  XDP_NTP_DENIED = 6,              /* an access rule says deny */
  XDP_NTP_NO_RULE = 7,             /* no access rule matches */
  XDP_NTP_RATE_LIMITED = 8,        /* over the client's rate: user space limits or KoDs */
  XDP_NTP_CLOCK_UNSET = 9,         /* the clock was never set or was withdrawn */
  XDP_NTP_NOT_PLAIN_IP = 10,       /* IPv4 options, a fragment, or source port 0 */
  XDP_NTP_STAT_COUNT = 11,
};

#ifdef __cplusplus
static_assert(sizeof(struct xdp_ntp_clock) == 32, "xdp_ntp_clock layout must match the BPF side");
static_assert(sizeof(struct xdp_ntp_settings) == 56, "xdp_ntp_settings must match the BPF side");
static_assert(sizeof(struct xdp_ntp_prefix_key) == 20, "xdp_ntp_prefix_key must match BPF");
#else
_Static_assert(sizeof(struct xdp_ntp_clock) == 32, "xdp_ntp_clock layout must match user space");
_Static_assert(sizeof(struct xdp_ntp_settings) == 56, "xdp_ntp_settings must match user space");
_Static_assert(sizeof(struct xdp_ntp_prefix_key) == 20, "xdp_ntp_prefix_key must match user space");
#endif

#endif /* TAID_BPF_NTP_SERVER_XDP_H */
