// Tests for the user-space side of the RX timestamp map key: address mapping, ports, T3 bytes;
// and the tc filter handle that names its owner.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <array>
#include <cstdint>
#include <cstring>
#include <vector>

#include <gtest/gtest.h>

#include "bpf/rx_timestamper.hpp"
#include "core/time.hpp"

namespace taid::bpf {
namespace {

sockaddr_storage ipv4(const char* address, uint16_t port) {
  sockaddr_storage storage{};
  auto* in4 = reinterpret_cast<sockaddr_in*>(&storage);
  in4->sin_family = AF_INET;
  in4->sin_port = htons(port);
  EXPECT_EQ(inet_pton(AF_INET, address, &in4->sin_addr), 1);
  return storage;
}

sockaddr_storage ipv6(const char* address, uint16_t port) {
  sockaddr_storage storage{};
  auto* in6 = reinterpret_cast<sockaddr_in6*>(&storage);
  in6->sin6_family = AF_INET6;
  in6->sin6_port = htons(port);
  EXPECT_EQ(inet_pton(AF_INET6, address, &in6->sin6_addr), 1);
  return storage;
}

TEST(KeyAddress, Ipv4BecomesV4Mapped) {
  const auto address = to_key_address(ipv4("10.1.2.3", 123));
  ASSERT_TRUE(address.has_value());
  const std::array<uint8_t, 16> expected{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 1, 2, 3};
  EXPECT_EQ(*address, expected);
}

TEST(KeyAddress, V4MappedIpv6IsTheSameAsIpv4) {
  // A dual-stack socket reports IPv4 peers this way; the program writes the same key.
  EXPECT_EQ(to_key_address(ipv6("::ffff:10.1.2.3", 123)), to_key_address(ipv4("10.1.2.3", 123)));
}

TEST(KeyAddress, Ipv6IsCopied) {
  const auto address = to_key_address(ipv6("fd00::1:2", 123));
  ASSERT_TRUE(address.has_value());
  EXPECT_EQ((*address)[0], 0xfd);
  EXPECT_EQ((*address)[13], 0x01);
  EXPECT_EQ((*address)[15], 0x02);
}

TEST(KeyAddress, OtherFamiliesHaveNone) {
  sockaddr_storage unix_address{};
  unix_address.ss_family = AF_UNIX;
  EXPECT_FALSE(to_key_address(unix_address).has_value());
  EXPECT_FALSE(make_key(unix_address, 123, NtpTimestamp::from_raw(1)).has_value());
}

TEST(MakeKey, PortsInHostOrderAndTransmitAsWireBytes) {
  const auto key = make_key(ipv4("192.0.2.7", 123), 40000, NtpTimestamp::from_parts(0xe9a1b2c3, 5));
  ASSERT_TRUE(key.has_value());
  EXPECT_EQ(key->remote_port, 123);
  EXPECT_EQ(key->local_port, 40000);
  EXPECT_EQ(key->pad, 0u);
  uint8_t wire[8];
  std::memcpy(wire, &key->transmit_ts, sizeof wire);
  const uint8_t expected[8] = {0xe9, 0xa1, 0xb2, 0xc3, 0, 0, 0, 5};
  EXPECT_EQ(std::memcmp(wire, expected, sizeof wire), 0);
}

TEST(MakeKey, FromPacketBytesEqualsFromTimestamp) {
  std::vector<uint8_t> packet(48, 0);
  const uint8_t transmit[8] = {0xe9, 0xa1, 0xb2, 0xc3, 0x12, 0x34, 0x56, 0x78};
  std::memcpy(packet.data() + 40, transmit, sizeof transmit);
  const auto from_bytes = make_key(ipv6("fd00::2", 50000), 123, packet);
  const auto from_value =
      make_key(ipv6("fd00::2", 50000), 123, NtpTimestamp::from_parts(0xe9a1b2c3, 0x12345678));
  ASSERT_TRUE(from_bytes.has_value());
  ASSERT_TRUE(from_value.has_value());
  EXPECT_EQ(std::memcmp(&*from_bytes, &*from_value, sizeof(rx_ts_key)), 0);
}

TEST(MakeKey, ShortPacketHasNoKey) {
  const std::vector<uint8_t> packet(47, 0);  // the program only stamps ≥ 48 bytes of payload
  EXPECT_FALSE(make_key(ipv4("10.0.0.1", 123), 123, packet).has_value());
}

TEST(AttachModeNames, AreStable) {
  EXPECT_EQ(to_string(AttachMode::tc_clsact), "tc_clsact");
  EXPECT_EQ(to_string(AttachMode::tcx), "tcx");
  EXPECT_EQ(to_string(AttachMode::xdp_generic), "xdp_generic");
  EXPECT_EQ(to_string(AttachMode::xdp_native), "xdp_native");
}

// The handle carries owner pid, clsact ownership and instance, and gives them back exactly, up to
// the largest pid Linux can hand out (PID_MAX_LIMIT = 2^22, so pid - 1 is the largest).
TEST(TcHandle, RoundTripsOwner) {
  for (const TcOwner owner : {TcOwner{1, false, 0}, TcOwner{12345, true, 7},
                              TcOwner{(1 << 22) - 1, true, 511}, TcOwner{300, false, 256}}) {
    const uint32_t handle = tc_handle(owner);
    EXPECT_NE(handle, 0u) << "0 asks the kernel to choose a handle";
    const TcOwner back = tc_owner(handle);
    EXPECT_EQ(back.pid, owner.pid);
    EXPECT_EQ(back.owns_clsact, owner.owns_clsact);
    EXPECT_EQ(back.instance, owner.instance);
  }
  EXPECT_EQ(tc_handle(TcOwner{1, true, 0}), (1U << 10) | (1U << 9));
  // Two instances of one process, or one instance with and without the owner bit, differ.
  EXPECT_NE(tc_handle(TcOwner{42, false, 0}), tc_handle(TcOwner{42, false, 1}));
  EXPECT_NE(tc_handle(TcOwner{42, false, 0}), tc_handle(TcOwner{42, true, 0}));
}

}  // namespace
}  // namespace taid::bpf
