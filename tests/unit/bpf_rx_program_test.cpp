// Root test of the eBPF RX timestamp program's parser, run on hand-made frames (BPF_PROG_TEST_RUN).
//
// No network needed: the kernel runs the loaded tc and XDP programs on our bytes, so every branch
// (IPv4 options, fragments, IPv6, short payloads, ports, the rodata port) is checked exactly.
// Only replies (from the server port to another port) are stamped: requests to the server port
// must leave the map untouched, or a host that serves NTP evicts its own client's stamps.
#include <arpa/inet.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/pkt_cls.h>

#include <array>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "core/time.hpp"
#include "rx_timestamp.h"
#include "rx_timestamp.skel.h"
#include "tests/support/skip.hpp"

namespace {

using Bytes = std::vector<uint8_t>;

constexpr uint8_t kTransmit[8] = {0xe9, 0xa1, 0xb2, 0xc3, 0x01, 0x02, 0x03, 0x04};

void put16(Bytes& b, size_t at, uint16_t v) {
  b[at] = static_cast<uint8_t>(v >> 8);
  b[at + 1] = static_cast<uint8_t>(v);
}

struct Frame {
  int ip_version = 4;
  int ipv4_options_words = 0;  // extra 32-bit words of IPv4 options (IHL = 5 + this)
  uint16_t frag_off = 0;       // host order, flags and offset as in the header
  uint8_t protocol = 17;       // UDP
  uint16_t ethertype = 0;      // 0: the one matching ip_version
  uint16_t src_port = 123;     // a server's reply ...
  uint16_t dst_port = 40000;   // ... to a client's ephemeral port
  size_t payload = 48;
  std::optional<uint16_t> udp_len;  // override the UDP length field
  size_t truncate_to = 0;           // cut the frame to this many bytes (0: no cut)
};

const std::array<uint8_t, 4> kSrc4{192, 0, 2, 7};
const std::array<uint8_t, 16> kSrc6{0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x12, 0x34};

Bytes build(const Frame& f) {
  Bytes b(14, 0);
  for (int i = 0; i < 6; ++i) b[static_cast<size_t>(i)] = 0x02;   // dst MAC
  for (int i = 6; i < 12; ++i) b[static_cast<size_t>(i)] = 0x04;  // src MAC
  put16(b, 12, f.ethertype != 0 ? f.ethertype : (f.ip_version == 4 ? 0x0800 : 0x86dd));
  const size_t udp_total = 8 + f.payload;
  if (f.ip_version == 4) {
    const size_t ihl = 5 + static_cast<size_t>(f.ipv4_options_words);
    const size_t ip_at = b.size();
    b.resize(ip_at + ihl * 4, 0);
    b[ip_at] = static_cast<uint8_t>(0x40 | ihl);
    put16(b, ip_at + 2, static_cast<uint16_t>(ihl * 4 + udp_total));
    put16(b, ip_at + 6, f.frag_off);
    b[ip_at + 8] = 64;
    b[ip_at + 9] = f.protocol;
    std::memcpy(&b[ip_at + 12], kSrc4.data(), 4);
    b[ip_at + 16] = 10;
    b[ip_at + 19] = 2;
    for (size_t i = 20; i < ihl * 4; ++i) b[ip_at + i] = 1;  // NOP options
  } else {
    const size_t ip_at = b.size();
    b.resize(ip_at + 40, 0);
    b[ip_at] = 0x60;
    put16(b, ip_at + 4, static_cast<uint16_t>(udp_total));
    b[ip_at + 6] = f.protocol;
    b[ip_at + 7] = 64;
    std::memcpy(&b[ip_at + 8], kSrc6.data(), 16);
    b[ip_at + 24] = 0xfd;
    b[ip_at + 39] = 1;
  }
  const size_t udp_at = b.size();
  b.resize(udp_at + udp_total, 0);
  put16(b, udp_at, f.src_port);
  put16(b, udp_at + 2, f.dst_port);
  put16(b, udp_at + 4, f.udp_len.value_or(static_cast<uint16_t>(udp_total)));
  b[udp_at + 8] = 0x23;  // LI 0, VN 4, mode 3
  if (f.payload >= 48) std::memcpy(&b[udp_at + 8 + 40], kTransmit, sizeof kTransmit);
  if (f.truncate_to != 0 && f.truncate_to < b.size()) b.resize(f.truncate_to);
  return b;
}

rx_ts_key expected_key(const Frame& f) {
  rx_ts_key key{};
  if (f.ip_version == 4) {
    key.addr[10] = 0xff;
    key.addr[11] = 0xff;
    std::memcpy(&key.addr[12], kSrc4.data(), 4);
  } else {
    std::memcpy(key.addr, kSrc6.data(), 16);
  }
  key.remote_port = f.src_port;
  key.local_port = f.dst_port;
  std::memcpy(&key.transmit_ts, kTransmit, sizeof kTransmit);
  return key;
}

struct Loaded {
  rx_timestamp_bpf* skel = nullptr;
  ~Loaded() {
    if (skel != nullptr) rx_timestamp_bpf__destroy(skel);
  }
};

class RxProgram : public ::testing::TestWithParam<bool /* xdp */> {
 protected:
  void SetUp() override {
    if (geteuid() != 0) {
      TAID_SKIP_OR_FAIL("needs root (CAP_BPF, CAP_NET_ADMIN) to load eBPF programs");
    }
    load(123);
  }

