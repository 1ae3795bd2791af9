/* XDP_PASS on the far end of a veth, so native XDP_TX replies reach it (tests, bench, demo). */
/*
 * Native XDP_TX on a veth hands the frame to the peer's NAPI ring, and the peer has one only
 * when an XDP program is attached to it (the kernel's own selftests attach an "xdp_dummy" for
 * the same reason). A real NIC needs nothing of the kind. Attached with iproute2:
 *   ip -n NS link set dev PEER xdpdrv obj build/PRESET/bpf/xdp_pass.bpf.o sec xdp
 */
#include <linux/bpf.h>

#include <bpf/bpf_helpers.h>

SEC("xdp")
int taid_xdp_pass(struct xdp_md* ctx) {
  (void)ctx;
  return XDP_PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
