/* XDP NTP server fast path: answers plain client requests in the driver with XDP_TX. */
/*
 * The kernel side of lib/bpf/xdp_server. A request is answered here only when it is the common
 * case that needs no state beyond a token bucket: Ethernet, IPv4 without options and unfragmented
 * or IPv6 without extension headers, UDP to ntp_port from a non-zero port, exactly 48 bytes of
 * NTP, version 1..4, mode 3, transmit != 0, origin == 0, the source allowed by an access rule and
 * within its rate, and a clock the daemon has set. The request is rewritten in place into the
 * mode-4 reply and sent back out of the interface it came in on. Everything else is XDP_PASS:
 * the daemon's own server (lib/server) sees exactly what this program did not answer.
 *
 * Why origin == 0: a basic request carries zeros in origin and receive from chrony (its
 * transmit_packet() zeroes both in client mode unless interleaved), from NTPsec's ntpdig (a fresh
 * SyncPacket with only the transmit timestamp set) and from taid's own client (lib/ntp/exchange:
 * origin and receive only with xleave). A non-zero origin is either an interleaved request (RFC
 * 9769: the origin names the server's receive stamp of an earlier reply, which only user space's
 * interleave table can resolve) or a client that echoes the previous reply's transmit (ntpd
 * style); user space answers both correctly, so they go up. The receive field is not looked at:
 * with origin 0 it cannot make the request interleaved.
 *
 * Time: T2 is bpf_ktime_get_tai_ns() taken first, T3 a second reading taken after everything
 * else but the 8 bytes it fills and their share of the UDP checksum. Both are converted to UTC
 * with the daemon's TAI - UTC from the settings map. Direct packet access: a 90- or 110-byte
 * request is always in the linear part.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/udp.h>

#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "ntp_server_xdp.h"

/* Read-only after load: the loader sets it in the skeleton's rodata before loading. */
const volatile __u16 ntp_port = 123;

struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, struct xdp_ntp_settings);
} taid_xdp_settings SEC(".maps");

/* Two access tries: user space fills the idle one, then switches access_slot under the lock, so
 * a packet never sees a half-written rule set. */
struct {
  __uint(type, BPF_MAP_TYPE_LPM_TRIE);
  __uint(max_entries, XDP_NTP_ACCESS_ENTRIES);
  __uint(map_flags, BPF_F_NO_PREALLOC);
  __type(key, struct xdp_ntp_prefix_key);
  __type(value, struct xdp_ntp_access);
} taid_xdp_acl0 SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_LPM_TRIE);
  __uint(max_entries, XDP_NTP_ACCESS_ENTRIES);
  __uint(map_flags, BPF_F_NO_PREALLOC);
  __type(key, struct xdp_ntp_prefix_key);
  __type(value, struct xdp_ntp_access);
} taid_xdp_acl1 SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_LRU_HASH);
  __uint(max_entries, XDP_NTP_CLIENT_ENTRIES);
  __type(key, struct xdp_ntp_client_key);
  __type(value, struct xdp_ntp_client);
} taid_xdp_clients SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, XDP_NTP_STAT_COUNT);
  __type(key, __u32);
  __type(value, __u64);
} taid_xdp_stats SEC(".maps");

/* Fragment bits of iphdr.frag_off (kernel-internal in net/ip.h, not in the UAPI headers). */
#define TAID_IP_MF 0x2000
#define TAID_IP_OFFSET 0x1fff

#define NS_PER_S 1000000000ULL
#define NTP_UNIX_EPOCH_DELTA 2208988800ULL

/* The NTP header as 32-bit words: it starts 4-byte aligned (NET_IP_ALIGN + 14 + 20 or 40 + 8),
 * so word stores are aligned stores. */
struct ntp_words {
  __u8 li_vn_mode;
  __u8 stratum;
  __u8 poll;
  __s8 precision;
  __be32 root_delay;
  __be32 root_dispersion;
  __be32 reference_id;
  __be32 reference_time[2];
  __be32 origin[2];
  __be32 receive[2];
  __be32 transmit[2];
};
_Static_assert(sizeof(struct ntp_words) == XDP_NTP_HEADER_LEN, "NTP header is 48 bytes");

static __always_inline void count(__u32 stat) {
  /* A 4-byte key stored as a whole 8-byte word (little-endian: the key is its low half), see
   * the stack discipline below. */
  const __u64 key = stat;
  __u64* counter = bpf_map_lookup_elem(&taid_xdp_stats, &key);
  if (counter) *counter += 1; /* per CPU: no atomics needed */
}

