// Network interfaces: which one a server's replies arrive on, names and indexes.
#pragma once

#include <boost/asio/ip/udp.hpp>

#include <string>
#include <vector>

#include "core/result.hpp"

namespace taid::net {

// The device the kernel's route to `server` goes out of (RTM_GETROUTE, what `ip route get`
// prints as "dev"): where, with symmetric routing, its replies come in and an eBPF program sees
// them. For a server on one of this host's own addresses that is lo, whichever interface holds
// the address. A link-local IPv6 server's scope names the interface itself.
Result<int> interface_towards(const boost::asio::ip::udp::endpoint& server);

// "eth0" for its index, "ifN" when the index names no interface (any more).
std::string interface_name(int ifindex);

// The names of all interfaces in the calling thread's network namespace, for "hwtimestamp *".
Result<std::vector<std::string>> interface_names();

// The kernel driver behind an interface ("veth", "mlx5_core", ...), as `ethtool -i` shows it
// (ETHTOOL_GDRVINFO).
Result<std::string> interface_driver(const std::string& name);

}  // namespace taid::net
