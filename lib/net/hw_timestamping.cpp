// Interface hardware timestamping: ethtool capability query, SIOCSHWTSTAMP, socket flags.
#include "net/hw_timestamping.hpp"

#include <linux/ethtool.h>
#include <linux/net_tstamp.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <array>
#include <cstring>
#include <string_view>
#include <utility>

#include "core/fd.hpp"
#include "core/log.hpp"
#include "net/timestamping.hpp"

namespace taid::net {
namespace {

// ethtool's names for the SO_TIMESTAMPING capability bits (ethtool -T), in its order.
constexpr std::array<std::pair<uint32_t, std::string_view>, 6> kCapabilityNames{{
    {SOF_TIMESTAMPING_TX_HARDWARE, "hardware-transmit"},
    {SOF_TIMESTAMPING_TX_SOFTWARE, "software-transmit"},
    {SOF_TIMESTAMPING_RX_HARDWARE, "hardware-receive"},
    {SOF_TIMESTAMPING_RX_SOFTWARE, "software-receive"},
    {SOF_TIMESTAMPING_SOFTWARE, "software-system-clock"},
    {SOF_TIMESTAMPING_RAW_HARDWARE, "hardware-raw-clock"},
}};

constexpr uint32_t kHardwareBits =
    SOF_TIMESTAMPING_RX_HARDWARE | SOF_TIMESTAMPING_TX_HARDWARE | SOF_TIMESTAMPING_RAW_HARDWARE;

constexpr uint32_t bit(int n) { return uint32_t{1} << n; }

// An ioctl on an interface needs some socket of the namespace to go through.
Result<Fd> control_socket(const std::string& iface, std::string_view what) {
  Fd fd(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!fd) return Error::from_errno(strcat(iface, ": ", what, ": socket()"));
  return fd;
}

// The interface name in an ifreq; longer names cannot exist (IFNAMSIZ includes the NUL).
Result<ifreq> request_for(const std::string& iface, std::string_view what) {
  if (iface.empty() || iface.size() >= IFNAMSIZ) {
    return Error{ENODEV, strcat("'", iface, "': ", what, ": not an interface name")};
  }
  ifreq request{};
  std::memcpy(request.ifr_name, iface.data(), iface.size());
  return request;
}

}  // namespace

bool HwTimestampingInfo::software_rx() const {
  const uint32_t needed = SOF_TIMESTAMPING_RX_SOFTWARE | SOF_TIMESTAMPING_SOFTWARE;
  return (so_timestamping & needed) == needed;
}

bool HwTimestampingInfo::software_tx() const {
  const uint32_t needed = SOF_TIMESTAMPING_TX_SOFTWARE | SOF_TIMESTAMPING_SOFTWARE;
  return (so_timestamping & needed) == needed;
}

bool HwTimestampingInfo::hardware() const {
  return (so_timestamping & kHardwareBits) == kHardwareBits;
}

std::vector<std::string> HwTimestampingInfo::capability_names() const {
  std::vector<std::string> names;
  for (const auto& [flag, name] : kCapabilityNames) {
    if (so_timestamping & flag) names.emplace_back(name);
  }
  return names;
}

Result<HwTimestampingInfo> query_ts_info(const std::string& iface) {
  auto request = request_for(iface, "ETHTOOL_GET_TS_INFO");
  if (!request) return request.error();
  auto fd = control_socket(iface, "ETHTOOL_GET_TS_INFO");
  if (!fd) return fd.error();
  ethtool_ts_info info{};
  info.cmd = ETHTOOL_GET_TS_INFO;
  request->ifr_data = reinterpret_cast<char*>(&info);
  if (::ioctl(fd->get(), SIOCETHTOOL, &*request) != 0) {
    return Error::from_errno(strcat(iface, ": ETHTOOL_GET_TS_INFO"));
  }
  return HwTimestampingInfo{iface, info.so_timestamping, info.phc_index, info.tx_types,
                            info.rx_filters};
}

Result<HwTimestampingConfig> choose_hw_config(const HwTimestampingInfo& info) {
  const std::string& iface = info.interface;
  const uint32_t hardware_bits = info.so_timestamping & kHardwareBits;
  if (hardware_bits == 0) {
    const bool software = (info.so_timestamping & ~kHardwareBits) != 0;
    return Error::plain(strcat(iface, ": no hardware timestamping (ethtool reports ",
                               software ? "software only" : "no timestamping at all", ")"));
  }
  if (hardware_bits != kHardwareBits) {
    std::string missing;
    for (const auto& [flag, name] : kCapabilityNames) {
      if ((kHardwareBits & flag) && !(info.so_timestamping & flag)) {
        missing += missing.empty() ? "" : ", ";
        missing += name;
      }
    }
    return Error::plain(
        strcat(iface, ": incomplete hardware timestamping (ethtool lacks ", missing, ")"));
  }
  if (!(info.tx_types & bit(HWTSTAMP_TX_ON))) {
    return Error::plain(strcat(iface, ": no hardware transmit stamps (ethtool lacks TX mode on)"));
  }
  HwTimestampingConfig config{HWTSTAMP_TX_ON, HWTSTAMP_FILTER_NONE};
  if (info.rx_filters & bit(HWTSTAMP_FILTER_NTP_ALL)) {
    config.rx_filter = HWTSTAMP_FILTER_NTP_ALL;
  } else if (info.rx_filters & bit(HWTSTAMP_FILTER_ALL)) {
    config.rx_filter = HWTSTAMP_FILTER_ALL;
  } else {
    // PTP-only filters (most older NICs) never stamp an NTP packet.
    return Error::plain(strcat(iface,
                               ": no hardware receive filter for NTP (ethtool lacks "
                               "filters all and ntp-all)"));
  }
  return config;
}

namespace {

// SIOCGHWTSTAMP or SIOCSHWTSTAMP on `iface`; the driver writes back what it has (applied).
Result<HwTimestampingConfig> hw_config_ioctl(const std::string& iface, unsigned long request_code,
                                             std::string_view what,
                                             const HwTimestampingConfig& wanted) {
  auto request = request_for(iface, what);
  if (!request) return request.error();
  auto fd = control_socket(iface, what);
  if (!fd) return fd.error();
  hwtstamp_config config{};
  config.tx_type = wanted.tx_type;
  config.rx_filter = wanted.rx_filter;
  request->ifr_data = reinterpret_cast<char*>(&config);
  if (::ioctl(fd->get(), request_code, &*request) != 0) {
    return Error::from_errno(strcat(iface, ": ", what));
  }
  return HwTimestampingConfig{config.tx_type, config.rx_filter};
}

bool stamps_ntp(int rx_filter) {
  return rx_filter == HWTSTAMP_FILTER_ALL || rx_filter == HWTSTAMP_FILTER_NTP_ALL;
}

}  // namespace

Result<HwTimestampingConfig> read_hw_config(const std::string& iface) {
  return hw_config_ioctl(iface, SIOCGHWTSTAMP, "SIOCGHWTSTAMP", {});
}

Result<HwTimestampingPlan> plan_hw_config(const HwTimestampingInfo& info,
                                          const std::optional<HwTimestampingConfig>& current) {
  auto chosen = choose_hw_config(info);
  if (!chosen) return chosen.error();
  if (!current) return HwTimestampingPlan{*chosen, true};
  HwTimestampingConfig apply = *current;
  // Any TX mode but off (ON, or a one-step PTP mode) stamps every other packet as ON does.
  if (current->tx_type == HWTSTAMP_TX_OFF) apply.tx_type = chosen->tx_type;
  if (current->rx_filter == HWTSTAMP_FILTER_NONE) {
    apply.rx_filter = chosen->rx_filter;
  } else if (!stamps_ntp(current->rx_filter)) {
    // Someone stamps PTP packets only. NTP_ALL would take their stamps away; ALL keeps them.
    if (!(info.rx_filters & bit(HWTSTAMP_FILTER_ALL))) {
      return Error::plain(strcat(info.interface, ": its receive filter ", current->rx_filter,
                                 " (PTP, set by another program) does not stamp NTP, and the NIC "
                                 "has no filter all to widen it to; left as it is"));
    }
    apply.rx_filter = HWTSTAMP_FILTER_ALL;
  }
  const bool change = apply.tx_type != current->tx_type || apply.rx_filter != current->rx_filter;
  return HwTimestampingPlan{apply, change};
}

HwTimestampingClaim::HwTimestampingClaim(HwTimestampingClaim&& other) noexcept
    : iface_(std::move(other.iface_)),
      applied_(other.applied_),
      restore_(std::exchange(other.restore_, std::nullopt)) {}

HwTimestampingClaim::~HwTimestampingClaim() {
  if (!restore_) return;
  auto restored = hw_config_ioctl(iface_, SIOCSHWTSTAMP, "SIOCSHWTSTAMP", *restore_);
  if (restored) {
    log_info(strcat("hwtimestamp ", iface_, ": restored tx_type ", restore_->tx_type,
                    ", rx_filter ", restore_->rx_filter));
  } else {
    log_warning(strcat("hwtimestamp ", iface_, ": restoring the earlier configuration failed: ",
                       restored.error().message()));
  }
}

Result<HwTimestampingClaim> enable_hw_timestamping(const std::string& iface) {
  auto info = query_ts_info(iface);
  if (!info) return info.error();
  std::optional<HwTimestampingConfig> current;
  if (auto read = read_hw_config(iface)) current = *read;
  auto plan = plan_hw_config(*info, current);
  if (!plan) return plan.error();
  if (!plan->change) return HwTimestampingClaim(iface, plan->apply, std::nullopt);
  auto applied = hw_config_ioctl(iface, SIOCSHWTSTAMP, "SIOCSHWTSTAMP", plan->apply);
  if (!applied) return applied.error();
  // An unknown earlier configuration is not guessed at: it is left as applied.
  return HwTimestampingClaim(iface, *applied, current);
}

Result<void> enable_socket_hw_timestamping(int fd, bool tx) {
  return enable_timestamping(fd, {.tx_software = tx, .hardware = true});
}

}  // namespace taid::net