static __always_inline int pass(__u32 stat) {
  count(stat);
  return XDP_PASS;
}

/* CLOCK_TAI ns to an NTP timestamp in UTC, as the two big-endian wire words. The fraction is
 * ns * 2^32 / 10^9: ns < 2^30, so the product fits 64 bits. The era is dropped (the wire has no
 * room for it): seconds wrap modulo 2^32 as RFC 5905 intends. */
static __always_inline void ntp_time(__u64 tai_ns, __s64 tai_offset_s, __be32 out[2]) {
  const __u64 unix_ns = tai_ns - (__u64)tai_offset_s * NS_PER_S;
  const __u64 seconds = unix_ns / NS_PER_S;
  const __u64 ns = unix_ns - seconds * NS_PER_S;
  out[0] = bpf_htonl((__u32)(seconds + NTP_UNIX_EPOCH_DELTA));
  out[1] = bpf_htonl((__u32)((ns << 32) / NS_PER_S));
}

/* Ones' complement sum folded to 16 bits (not inverted). */
static __always_inline __u32 fold(__u64 sum) {
  sum = (sum & 0xffffffffULL) + (sum >> 32);
  sum = (sum & 0xffffULL) + (sum >> 16);
  sum = (sum & 0xffffULL) + (sum >> 16);
  sum = (sum & 0xffffULL) + (sum >> 16);
  return (__u32)sum;
}

/* Adds a 32-bit word as it lies in memory (two 16-bit words in the same native order that
 * bpf_csum_diff sums in) to a partial sum. */
static __always_inline __u64 add_word(__u64 sum, __u32 word) {
  return sum + (word & 0xffff) + (word >> 16);
}

/*
 * Stack discipline for Linux 6.1 without CAP_PERFMON (the packaged service has CAP_BPF and
 * CAP_NET_ADMIN): its verifier refuses a store narrower than 8 bytes into a stack slot that an
 * 8-byte register store filled before ("attempt to corrupt spilled pointer on stack", even when
 * the register held a plain 0, e.g. from a memset). So keys are built as whole 64-bit words in
 * registers and stored once, copies go through registers, and nothing is memset and then patched.
 * The word layouts below are little-endian's (x86, arm64: the targets taid builds for).
 */
#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "ntp_server_xdp.bpf.c composes its map keys for a little-endian BPF target"
#endif

static __always_inline void swap_mac(struct ethhdr* eth) {
  __u32 dst_head, src_head;
  __u16 dst_tail, src_tail;
  __builtin_memcpy(&dst_head, eth->h_dest, 4);
  __builtin_memcpy(&dst_tail, eth->h_dest + 4, 2);
  __builtin_memcpy(&src_head, eth->h_source, 4);
  __builtin_memcpy(&src_tail, eth->h_source + 4, 2);
  __builtin_memcpy(eth->h_dest, &src_head, 4);
  __builtin_memcpy(eth->h_dest + 4, &src_tail, 2);
  __builtin_memcpy(eth->h_source, &dst_head, 4);
  __builtin_memcpy(eth->h_source + 4, &dst_tail, 2);
}

union client_key {
  struct xdp_ntp_client_key key;
  __u64 words[2];
};

union prefix_key {
  struct xdp_ntp_prefix_key key; /* 20 bytes; the third word's upper half is padding */
  __u64 words[3];
};

/* The client's address: IPv6 as is, IPv4 v4-mapped. Two functions, not one taking a nullable
 * packet pointer: comparing a packet pointer with NULL also needs CAP_PERFMON. */
static __always_inline void client_key_v6(union client_key* key, const __u8* v6) {
  __u64 head, tail;
  __builtin_memcpy(&head, v6, 8);
  __builtin_memcpy(&tail, v6 + 8, 8);
  key->words[0] = head;
  key->words[1] = tail;
}

static __always_inline void client_key_v4(union client_key* key, __be32 v4) {
  key->words[0] = 0;
  key->words[1] = 0xffff0000ULL | ((__u64)v4 << 32); /* bytes 00 00 ff ff a b c d */
}

/* {prefixlen = 128, address}: the address shifted 4 bytes on, word by word. */
static __always_inline void make_prefix_key(union prefix_key* key, const union client_key* client) {
  const __u64 a0 = client->words[0];
  const __u64 a1 = client->words[1];
  key->words[0] = 128 | (a0 << 32);
  key->words[1] = (a0 >> 32) | (a1 << 32);
  key->words[2] = a1 >> 32;
}

