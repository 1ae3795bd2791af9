/* Map layout shared by the eBPF RX timestamp program (C, BPF) and its loader (C++, user space). */
/*
 * Fixed-width fields only, no implicit padding (the pads are explicit and always zero), so the
 * kernel and user space agree on every byte of a key: the hash map compares keys as raw bytes.
 */
#ifndef TAID_BPF_RX_TIMESTAMP_H
#define TAID_BPF_RX_TIMESTAMP_H

#include <linux/types.h>

/* LRU: entries nobody takes (packets we never wait for) age out instead of filling the map. */
#define RX_TS_MAP_ENTRIES 4096

/* Offset of the transmit timestamp in the NTP header (RFC 5905 §7.3) and the header length. */
#define RX_TS_NTP_TRANSMIT_OFFSET 40
#define RX_TS_NTP_HEADER_LEN 48

/* Which packet a stamp belongs to: who sent it, to which of our ports, carrying which T3. */
struct rx_ts_key {
  __u8 addr[16];     /* remote (source) address; IPv4 as v4-mapped ::ffff:a.b.c.d */
  __u16 remote_port; /* source UDP port, host byte order */
  __u16 local_port;  /* destination UDP port, host byte order */
  __u32 pad;         /* zero */
  __u64 transmit_ts; /* NTP transmit timestamp, the 8 wire bytes as they are (big-endian) */
};

/* When the packet reached the program, and on which interface. */
struct rx_ts_value {
  __u64 tai_ns;  /* CLOCK_TAI nanoseconds (bpf_ktime_get_tai_ns) */
  __u32 ifindex; /* interface the packet arrived on */
  __u32 pad;     /* zero */
};

#ifdef __cplusplus
static_assert(sizeof(struct rx_ts_key) == 32, "rx_ts_key layout must match the BPF side");
static_assert(sizeof(struct rx_ts_value) == 16, "rx_ts_value layout must match the BPF side");
#else
_Static_assert(sizeof(struct rx_ts_key) == 32, "rx_ts_key layout must match user space");
_Static_assert(sizeof(struct rx_ts_value) == 16, "rx_ts_value layout must match user space");
#endif

#endif /* TAID_BPF_RX_TIMESTAMP_H */
