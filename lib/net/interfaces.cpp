// Interface lookup for the timestamp paths: by route (rtnetlink), by index, all of them.
#include "net/interfaces.hpp"

#include <linux/ethtool.h>
#include <linux/netlink.h>
#include <linux/sockios.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <array>
#include <cstring>

#include "core/fd.hpp"
#include "core/strcat.hpp"

namespace taid::net {

namespace asio = boost::asio;

Result<int> interface_towards(const asio::ip::udp::endpoint& server) {
  const asio::ip::address address = server.address();
  // A link-local IPv6 server is reached through the interface its scope names.
  if (address.is_v6() && address.to_v6().scope_id() != 0)
    return static_cast<int>(address.to_v6().scope_id());

  Fd fd(::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE));
  if (!fd) return Error::from_errno("socket(AF_NETLINK)");
  // RTM_GETROUTE for the destination, as `ip route get` asks: the answer's RTA_OIF is the
  // device the route sends through (lo for this host's own addresses).
  struct {
    nlmsghdr header;
    rtmsg route;
    alignas(NLMSG_ALIGNTO) unsigned char attributes[RTA_SPACE(16)];
  } request{};
  const bool v6 = address.is_v6();
  const auto bytes_v4 = v6 ? asio::ip::address_v4::bytes_type{} : address.to_v4().to_bytes();
  const auto bytes_v6 = v6 ? address.to_v6().to_bytes() : asio::ip::address_v6::bytes_type{};
  const std::size_t length = v6 ? bytes_v6.size() : bytes_v4.size();
  request.header.nlmsg_len = NLMSG_LENGTH(sizeof(rtmsg)) + RTA_SPACE(length);
  request.header.nlmsg_type = RTM_GETROUTE;
  request.header.nlmsg_flags = NLM_F_REQUEST;
  request.header.nlmsg_seq = 1;
  request.route.rtm_family = v6 ? AF_INET6 : AF_INET;
  request.route.rtm_dst_len = static_cast<unsigned char>(8 * length);
  auto* destination = reinterpret_cast<rtattr*>(request.attributes);
  destination->rta_type = RTA_DST;
  destination->rta_len = static_cast<unsigned short>(RTA_LENGTH(length));
  std::memcpy(RTA_DATA(destination), v6 ? bytes_v6.data() : bytes_v4.data(), length);
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  if (::sendto(fd.get(), &request, request.header.nlmsg_len, 0,
               reinterpret_cast<sockaddr*>(&kernel), sizeof kernel) < 0)
    return Error::from_errno("RTM_GETROUTE");

  alignas(nlmsghdr) std::array<unsigned char, 4096> answer{};
  const ssize_t received = ::recv(fd.get(), answer.data(), answer.size(), 0);
  if (received < 0) return Error::from_errno("RTM_GETROUTE answer");
  auto left = static_cast<unsigned>(received);
  for (auto* h = reinterpret_cast<nlmsghdr*>(answer.data()); NLMSG_OK(h, left);
       h = NLMSG_NEXT(h, left)) {
    if (h->nlmsg_type == NLMSG_ERROR) {
      const auto* e = static_cast<const nlmsgerr*>(NLMSG_DATA(h));
      if (e->error == 0) continue;  // an acknowledgement
      return Error{-e->error, strcat("no route to ", address.to_string())};
    }
    if (h->nlmsg_type != RTM_NEWROUTE) continue;
    auto* route = static_cast<rtmsg*>(NLMSG_DATA(h));
    auto attributes_left = static_cast<unsigned>(RTM_PAYLOAD(h));
    for (auto* a = RTM_RTA(route); RTA_OK(a, attributes_left); a = RTA_NEXT(a, attributes_left)) {
      if (a->rta_type == RTA_OIF && RTA_PAYLOAD(a) >= sizeof(int)) {
        int index = 0;
        std::memcpy(&index, RTA_DATA(a), sizeof index);
        return index;
      }
    }
  }
  return Error::plain(strcat("the route to ", address.to_string(), " names no device"));
}

std::string interface_name(int ifindex) {
  char name[IF_NAMESIZE] = {};
  return if_indextoname(static_cast<unsigned>(ifindex), name) ? name : strcat("if", ifindex);
}

Result<std::vector<std::string>> interface_names() {
  struct if_nameindex* list = ::if_nameindex();
  if (list == nullptr) return Error::from_errno("if_nameindex()");
  std::vector<std::string> names;
  for (const struct if_nameindex* i = list; i->if_index != 0 && i->if_name != nullptr; ++i) {
    names.emplace_back(i->if_name);
  }
  ::if_freenameindex(list);
  return names;
}

Result<std::string> interface_driver(const std::string& name) {
  if (name.size() >= IFNAMSIZ) return Error::plain(strcat("interface name '", name, "' too long"));
  Fd fd(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!fd) return Error::from_errno("socket for ETHTOOL_GDRVINFO");
  ethtool_drvinfo info{};
  info.cmd = ETHTOOL_GDRVINFO;
  ifreq request{};
  std::memcpy(request.ifr_name, name.c_str(), name.size());
  request.ifr_data = reinterpret_cast<char*>(&info);
  if (::ioctl(fd.get(), SIOCETHTOOL, &request) != 0)
    return Error::from_errno(strcat("ETHTOOL_GDRVINFO on ", name));
  return std::string(info.driver, strnlen(info.driver, sizeof info.driver));
}

}  // namespace taid::net