/* What the program reads of the settings under the lock. */
struct snapshot {
  struct xdp_ntp_clock clock;
  __u64 rate_interval_ns;
  __u64 rate_burst_ns;
  __u64 access_slot;
};

/* GCRA per client: allowed while its theoretical arrival time is at most burst_ns ahead of now;
 * each answer moves it interval_ns on. Two CPUs updating one client at once may both pass: the
 * limit is approximate by a packet, never unbounded. */
static __always_inline int within_rate(const union client_key* key,
                                       const struct snapshot* settings) {
  if (settings->rate_interval_ns == 0) return 1;
  const __u64 now = bpf_ktime_get_ns();
  struct xdp_ntp_client* client = bpf_map_lookup_elem(&taid_xdp_clients, &key->key);
  if (client) {
    __u64 tat = client->tat_ns;
    if (tat < now) tat = now;
    if (tat - now > settings->rate_burst_ns) return 0;
    client->tat_ns = tat + settings->rate_interval_ns;
    return 1;
  }
  const struct xdp_ntp_client fresh = {.tat_ns = now + settings->rate_interval_ns};
  bpf_map_update_elem(&taid_xdp_clients, &key->key, &fresh, BPF_ANY);
  return 1;
}

/* The checks every request needs, whatever its IP version. Returns -1 to answer, else the stat
 * to count while passing it up. */
static __always_inline int check_ntp(const struct udphdr* udp, const struct ntp_words* ntp) {
  const __u16 udp_len = bpf_ntohs(udp->len);
  if (udp_len < sizeof(*udp) + XDP_NTP_HEADER_LEN) return XDP_NTP_TOO_SHORT;
  if (udp_len > sizeof(*udp) + XDP_NTP_HEADER_LEN) return XDP_NTP_TOO_LONG;
  const __u8 version = (ntp->li_vn_mode >> 3) & 7;
  const __u8 mode = ntp->li_vn_mode & 7;
  if (version < 1 || version > 4 || mode != 3) return XDP_NTP_BAD_VERSION_OR_MODE;
  if ((ntp->transmit[0] | ntp->transmit[1]) == 0) return XDP_NTP_ZERO_TRANSMIT;
  if ((ntp->origin[0] | ntp->origin[1]) != 0) return XDP_NTP_ORIGIN_SET;
  return -1;
}

/* Access, clock and rate; fills `settings` (a copy taken under the lock). Returns -1 to answer,
 * else the stat to count. */
static __always_inline int check_client(const union client_key* client, struct snapshot* settings) {
  const __u64 zero = 0; /* the 4-byte key 0, stored as a whole word */
  struct xdp_ntp_settings* live = bpf_map_lookup_elem(&taid_xdp_settings, &zero);
  if (!live) return XDP_NTP_CLOCK_UNSET;
  /* No calls while locked: copy the fields, then decide. */
  bpf_spin_lock(&live->lock);
  settings->access_slot = live->access_slot;
  settings->clock = live->clock;
  settings->rate_interval_ns = live->rate_interval_ns;
  settings->rate_burst_ns = live->rate_burst_ns;
  bpf_spin_unlock(&live->lock);

  union prefix_key key;
  make_prefix_key(&key, client);
  const struct xdp_ntp_access* rule = settings->access_slot == 0
                                          ? bpf_map_lookup_elem(&taid_xdp_acl0, &key.key)
                                          : bpf_map_lookup_elem(&taid_xdp_acl1, &key.key);
  if (!rule) return XDP_NTP_NO_RULE;
  if (!rule->allow) return XDP_NTP_DENIED;
  if (!settings->clock.valid) return XDP_NTP_CLOCK_UNSET;
  if (!within_rate(client, settings)) return XDP_NTP_RATE_LIMITED;
  return -1;
}

/* Everything of the reply but T3, in place. */
static __always_inline void fill_reply(struct ntp_words* ntp, const struct xdp_ntp_clock* clock,
                                       __u64 t2_tai_ns) {
  const __u8 version = (ntp->li_vn_mode >> 3) & 7;
  ntp->li_vn_mode = (__u8)(((clock->leap & 3) << 6) | (version << 3) | 4);
  ntp->stratum = clock->stratum;
  /* poll: echoed as it is */
  ntp->precision = clock->precision_log2;
  ntp->root_delay = bpf_htonl(clock->root_delay);
  ntp->root_dispersion = bpf_htonl(clock->root_dispersion);
  ntp->reference_id = bpf_htonl(clock->reference_id);
  ntp->reference_time[0] = bpf_htonl((__u32)(clock->reference_time >> 32));
  ntp->reference_time[1] = bpf_htonl((__u32)clock->reference_time);
  ntp->origin[0] = ntp->transmit[0];
  ntp->origin[1] = ntp->transmit[1];
  ntp_time(t2_tai_ns, clock->tai_offset_s, ntp->receive);
  ntp->transmit[0] = 0;
  ntp->transmit[1] = 0;
}