  void load(uint16_t ntp_port) {
    if (loaded_.skel != nullptr) rx_timestamp_bpf__destroy(loaded_.skel);
    loaded_.skel = rx_timestamp_bpf__open();
    ASSERT_NE(loaded_.skel, nullptr);
    loaded_.skel->rodata->ntp_port = ntp_port;
    ASSERT_EQ(rx_timestamp_bpf__load(loaded_.skel), 0) << std::strerror(errno);
  }

  bool xdp() const { return GetParam(); }

  // Runs the program once on the frame; returns the stored value for `key`, if any.
  std::optional<rx_ts_value> run(const Bytes& frame, const rx_ts_key& key) {
    bpf_program* prog = xdp() ? loaded_.skel->progs.taid_rx_xdp : loaded_.skel->progs.taid_rx_tc;
    bpf_test_run_opts opts{};
    opts.sz = sizeof opts;
    opts.data_in = frame.data();
    opts.data_size_in = static_cast<uint32_t>(frame.size());
    opts.repeat = 1;
    before_ = taid::tai_now();
    const int err = bpf_prog_test_run_opts(bpf_program__fd(prog), &opts);
    after_ = taid::tai_now();
    EXPECT_EQ(err, 0) << std::strerror(errno);
    // Never drops: tc passes on to the next filter (TC_ACT_UNSPEC), XDP passes.
    EXPECT_EQ(static_cast<int32_t>(opts.retval), xdp() ? XDP_PASS : TC_ACT_UNSPEC);
    rx_ts_value value{};
    const int map_fd = bpf_map__fd(loaded_.skel->maps.taid_rx_ts);
    if (bpf_map_lookup_and_delete_elem(map_fd, &key, &value) != 0) return std::nullopt;
    return value;
  }

  // Nothing at all in the map (for frames that must not be stamped under any key).
  bool map_empty() {
    rx_ts_key next{};
    return bpf_map_get_next_key(bpf_map__fd(loaded_.skel->maps.taid_rx_ts), nullptr, &next) != 0;
  }

  void expect_stamped(const Frame& f) {
    const auto value = run(build(f), expected_key(f));
    ASSERT_TRUE(value.has_value());
    EXPECT_GE(static_cast<int64_t>(value->tai_ns), before_.tai_ns());
    EXPECT_LE(static_cast<int64_t>(value->tai_ns), after_.tai_ns());
    EXPECT_NE(value->ifindex, 0u);
    EXPECT_EQ(value->pad, 0u);
    EXPECT_TRUE(map_empty());
  }

