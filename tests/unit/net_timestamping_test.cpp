// Tests for SO_TIMESTAMPING: control-message parsing on kernel-format cmsgs, RX and TX stamps of
// a real request over loopback, and the hardware timestamping queries on lo and a veth pair.
#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/errqueue.h>
#include <linux/net_tstamp.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <gtest/gtest.h>

#include "core/fd.hpp"
#include "net/hw_timestamping.hpp"
#include "net/interfaces.hpp"
#include "net/timestamping.hpp"
#include "net/udp_client.hpp"
#include "tests/support/skip.hpp"

namespace taid::net {
namespace {

namespace asio = boost::asio;

// ---------------------------------------------------------------------------------------------
// Control buffers laid out as the kernel's put_cmsg() does, built with the CMSG_* macros.

class ControlBuilder {
 public:
  ControlBuilder() {
    message_.msg_control = buffer_.data();
    message_.msg_controllen = buffer_.size();  // CMSG_NXTHDR checks against it while building
  }

  // Appends one cmsg. `length` overrides cmsg_len to build a short one, laid out as put_cmsg()
  // lays out a cut-off cmsg: only the bytes that fit are written, the next cmsg follows them.
  template <typename T>
  ControlBuilder& add(int level, int type, const T& value, std::optional<size_t> length = {}) {
    cmsghdr* c = last_ == nullptr ? CMSG_FIRSTHDR(&message_) : CMSG_NXTHDR(&message_, last_);
    EXPECT_NE(c, nullptr) << "control buffer full";
    if (c == nullptr) return *this;
    const size_t cmsg_len = length.value_or(CMSG_LEN(sizeof(T)));
    c->cmsg_level = level;
    c->cmsg_type = type;
    c->cmsg_len = cmsg_len;
    if (cmsg_len >= CMSG_LEN(0)) {
      std::memcpy(CMSG_DATA(c), &value, std::min(sizeof(T), cmsg_len - CMSG_LEN(0)));
      used_ += CMSG_ALIGN(cmsg_len);
    } else {
      used_ += CMSG_SPACE(sizeof(T));  // a malformed length: keep some bytes behind the header
    }
    last_ = c;
    return *this;
  }

  // The message as recvmsg() would return it: msg_controllen is what was written.
  msghdr message() const {
    msghdr m = message_;
    m.msg_controllen = used_;
    return m;
  }