/* The UDP checksum's sum over the pseudo header's length and protocol and the whole datagram
 * (check field zero, transmit still zero), given the sum over the two addresses. */
static __always_inline __s64 udp_sum(struct udphdr* udp, void* data_end, __s64 address_sum) {
  if ((void*)udp + sizeof(*udp) + XDP_NTP_HEADER_LEN > data_end) return -1;
  udp->check = 0;
  /* IPv4's pseudo header has 0, protocol, length (16 bit each); IPv6's 32-bit length, 0, next
   * header: the same two non-zero 16-bit words, added as they lie in memory. */
  const __u64 pseudo =
      (__u32)address_sum + bpf_htons(sizeof(*udp) + XDP_NTP_HEADER_LEN) + bpf_htons(IPPROTO_UDP);
  return bpf_csum_diff(0, 0, (__be32*)udp, sizeof(*udp) + XDP_NTP_HEADER_LEN, fold(pseudo));
}

/* T3 as late as possible: read, written, and added to the checksum, which is then stored. */
static __always_inline int finish(struct udphdr* udp, struct ntp_words* ntp, __s64 sum,
                                  __s64 tai_offset_s) {
  ntp_time(bpf_ktime_get_tai_ns(), tai_offset_s, ntp->transmit);
  __u64 total = (__u32)sum;
  total = add_word(total, ntp->transmit[0]);
  total = add_word(total, ntp->transmit[1]);
  __u16 check = (__u16)~fold(total);
  udp->check = check ? check : 0xffff; /* 0 means "no checksum" in UDP over IPv4 */
  count(XDP_NTP_ANSWERED);
  return XDP_TX;
}

static __always_inline int serve_ipv4(struct xdp_md* ctx, __u64 t2_tai_ns) {
  void* data = (void*)(long)ctx->data;
  void* data_end = (void*)(long)ctx->data_end;
  struct ethhdr* eth = data;
  struct iphdr* ip = data + sizeof(*eth);
  if ((void*)(ip + 1) > data_end) return XDP_PASS;
  if (ip->version != 4 || ip->ihl < 5 || ip->protocol != IPPROTO_UDP) return XDP_PASS;
  /* A later fragment has no UDP header: not ours to tell. */
  if (ip->frag_off & bpf_htons(TAID_IP_OFFSET)) return XDP_PASS;
  if (ip->ihl != 5) {
    /* Options: the port lies ihl words in. Direct packet access at a variable offset needs
     * CAP_PERFMON ("pointer arithmetic with it prohibited for !root"), the packaged service has
     * CAP_BPF and CAP_NET_ADMIN only; the helper reads it with those. Only counted: passed. */
    struct udphdr header; /* the helper fills it whole (or zeroes it on error) */
    if (bpf_xdp_load_bytes(ctx, sizeof(*eth) + ip->ihl * 4, &header, sizeof(header)))
      return XDP_PASS;
    return header.dest == bpf_htons(ntp_port) ? pass(XDP_NTP_NOT_PLAIN_IP) : XDP_PASS;
  }
  struct udphdr* udp = (void*)(ip + 1);
  if ((void*)(udp + 1) > data_end) return XDP_PASS;
  if (udp->dest != bpf_htons(ntp_port)) return XDP_PASS;
  /* The first of several fragments (MF), or no source port to answer to. */
  if ((ip->frag_off & bpf_htons(TAID_IP_MF)) || udp->source == 0) return pass(XDP_NTP_NOT_PLAIN_IP);
  struct ntp_words* ntp = (void*)(udp + 1);
  if ((void*)(ntp + 1) > data_end) return pass(XDP_NTP_TOO_SHORT);
  if (bpf_ntohs(ip->tot_len) != sizeof(*ip) + bpf_ntohs(udp->len)) return pass(XDP_NTP_TOO_SHORT);
  int verdict = check_ntp(udp, ntp);
  if (verdict >= 0) return pass(verdict);

  union client_key client;
  client_key_v4(&client, ip->saddr);
  struct snapshot settings;
  verdict = check_client(&client, &settings);
  if (verdict >= 0) return pass(verdict);

  fill_reply(ntp, &settings.clock, t2_tai_ns);
  swap_mac(eth);
  const __be32 saddr = ip->saddr;
  ip->saddr = ip->daddr;
  ip->daddr = saddr;
  ip->ttl = 64;
  ip->check = 0;
  __s64 ip_sum = bpf_csum_diff(0, 0, (__be32*)ip, sizeof(*ip), 0);
  if (ip_sum < 0) return XDP_ABORTED;
  ip->check = (__u16)~fold((__u32)ip_sum);
  const __be16 sport = udp->source;
  udp->source = udp->dest;
  udp->dest = sport;

  __s64 sum = bpf_csum_diff(0, 0, &ip->saddr, 8, 0);
  if (sum < 0) return XDP_ABORTED;
  sum = udp_sum(udp, data_end, sum);
  if (sum < 0) return XDP_ABORTED;
  return finish(udp, ntp, sum, settings.clock.tai_offset_s);
}