  void expect_ignored(const Frame& f) {
    EXPECT_FALSE(run(build(f), expected_key(f)).has_value());
    EXPECT_TRUE(map_empty());
  }

  Loaded loaded_;
  taid::TaiTime before_;
  taid::TaiTime after_;
};

TEST_P(RxProgram, StampsIpv4RepliesFromNtpPort) { expect_stamped(Frame{}); }

// Issue 7: a request to port 123 (a client asking a server on this host) leaves no map entry.
TEST_P(RxProgram, IgnoresRequestsToNtpPort) {
  Frame request;
  request.src_port = 45678;
  request.dst_port = 123;
  expect_ignored(request);
  Frame ipv6_request = request;
  ipv6_request.ip_version = 6;
  expect_ignored(ipv6_request);
}

// Port 123 to port 123 (symmetric peers, or an ntpd client that sends from 123) is never a reply
// to one of our ephemeral sockets.
TEST_P(RxProgram, IgnoresNtpPortToNtpPort) {
  Frame f;
  f.src_port = 123;
  f.dst_port = 123;
  expect_ignored(f);
}

TEST_P(RxProgram, HonoursIpv4Options) {
  Frame f;
  f.ipv4_options_words = 3;
  expect_stamped(f);
}

TEST_P(RxProgram, StampsIpv6) {
  Frame f;
  f.ip_version = 6;
  expect_stamped(f);
}

TEST_P(RxProgram, StampsLongerPayloads) {
  Frame f;
  f.payload = 48 + 20 + 24;  // header, MAC (key id + digest) or extension fields
  expect_stamped(f);
}

TEST_P(RxProgram, IgnoresOtherPorts) {
  Frame f;
  f.src_port = 5353;
  f.dst_port = 5353;
  expect_ignored(f);
}

TEST_P(RxProgram, IgnoresPayloadShorterThanAnNtpHeader) {
  Frame f;
  f.payload = 47;
  expect_ignored(f);
}

TEST_P(RxProgram, IgnoresUdpLengthShorterThanAnNtpHeader) {
  Frame f;
  f.udp_len = 8 + 40;
  expect_ignored(f);
}

TEST_P(RxProgram, IgnoresTruncatedFrames) {
  Frame f;
  f.truncate_to = 14 + 20 + 8 + 44;  // the length fields claim more than there is
  expect_ignored(f);
}

TEST_P(RxProgram, IgnoresIpv4Fragments) {
  Frame first;
  first.frag_off = 0x2000;  // MF: the first of several fragments
  expect_ignored(first);
  Frame later;
  later.frag_off = 0x0010;  // a later fragment: no UDP header at all
  expect_ignored(later);
}

TEST_P(RxProgram, StampsDontFragmentPackets) {
  Frame f;
  f.frag_off = 0x4000;  // DF is not a fragment
  expect_stamped(f);
}

TEST_P(RxProgram, IgnoresNonUdp) {
  Frame tcp;
  tcp.protocol = 6;
  expect_ignored(tcp);
  Frame hop_by_hop;  // IPv6 extension headers are not followed
  hop_by_hop.ip_version = 6;
  hop_by_hop.protocol = 0;
  expect_ignored(hop_by_hop);
}

TEST_P(RxProgram, IgnoresNonIp) {
  Frame arp;
  arp.ethertype = 0x0806;
  expect_ignored(arp);
}

TEST_P(RxProgram, PortComesFromRodata) {
  load(4123);
  Frame standard;  // from port 123
  expect_ignored(standard);
  Frame custom;
  custom.src_port = 4123;
  expect_stamped(custom);
  Frame request;
  request.dst_port = 4123;
  expect_ignored(request);
}

INSTANTIATE_TEST_SUITE_P(TcAndXdp, RxProgram, ::testing::Values(false, true),
                         [](const ::testing::TestParamInfo<bool>& param_info) {
                           return param_info.param ? std::string("xdp") : std::string("tc");
                         });

}  // namespace