 private:
  alignas(cmsghdr) std::array<unsigned char, 512> buffer_{};
  msghdr message_{};
  cmsghdr* last_ = nullptr;
  size_t used_ = 0;
};

scm_timestamping stamps(timespec software, timespec hardware) {
  scm_timestamping s{};
  s.ts[0] = software;
  s.ts[2] = hardware;
  return s;
}

// The kernel's error-queue cmsg data: sock_extended_err followed by the offender's address
// (zeroed for timestamps), as struct sock_exterr_skb is copied out in ip_recv_error().
template <typename Address>
struct ExtendedErrorWithOffender {
  sock_extended_err ee;
  Address offender;
};

template <typename Address>
ExtendedErrorWithOffender<Address> timestamp_error(uint32_t info, uint32_t id) {
  ExtendedErrorWithOffender<Address> e{};
  e.ee.ee_errno = ENOMSG;
  e.ee.ee_origin = SO_EE_ORIGIN_TIMESTAMPING;
  e.ee.ee_info = info;
  e.ee.ee_data = id;
  return e;
}

constexpr timespec kSoftware{1700000000, 123456789};
constexpr timespec kHardware{1700000037, 987654321};  // a PHC on TAI: 37 s ahead
constexpr timespec kZero{0, 0};
const UtcTime kSoftwareUtc = UtcTime::from_timespec(kSoftware);
constexpr int64_t kHardwareNs = 1700000037LL * 1000000000 + 987654321;

TEST(ParseControlData, SoftwareRxStamp) {
  ControlBuilder b;
  b.add(SOL_SOCKET, SCM_TIMESTAMPING, stamps(kSoftware, kZero));
  const msghdr m = b.message();
  const ControlData c = parse_control_data(m);
  EXPECT_EQ(c.software, kSoftwareUtc);
  EXPECT_FALSE(c.hardware_raw_ns);
  EXPECT_FALSE(c.error);
  EXPECT_FALSE(c.truncated);
  EXPECT_FALSE(tx_timestamp(c));  // an RX stamp is no TX stamp
}

TEST(ParseControlData, SoftwareAndRawHardwareStamps) {
  ControlBuilder b;
  b.add(SOL_SOCKET, SCM_TIMESTAMPING, stamps(kSoftware, kHardware));
  const ControlData c = parse_control_data(b.message());
  EXPECT_EQ(c.software, kSoftwareUtc);
  EXPECT_EQ(c.hardware_raw_ns, kHardwareNs);
}

TEST(ParseControlData, HardwareOnlyStamp) {
  ControlBuilder b;
  b.add(SOL_SOCKET, SCM_TIMESTAMPING, stamps(kZero, kHardware));
  const msghdr m = b.message();
  const ControlData c = parse_control_data(m);
  EXPECT_FALSE(c.software);
  EXPECT_EQ(c.hardware_raw_ns, kHardwareNs);
}

TEST(ParseControlData, Ipv4ErrorQueueTxStamp) {
  // ip_recv_error() puts the stamp first, then IP_RECVERR.
  ControlBuilder b;
  b.add(SOL_SOCKET, SCM_TIMESTAMPING, stamps(kSoftware, kZero))
      .add(SOL_IP, IP_RECVERR, timestamp_error<sockaddr_in>(SCM_TSTAMP_SND, 7));
  const ControlData c = parse_control_data(b.message());
  ASSERT_TRUE(c.error);
  EXPECT_EQ(c.error->errno_value, uint32_t{ENOMSG});
  EXPECT_EQ(c.error->origin, SO_EE_ORIGIN_TIMESTAMPING);
  EXPECT_EQ(c.error->info, uint32_t{SCM_TSTAMP_SND});
  EXPECT_EQ(c.error->data, 7U);
  const auto tx = tx_timestamp(c);
  ASSERT_TRUE(tx);
  EXPECT_EQ(tx->software, kSoftwareUtc);
  EXPECT_FALSE(tx->hardware_raw_ns);
  EXPECT_EQ(tx->kind, uint32_t{SCM_TSTAMP_SND});
  EXPECT_EQ(tx->id, 7U);
}

TEST(ParseControlData, Ipv6ErrorQueueTxStampInEitherOrder) {
  ControlBuilder b;
  b.add(SOL_IPV6, IPV6_RECVERR, timestamp_error<sockaddr_in6>(SCM_TSTAMP_SCHED, 0))
      .add(SOL_SOCKET, SCM_TIMESTAMPING, stamps(kSoftware, kZero));
  const auto tx = tx_timestamp(parse_control_data(b.message()));
  ASSERT_TRUE(tx);
  EXPECT_EQ(tx->software, kSoftwareUtc);
  EXPECT_EQ(tx->kind, uint32_t{SCM_TSTAMP_SCHED});
  EXPECT_EQ(tx->id, 0U);
}

TEST(ParseControlData, HardwareTxStampArrivesAlone) {
  ControlBuilder b;
  b.add(SOL_SOCKET, SCM_TIMESTAMPING, stamps(kZero, kHardware))
      .add(SOL_IP, IP_RECVERR, timestamp_error<sockaddr_in>(SCM_TSTAMP_SND, 3));
  const auto tx = tx_timestamp(parse_control_data(b.message()));
  ASSERT_TRUE(tx);
  EXPECT_FALSE(tx->software);
  EXPECT_EQ(tx->hardware_raw_ns, kHardwareNs);
  EXPECT_EQ(tx->id, 3U);
}

TEST(ParseControlData, IcmpErrorIsNoTxStamp) {
  ExtendedErrorWithOffender<sockaddr_in> icmp{};
  icmp.ee.ee_errno = ECONNREFUSED;
  icmp.ee.ee_origin = SO_EE_ORIGIN_ICMP;
  icmp.ee.ee_type = 3;  // destination unreachable
  icmp.ee.ee_code = 3;  // port unreachable
  ControlBuilder b;
  b.add(SOL_IP, IP_RECVERR, icmp);
  const ControlData c = parse_control_data(b.message());
  ASSERT_TRUE(c.error);
  EXPECT_EQ(c.error->errno_value, uint32_t{ECONNREFUSED});
  EXPECT_EQ(c.error->origin, SO_EE_ORIGIN_ICMP);
  EXPECT_FALSE(tx_timestamp(c));
}

TEST(ParseControlData, TimestampingErrorWithoutStampIsNoTxStamp) {
  ControlBuilder b;
  b.add(SOL_IP, IP_RECVERR, timestamp_error<sockaddr_in>(SCM_TSTAMP_SND, 0));
  EXPECT_FALSE(tx_timestamp(parse_control_data(b.message())));
}

TEST(ParseControlData, OtherCmsgsAreSkipped) {
  in_pktinfo pktinfo{};
  pktinfo.ipi_ifindex = 1;
  const timespec ns_stamp{1, 2};  // SO_TIMESTAMPNS: another option, another cmsg type
  int ttl = 64;
  ControlBuilder b;
  b.add(SOL_IP, IP_PKTINFO, pktinfo)
      .add(SOL_SOCKET, SCM_TIMESTAMPNS, ns_stamp)
      .add(SOL_IP, IP_TTL, ttl)
      .add(SOL_SOCKET, SCM_TIMESTAMPING, stamps(kSoftware, kZero))
      .add(SOL_IPV6, IPV6_PKTINFO, in6_pktinfo{});
  const ControlData c = parse_control_data(b.message());
  EXPECT_EQ(c.software, kSoftwareUtc);
  EXPECT_FALSE(c.error);
  EXPECT_FALSE(c.truncated);
}

TEST(ParseControlData, OnlyOtherCmsgs) {
  ControlBuilder b;
  b.add(SOL_IP, IP_TTL, 64).add(SOL_SOCKET, SCM_TIMESTAMPNS, kSoftware);
  const ControlData c = parse_control_data(b.message());
  EXPECT_FALSE(c.software);
  EXPECT_FALSE(c.hardware_raw_ns);
  EXPECT_FALSE(c.error);
  EXPECT_FALSE(c.truncated);
}

TEST(ParseControlData, ShortTimestampingCmsgIsTruncated) {
  // Only ts[0] fits in cmsg_len: the kernel never sends this, a parser must not read past it.
  ControlBuilder b;
  b.add(SOL_SOCKET, SCM_TIMESTAMPING, stamps(kSoftware, kHardware), CMSG_LEN(sizeof(timespec)));
  const ControlData c = parse_control_data(b.message());
  EXPECT_FALSE(c.software);
  EXPECT_FALSE(c.hardware_raw_ns);
  EXPECT_TRUE(c.truncated);
}

TEST(ParseControlData, ShortExtendedErrorIsTruncated) {
  ControlBuilder b;
  b.add(SOL_SOCKET, SCM_TIMESTAMPING, stamps(kSoftware, kZero))
      .add(SOL_IP, IP_RECVERR, timestamp_error<sockaddr_in>(SCM_TSTAMP_SND, 1), CMSG_LEN(8));
  const ControlData c = parse_control_data(b.message());
  EXPECT_EQ(c.software, kSoftwareUtc);  // the complete cmsg before it still counts
  EXPECT_FALSE(c.error);
  EXPECT_TRUE(c.truncated);
  EXPECT_FALSE(tx_timestamp(c));
}

TEST(ParseControlData, CmsgRunningPastControllenIsTruncated) {
  // What put_cmsg() leaves when the buffer is too small: MSG_CTRUNC and a cut-off cmsg.
  ControlBuilder b;
  b.add(SOL_IP, IP_TTL, 64).add(SOL_SOCKET, SCM_TIMESTAMPING, stamps(kSoftware, kZero));
  msghdr m = b.message();
  m.msg_controllen = CMSG_SPACE(sizeof(int)) + CMSG_LEN(sizeof(timespec));
  ControlData c = parse_control_data(m);
  EXPECT_FALSE(c.software);
  EXPECT_TRUE(c.truncated);
  // Even a header cut in half is not read.
  m.msg_controllen = CMSG_SPACE(sizeof(int)) + sizeof(cmsghdr) / 2;
  c = parse_control_data(m);
  EXPECT_FALSE(c.software);
  m.msg_flags = MSG_CTRUNC;
  EXPECT_TRUE(parse_control_data(m).truncated);
}

TEST(ParseControlData, MalformedLengthStopsTheWalk) {
  ControlBuilder b;
  b.add(SOL_SOCKET, SCM_TIMESTAMPING, stamps(kSoftware, kZero), size_t{0});  // cmsg_len 0
  const ControlData c = parse_control_data(b.message());
  EXPECT_FALSE(c.software);
  EXPECT_TRUE(c.truncated);
}

TEST(ParseControlData, NoControlData) {
  msghdr m{};
  const ControlData c = parse_control_data(m);
  EXPECT_FALSE(c.software);
  EXPECT_FALSE(c.error);
  EXPECT_FALSE(c.truncated);
}

TEST(TimestampingFlags, EachRequestAsksForWhatItNeeds) {
  constexpr uint32_t rx = SOF_TIMESTAMPING_RX_SOFTWARE | SOF_TIMESTAMPING_SOFTWARE;
  constexpr uint32_t tx =
      SOF_TIMESTAMPING_TX_SOFTWARE | SOF_TIMESTAMPING_OPT_ID | SOF_TIMESTAMPING_OPT_TSONLY;
  constexpr uint32_t hw_rx = SOF_TIMESTAMPING_RX_HARDWARE | SOF_TIMESTAMPING_RAW_HARDWARE;
  EXPECT_EQ(timestamping_flags({}), rx);
  EXPECT_EQ(timestamping_flags({.tx_software = true}), rx | tx);
  EXPECT_EQ(timestamping_flags({.hardware = true}), rx | hw_rx);
  EXPECT_EQ(timestamping_flags({.tx_software = true, .hardware = true}),
            rx | tx | hw_rx | SOF_TIMESTAMPING_TX_HARDWARE);
  // SCHED stamps would double the error-queue traffic for a point farther from the wire.
  EXPECT_EQ(timestamping_flags({.tx_software = true}) & SOF_TIMESTAMPING_TX_SCHED, 0U);
}

// ---------------------------------------------------------------------------------------------
// A real request over loopback: the kernel's RX and TX stamps arrive through UdpRequest.

// A UDP "server" on a loopback address that answers each datagram with its own bytes.
class EchoSocket {
 public:
  explicit EchoSocket(const asio::ip::udp::endpoint& bind_to)
      : fd_(::socket(bind_to.protocol().family(), SOCK_DGRAM | SOCK_CLOEXEC, 0)) {
    if (!fd_) return;
    const timeval timeout{2, 0};  // bounds the test if the request never arrives
    ::setsockopt(fd_.get(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
    if (::bind(fd_.get(), bind_to.data(), static_cast<socklen_t>(bind_to.size())) != 0) {
      fd_.reset();
      return;
    }
    endpoint_ = bind_to;
    socklen_t length = static_cast<socklen_t>(endpoint_.capacity());
    ::getsockname(fd_.get(), endpoint_.data(), &length);
  }
  bool ok() const { return fd_.valid(); }
  const asio::ip::udp::endpoint& endpoint() const { return endpoint_; }

  // Receives one datagram and sends it back; false on timeout or error.
  bool answer_one() {
    std::array<uint8_t, 512> data{};
    asio::ip::udp::endpoint peer;
    socklen_t length = static_cast<socklen_t>(peer.capacity());
    const ssize_t n = ::recvfrom(fd_.get(), data.data(), data.size(), 0, peer.data(), &length);
    if (n < 0) return false;
    return ::sendto(fd_.get(), data.data(), static_cast<size_t>(n), 0, peer.data(), length) == n;
  }

 private:
  Fd fd_;
  asio::ip::udp::endpoint endpoint_;
};

struct Observed {
  std::optional<ntp::LocalTimestamp> rx;
  std::optional<ntp::LocalTimestamp> tx;
  int tx_calls = 0;
  bool tx_before_rx = false;
  std::vector<uint8_t> reply;
};

// The kernel stamp when the socket layer had one, else the user-space one.
ntp::LocalTimestamp best(const RxStamps& stamps) {
  return stamps.kernel ? *stamps.kernel : stamps.user;
}

// Runs `io` until `done` or about two seconds have passed.
template <typename Done>
void run_until(asio::io_context& io, Done done) {
  for (int i = 0; i < 200 && !done(); ++i) io.run_one_for(std::chrono::milliseconds(10));
}

void expect_kernel_stamps(const char* address) {
  asio::io_context io;
  EchoSocket server({asio::ip::make_address(address), 0});
  if (!server.ok()) TAID_SKIP_OR_FAIL("cannot bind a UDP socket on " << address);
  Observed seen;
  auto opened = UdpRequest::open(
      io, server.endpoint(), RxPrecision{-23, -14},
      [&](std::span<const uint8_t> bytes, const RxStamps& stamps) {
        seen.rx = best(stamps);
        seen.reply.assign(bytes.begin(), bytes.end());
      },
      [&](ntp::LocalTimestamp tx) {
        seen.tx = tx;
        ++seen.tx_calls;
        seen.tx_before_rx = !seen.rx;
      });
  ASSERT_TRUE(opened) << opened.error().message();
  UdpRequest& request = **opened;
  EXPECT_TRUE(request.kernel_stamps());
  EXPECT_TRUE(request.kernel_tx_stamps());

  const std::vector<uint8_t> payload(48, 0x23);
  const auto sent = request.send(payload);
  ASSERT_TRUE(sent) << sent.error().message();
  EXPECT_FALSE(seen.tx) << "the TX stamp must not be delivered from inside send()";
  ASSERT_TRUE(server.answer_one());
  run_until(io, [&] { return seen.rx && seen.tx; });
  // Let a duplicate delivery show up, if there were one.
  run_until(io, [n = 0]() mutable { return ++n > 5; });

  ASSERT_TRUE(seen.rx) << "no reply";
  ASSERT_TRUE(seen.tx) << "no TX stamp from the error queue";
  EXPECT_EQ(seen.reply, payload);
  EXPECT_EQ(seen.rx->source, ntp::TimestampSource::kernel);
  EXPECT_EQ(seen.tx->source, ntp::TimestampSource::kernel);
  EXPECT_EQ(seen.rx->precision_log2, -23);
  EXPECT_EQ(seen.tx->precision_log2, -23);
  EXPECT_EQ(seen.tx_calls, 1);
  EXPECT_TRUE(seen.tx_before_rx);
  // The user-space time is read before send(), the kernel's SND stamp as the packet leaves.
  EXPECT_LE(*sent, seen.tx->time);
  EXPECT_LE(seen.tx->time, seen.rx->time);
  const UtcTime now = realtime_now();
  EXPECT_LT((now - seen.tx->time).abs(), Duration::from_s(1));
  EXPECT_LT((now - seen.rx->time).abs(), Duration::from_s(1));
}

TEST(UdpRequestLoopback, KernelRxAndTxStampsIpv4) { expect_kernel_stamps("127.0.0.1"); }

TEST(UdpRequestLoopback, KernelRxAndTxStampsIpv6) { expect_kernel_stamps("::1"); }

TEST(UdpRequestLoopback, KernelStampingIsHeldOn) {
  const auto held = hold_rx_timestamping_on();
  EXPECT_TRUE(held) << held.error().message();
}

TEST(UdpRequestLoopback, EveryFreshSocketGetsItsRxStamp) {
  // Loopback answers within microseconds of the socket's setsockopt(), the worst case for the
  // kernel's deferred switch-on of RX stamping (see hold_rx_timestamping_on).
  asio::io_context io;
  EchoSocket server({asio::ip::make_address("127.0.0.1"), 0});
  ASSERT_TRUE(server.ok());
  constexpr int kRequests = 20;
  int kernel_stamped = 0;
  for (int i = 0; i < kRequests; ++i) {
    std::optional<ntp::LocalTimestamp> rx;
    auto opened =
        UdpRequest::open(io, server.endpoint(), RxPrecision{},
                         [&](std::span<const uint8_t>, const RxStamps& t) { rx = best(t); });
    ASSERT_TRUE(opened) << opened.error().message();
    ASSERT_TRUE((*opened)->send(std::vector<uint8_t>(48, 1)));
    ASSERT_TRUE(server.answer_one());
    run_until(io, [&] { return rx.has_value(); });
    ASSERT_TRUE(rx) << "request " << i;
    if (rx->source == ntp::TimestampSource::kernel) ++kernel_stamped;
  }
  EXPECT_EQ(kernel_stamped, kRequests);
}

TEST(UdpRequestLoopback, NoTxCallbackMeansNoTxStamping) {
  asio::io_context io;
  EchoSocket server({asio::ip::make_address("127.0.0.1"), 0});
  ASSERT_TRUE(server.ok());
  std::optional<ntp::LocalTimestamp> rx;
  auto opened =
      UdpRequest::open(io, server.endpoint(), RxPrecision{},
                       [&](std::span<const uint8_t>, const RxStamps& t) { rx = best(t); });
  ASSERT_TRUE(opened) << opened.error().message();
  EXPECT_TRUE((*opened)->kernel_stamps());
  EXPECT_FALSE((*opened)->kernel_tx_stamps());
  ASSERT_TRUE((*opened)->send(std::vector<uint8_t>(48, 1)));
  ASSERT_TRUE(server.answer_one());
  run_until(io, [&] { return rx.has_value(); });
  ASSERT_TRUE(rx);
  EXPECT_EQ(rx->source, ntp::TimestampSource::kernel);
}

TEST(UdpRequestLoopback, CallbackMayDestroyTheRequest) {
  // The engine drops the request from inside on_reply (demobilize); the read loop must not
  // touch the object afterwards (run under the asan-ubsan preset to see it).
  asio::io_context io;
  EchoSocket server({asio::ip::make_address("127.0.0.1"), 0});
  ASSERT_TRUE(server.ok());
  std::unique_ptr<UdpRequest> request;
  int replies = 0;
  auto opened = UdpRequest::open(
      io, server.endpoint(), RxPrecision{},
      [&](std::span<const uint8_t>, const RxStamps&) {
        ++replies;
        request.reset();
      },
      [](ntp::LocalTimestamp) {});
  ASSERT_TRUE(opened);
  request = std::move(opened.value());
  ASSERT_TRUE(request->send(std::vector<uint8_t>(48, 1)));
  ASSERT_TRUE(server.answer_one());
  // A second reply queued behind the first must not be read from the destroyed object.
  ASSERT_TRUE(request->send(std::vector<uint8_t>(48, 2)));
  ASSERT_TRUE(server.answer_one());
  run_until(io, [&] { return request == nullptr; });
  run_until(io, [n = 0]() mutable { return ++n > 5; });
  EXPECT_EQ(replies, 1);
  EXPECT_TRUE(request == nullptr);
}

// ---------------------------------------------------------------------------------------------
// Hardware timestamping: the decision from capabilities (pure), then lo and veth for real.

HwTimestampingInfo software_only(const std::string& iface) {
  return {iface,
          SOF_TIMESTAMPING_TX_SOFTWARE | SOF_TIMESTAMPING_RX_SOFTWARE | SOF_TIMESTAMPING_SOFTWARE,
          -1, 0, 0};
}

// What an i210-class NIC reports: full hardware stamping, a PHC, TX on, filter all.
HwTimestampingInfo full_hardware(const std::string& iface) {
  HwTimestampingInfo info = software_only(iface);
  info.so_timestamping |=
      SOF_TIMESTAMPING_TX_HARDWARE | SOF_TIMESTAMPING_RX_HARDWARE | SOF_TIMESTAMPING_RAW_HARDWARE;
  info.phc_index = 0;
  info.tx_types = (1U << HWTSTAMP_TX_OFF) | (1U << HWTSTAMP_TX_ON);
  info.rx_filters = (1U << HWTSTAMP_FILTER_NONE) | (1U << HWTSTAMP_FILTER_ALL);
  return info;
}

template <typename T>
std::string error_of(const Result<T>& r) {
  return r ? "" : r.error().message();
}

TEST(ChooseHwConfig, RefusesWithAMessageNamingInterfaceAndLack) {
  EXPECT_EQ(error_of(choose_hw_config(software_only("eth0"))),
            "eth0: no hardware timestamping (ethtool reports software only)");
  EXPECT_EQ(error_of(choose_hw_config({"dummy0", 0, -1, 0, 0})),
            "dummy0: no hardware timestamping (ethtool reports no timestamping at all)");
  HwTimestampingInfo rx_only = software_only("eth1");
  rx_only.so_timestamping |= SOF_TIMESTAMPING_RX_HARDWARE;
  EXPECT_EQ(error_of(choose_hw_config(rx_only)),
            "eth1: incomplete hardware timestamping (ethtool lacks hardware-transmit, "
            "hardware-raw-clock)");
  HwTimestampingInfo no_tx_on = full_hardware("eth2");
  no_tx_on.tx_types = 1U << HWTSTAMP_TX_OFF;
  EXPECT_EQ(error_of(choose_hw_config(no_tx_on)),
            "eth2: no hardware transmit stamps (ethtool lacks TX mode on)");
  HwTimestampingInfo ptp_only = full_hardware("eth3");
  ptp_only.rx_filters = (1U << HWTSTAMP_FILTER_NONE) | (1U << HWTSTAMP_FILTER_PTP_V2_EVENT);
  EXPECT_EQ(error_of(choose_hw_config(ptp_only)),
            "eth3: no hardware receive filter for NTP (ethtool lacks filters all and ntp-all)");
}

TEST(ChooseHwConfig, PrefersTheNtpFilterLikeChrony) {
  HwTimestampingInfo info = full_hardware("eth0");
  auto chosen = choose_hw_config(info);
  ASSERT_TRUE(chosen) << chosen.error().message();
  EXPECT_EQ(chosen->tx_type, HWTSTAMP_TX_ON);
  EXPECT_EQ(chosen->rx_filter, HWTSTAMP_FILTER_ALL);
  info.rx_filters |= 1U << HWTSTAMP_FILTER_NTP_ALL;
  chosen = choose_hw_config(info);
  ASSERT_TRUE(chosen);
  EXPECT_EQ(chosen->rx_filter, HWTSTAMP_FILTER_NTP_ALL);
}

// A NIC's stamping is shared by every program on it: what another one set up is kept or widened,
// never narrowed, and only what taid changed is put back at exit.
HwTimestampingConfig plan_of(const HwTimestampingInfo& info,
                             const std::optional<HwTimestampingConfig>& current, bool change) {
  const auto plan = plan_hw_config(info, current);
  EXPECT_TRUE(plan) << plan.error().message();
  if (!plan) return {};
  EXPECT_EQ(plan->change, change);
  return plan->apply;
}

TEST(PlanHwConfig, StampingOffGetsChronysChoice) {
  HwTimestampingInfo info = full_hardware("eth0");
  info.rx_filters |= 1U << HWTSTAMP_FILTER_NTP_ALL;
  auto apply = plan_of(info, HwTimestampingConfig{HWTSTAMP_TX_OFF, HWTSTAMP_FILTER_NONE}, true);
  EXPECT_EQ(apply.tx_type, HWTSTAMP_TX_ON);
  EXPECT_EQ(apply.rx_filter, HWTSTAMP_FILTER_NTP_ALL);
  // A driver that cannot report its configuration: chrony's choice, nothing known to restore.
  apply = plan_of(info, std::nullopt, true);
  EXPECT_EQ(apply.rx_filter, HWTSTAMP_FILTER_NTP_ALL);
}

TEST(PlanHwConfig, KeepsAConfigurationThatAlreadyStampsNtp) {
  HwTimestampingInfo info = full_hardware("eth0");
  info.rx_filters |= 1U << HWTSTAMP_FILTER_NTP_ALL;
  // ptp4l with filter all, or another NTP daemon: nothing to change.
  auto apply = plan_of(info, HwTimestampingConfig{HWTSTAMP_TX_ON, HWTSTAMP_FILTER_ALL}, false);
  EXPECT_EQ(apply.rx_filter, HWTSTAMP_FILTER_ALL);
  apply = plan_of(info, HwTimestampingConfig{HWTSTAMP_TX_ON, HWTSTAMP_FILTER_NTP_ALL}, false);
  EXPECT_EQ(apply.rx_filter, HWTSTAMP_FILTER_NTP_ALL);
  // RX already right, TX off: only TX changes.
  apply = plan_of(info, HwTimestampingConfig{HWTSTAMP_TX_OFF, HWTSTAMP_FILTER_ALL}, true);
  EXPECT_EQ(apply.tx_type, HWTSTAMP_TX_ON);
  EXPECT_EQ(apply.rx_filter, HWTSTAMP_FILTER_ALL);
}

TEST(PlanHwConfig, WidensAPtpFilterInsteadOfTakingItAway) {
  HwTimestampingInfo info = full_hardware("eth0");
  info.rx_filters |= (1U << HWTSTAMP_FILTER_NTP_ALL) | (1U << HWTSTAMP_FILTER_PTP_V2_EVENT);
  // ptp4l in one-step mode with a PTP event filter: its TX mode stays, RX becomes all (a
  // superset), not NTP_ALL, which would end its PTP stamps.
  const auto apply = plan_of(
      info, HwTimestampingConfig{HWTSTAMP_TX_ONESTEP_SYNC, HWTSTAMP_FILTER_PTP_V2_EVENT}, true);
  EXPECT_EQ(apply.tx_type, HWTSTAMP_TX_ONESTEP_SYNC);
  EXPECT_EQ(apply.rx_filter, HWTSTAMP_FILTER_ALL);
  // Without filter all there is no superset: refuse and leave the NIC alone.
  info.rx_filters &= ~(1U << HWTSTAMP_FILTER_ALL);
  const auto refused =
      plan_hw_config(info, HwTimestampingConfig{HWTSTAMP_TX_ON, HWTSTAMP_FILTER_PTP_V2_EVENT});
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().message(),
            "eth0: its receive filter 12 (PTP, set by another program) does not stamp NTP, and "
            "the NIC has no filter all to widen it to; left as it is");
}

TEST(HwTimestampingClaim, OnlyTheLastOwnerRestores) {
  HwTimestampingClaim claim("taidnosuch0", {HWTSTAMP_TX_ON, HWTSTAMP_FILTER_ALL},
                            HwTimestampingConfig{HWTSTAMP_TX_OFF, HWTSTAMP_FILTER_NONE});
  ASSERT_TRUE(claim.restore());
  HwTimestampingClaim moved(std::move(claim));
  EXPECT_FALSE(claim.restore());  // NOLINT(bugprone-use-after-move): the point of the test
  ASSERT_TRUE(moved.restore());
  EXPECT_EQ(moved.restore()->rx_filter, HWTSTAMP_FILTER_NONE);
  EXPECT_EQ(moved.interface(), "taidnosuch0");
}

// The facts PEERS.md measured for lo and veth: software stamping only, no PHC, and a refusal.
void expect_software_only_interface(const std::string& iface) {
  const auto info = query_ts_info(iface);
  ASSERT_TRUE(info) << info.error().message();
  EXPECT_EQ(info->interface, iface);
  EXPECT_TRUE(info->software_rx()) << iface;
  EXPECT_TRUE(info->software_tx()) << iface;
  EXPECT_FALSE(info->hardware()) << iface;
  EXPECT_EQ(info->phc_index, -1) << iface;
  EXPECT_EQ(info->tx_types, 0U) << iface;
  EXPECT_EQ(info->rx_filters, 0U) << iface;
  EXPECT_EQ(
      info->capability_names(),
      (std::vector<std::string>{"software-transmit", "software-receive", "software-system-clock"}));
  const auto enabled = enable_hw_timestamping(iface);
  ASSERT_FALSE(enabled);
  EXPECT_EQ(enabled.error().message(),
            iface + ": no hardware timestamping (ethtool reports software only)");
  const auto names = interface_names();
  ASSERT_TRUE(names) << names.error().message();
  EXPECT_NE(std::find(names->begin(), names->end(), iface), names->end()) << iface;
}

TEST(HwTimestamping, LoopbackReportsSoftwareOnly) { expect_software_only_interface("lo"); }

TEST(HwTimestamping, UnknownInterfaceSaysSo) {
  const auto info = query_ts_info("taidnosuch0");
  ASSERT_FALSE(info);
  EXPECT_EQ(info.error().errno_value, ENODEV);
  EXPECT_EQ(info.error().message(), "taidnosuch0: ETHTOOL_GET_TS_INFO: No such device");
  const auto too_long = query_ts_info("0123456789abcdef");
  ASSERT_FALSE(too_long);
  EXPECT_EQ(too_long.error().errno_value, ENODEV);
  EXPECT_EQ(error_of(enable_hw_timestamping("taidnosuch0")),
            "taidnosuch0: ETHTOOL_GET_TS_INFO: No such device");
}

TEST(HwTimestamping, SocketAcceptsRawHardwareFlags) {
  // Accepted even where no stamp will come (PEERS.md); the flags read back as set.
  Fd fd(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  ASSERT_TRUE(fd);
  const auto enabled = enable_socket_hw_timestamping(fd.get(), true);
  ASSERT_TRUE(enabled) << enabled.error().message();
  int flags = 0;
  socklen_t length = sizeof flags;
  ASSERT_EQ(::getsockopt(fd.get(), SOL_SOCKET, SO_TIMESTAMPING, &flags, &length), 0);
  EXPECT_EQ(static_cast<uint32_t>(flags),
            timestamping_flags({.tx_software = true, .hardware = true}));
  EXPECT_NE(flags & SOF_TIMESTAMPING_RAW_HARDWARE, 0);
}

// A network namespace with a veth pair inside, removed again whatever happens.
class VethNamespace {
 public:
  VethNamespace() : name_("taid-ts-" + std::to_string(::getpid())) {
    ok_ = run("ip netns add " + name_) &&
          run("ip -n " + name_ + " link add tsa0 type veth peer name tsb0") &&
          run("ip -n " + name_ + " link set tsa0 up") &&
          run("ip -n " + name_ + " link set tsb0 up");
  }
  ~VethNamespace() { run("ip netns del " + name_); }  // takes the veth pair with it
  VethNamespace(const VethNamespace&) = delete;
  VethNamespace& operator=(const VethNamespace&) = delete;

  bool ok() const { return ok_; }
  std::string path() const { return "/run/netns/" + name_; }

 private:
  static bool run(const std::string& command) {
    return std::system((command + " >/dev/null 2>&1").c_str()) == 0;
  }
  std::string name_;
  bool ok_ = false;
};

TEST(HwTimestamping, VethInANamespaceReportsSoftwareOnly) {
  if (::geteuid() != 0) {
    TAID_SKIP_OR_FAIL("needs root to create a network namespace and a veth pair");
  }
  VethNamespace ns;
  if (!ns.ok()) {
    TAID_SKIP_OR_FAIL("cannot create a network namespace with a veth pair here");
  }
  // setns() moves only the calling thread, so the checks run in a thread of their own; every
  // socket it opens (the ioctl sockets included) then belongs to the namespace.
  std::thread inside([&] {
    Fd netns(::open(ns.path().c_str(), O_RDONLY | O_CLOEXEC));
    ASSERT_TRUE(netns) << ns.path() << ": " << std::strerror(errno);
    ASSERT_EQ(::setns(netns.get(), CLONE_NEWNET), 0) << std::strerror(errno);
    expect_software_only_interface("tsa0");
    expect_software_only_interface("tsb0");
  });
  inside.join();
}

}  // namespace
}  // namespace taid::net
