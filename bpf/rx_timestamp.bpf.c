/* eBPF RX timestamps for NTP: stamps NTP packets in CLOCK_TAI at tc ingress (or XDP). */
/*
 * The kernel side of lib/bpf/rx_timestamper: for each UDP packet from ntp_port (a server's
 * reply) to any other port (the client's ephemeral one) with at least an NTP header of payload
 * (or, loaded for a server, each packet to ntp_port: a client's request), store
 * bpf_ktime_get_tai_ns() in an LRU hash keyed by
 * (source address, source port, destination port, transmit timestamp). User space finds the
 * stamp again from the same fields of the packet it received and takes (looks up + deletes) it.
 *
 * UAPI headers only (no vmlinux.h), so nothing kernel-specific has to be vendored. Ethernet
 * framing only: IPv4 (options honoured, fragments skipped) or IPv6 (no extension headers).
 * Headers are read with the load-bytes helpers rather than direct packet access so that a
 * non-linear skb, or a multi-buffer XDP frame, is parsed the same way, without a pull.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/pkt_cls.h>
#include <linux/udp.h>

#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "rx_timestamp.h"

/* Read-only after load: the loader sets them in the skeleton's rodata before loading. */
const volatile __u16 ntp_port = 123;
/* 0: a client's program, stamping replies from ntp_port; 1: a server's, stamping requests to it. */
const volatile __u8 stamp_requests = 0;

struct {
  __uint(type, BPF_MAP_TYPE_LRU_HASH);
  __uint(max_entries, RX_TS_MAP_ENTRIES);
  __type(key, struct rx_ts_key);
  __type(value, struct rx_ts_value);
} taid_rx_ts SEC(".maps");

/* Fragment bits of iphdr.frag_off (kernel-internal in net/ip.h, not in the UAPI headers). */
#define TAID_IP_MF 0x2000
#define TAID_IP_OFFSET 0x1fff

/* After inlining, `xdp` is a constant, so each program only contains the helper it may call. */
static __always_inline long load(void* ctx, int xdp, __u32 offset, void* to, __u32 len) {
  if (xdp) return bpf_xdp_load_bytes((struct xdp_md*)ctx, offset, to, len);
  return bpf_skb_load_bytes(ctx, offset, to, len);
}

static __always_inline void record(void* ctx, int xdp, __u64 tai_ns, __u32 ifindex) {
  struct rx_ts_key key = {};
  struct ethhdr eth;
  struct udphdr udp;
  __u32 udp_offset;

  if (load(ctx, xdp, 0, &eth, sizeof(eth))) return;
  if (eth.h_proto == bpf_htons(ETH_P_IP)) {
    struct iphdr ip;
    if (load(ctx, xdp, ETH_HLEN, &ip, sizeof(ip))) return;
    if (ip.version != 4 || ip.ihl < 5 || ip.protocol != IPPROTO_UDP) return;
    /* Only the first fragment has the UDP header, and it alone is not the whole datagram. */
    if (ip.frag_off & bpf_htons(TAID_IP_MF | TAID_IP_OFFSET)) return;
    key.addr[10] = 0xff;
    key.addr[11] = 0xff;
    __builtin_memcpy(&key.addr[12], &ip.saddr, 4);
    udp_offset = ETH_HLEN + (__u32)ip.ihl * 4;
  } else if (eth.h_proto == bpf_htons(ETH_P_IPV6)) {
    struct ipv6hdr ip6;
    if (load(ctx, xdp, ETH_HLEN, &ip6, sizeof(ip6))) return;
    if (ip6.version != 6 || ip6.nexthdr != IPPROTO_UDP) return;
    __builtin_memcpy(key.addr, &ip6.saddr, 16);
    udp_offset = ETH_HLEN + (__u32)sizeof(ip6);
  } else {
    return;
  }

  if (load(ctx, xdp, udp_offset, &udp, sizeof(udp))) return;
  key.remote_port = bpf_ntohs(udp.source);
  key.local_port = bpf_ntohs(udp.dest);
  /*
   * Replies only: they come from the server port to the client's ephemeral port (RFC 9109).
   * Requests to ntp_port (a server on this host, or symmetric peers port to port) would fill
   * the LRU map with stamps nobody takes and evict the ones our client waits for; until taid
   * serves, nothing takes them.
   */
  if (stamp_requests) {
    /* A server's: requests to our port, from any client port (the server takes each at once). */
    if (key.local_port != ntp_port) return;
  } else if (key.remote_port != ntp_port || key.local_port == ntp_port) {
    return;
  }
  if (bpf_ntohs(udp.len) < sizeof(udp) + RX_TS_NTP_HEADER_LEN) return;
  if (load(ctx, xdp, udp_offset + (__u32)sizeof(udp) + RX_TS_NTP_TRANSMIT_OFFSET, &key.transmit_ts,
           sizeof(key.transmit_ts)))
    return;

  /* Zeroed whole, then filled: an initializer compiles to two 32-bit stores into one 8-byte stack
   * slot, which Linux 6.1's verifier refuses without CAP_PERFMON ("attempt to corrupt spilled
   * pointer on stack"), so the packaged service (CAP_BPF + CAP_NET_ADMIN) got no eBPF stamps on
   * Debian 12. tests/vm runs that case on 6.1.
   */
  struct rx_ts_value value;
  __builtin_memset(&value, 0, sizeof(value));
  value.tai_ns = tai_ns;
  value.ifindex = ifindex;
  bpf_map_update_elem(&taid_rx_ts, &key, &value, BPF_ANY);
}

/*
 * tc (clsact or tcx) ingress. Returns TC_ACT_UNSPEC (== TCX_NEXT): never drops, and, unlike
 * TC_ACT_OK, does not end the filter chain, so filters or tcx programs after ours still run.
 */
SEC("tc")
int taid_rx_tc(struct __sk_buff* skb) {
  /* First, so that the parsing below is not part of the stamp. */
  const __u64 tai_ns = bpf_ktime_get_tai_ns();
  record(skb, 0, tai_ns, skb->ifindex);
  return TC_ACT_UNSPEC;
}

/* XDP: earlier than tc (before the skb exists); shares the map. Never drops. */
SEC("xdp")
int taid_rx_xdp(struct xdp_md* ctx) {
  const __u64 tai_ns = bpf_ktime_get_tai_ns();
  record(ctx, 1, tai_ns, ctx->ingress_ifindex);
  return XDP_PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