static __always_inline int serve_ipv6(struct xdp_md* ctx, __u64 t2_tai_ns) {
  void* data = (void*)(long)ctx->data;
  void* data_end = (void*)(long)ctx->data_end;
  struct ethhdr* eth = data;
  struct ipv6hdr* ip6 = data + sizeof(*eth);
  struct udphdr* udp = (void*)(ip6 + 1);
  if ((void*)(udp + 1) > data_end) return XDP_PASS;
  if (ip6->version != 6 || ip6->nexthdr != IPPROTO_UDP) return XDP_PASS;
  if (udp->dest != bpf_htons(ntp_port)) return XDP_PASS;
  if (udp->source == 0) return pass(XDP_NTP_NOT_PLAIN_IP);
  struct ntp_words* ntp = (void*)(udp + 1);
  if ((void*)(ntp + 1) > data_end) return pass(XDP_NTP_TOO_SHORT);
  if (ip6->payload_len != udp->len) return pass(XDP_NTP_TOO_SHORT);
  int verdict = check_ntp(udp, ntp);
  if (verdict >= 0) return pass(verdict);

  union client_key client;
  client_key_v6(&client, ip6->saddr.in6_u.u6_addr8);
  struct snapshot settings;
  verdict = check_client(&client, &settings);
  if (verdict >= 0) return pass(verdict);

  fill_reply(ntp, &settings.clock, t2_tai_ns);
  swap_mac(eth);
  __u64 address[4]; /* source, then destination, in registers after -O2 */
  __builtin_memcpy(&address[0], &ip6->saddr, 8);
  __builtin_memcpy(&address[1], (__u8*)&ip6->saddr + 8, 8);
  __builtin_memcpy(&address[2], &ip6->daddr, 8);
  __builtin_memcpy(&address[3], (__u8*)&ip6->daddr + 8, 8);
  __builtin_memcpy(&ip6->saddr, &address[2], 8);
  __builtin_memcpy((__u8*)&ip6->saddr + 8, &address[3], 8);
  __builtin_memcpy(&ip6->daddr, &address[0], 8);
  __builtin_memcpy((__u8*)&ip6->daddr + 8, &address[1], 8);
  ip6->hop_limit = 64;
  const __be16 sport = udp->source;
  udp->source = udp->dest;
  udp->dest = sport;

  __s64 sum = bpf_csum_diff(0, 0, (__be32*)&ip6->saddr, 32, 0);
  if (sum < 0) return XDP_ABORTED;
  sum = udp_sum(udp, data_end, sum);
  if (sum < 0) return XDP_ABORTED;
  return finish(udp, ntp, sum, settings.clock.tai_offset_s);
}

SEC("xdp")
int taid_ntp_xdp(struct xdp_md* ctx) {
  /* T2 first, so that parsing and the map lookups are not part of the server's interval. */
  const __u64 t2_tai_ns = bpf_ktime_get_tai_ns();
  void* data = (void*)(long)ctx->data;
  void* data_end = (void*)(long)ctx->data_end;
  struct ethhdr* eth = data;
  if ((void*)(eth + 1) > data_end) return XDP_PASS;
  if (eth->h_proto == bpf_htons(ETH_P_IP)) return serve_ipv4(ctx, t2_tai_ns);
  if (eth->h_proto == bpf_htons(ETH_P_IPV6)) return serve_ipv6(ctx, t2_tai_ns);
  return XDP_PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
