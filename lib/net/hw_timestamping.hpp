// Hardware timestamping on a network interface: what the NIC can do (ETHTOOL_GET_TS_INFO),
// switching it on (SIOCSHWTSTAMP), and asking a socket for the raw hardware stamps.
//
// Hardware stamping is two steps, as in chrony and linuxptp: the interface is configured once
// (it affects every socket on it, so this needs CAP_NET_ADMIN), then each socket asks for
// SOF_TIMESTAMPING_RAW_HARDWARE. The stamps are on the NIC's PTP hardware clock (phc_index), not
// on CLOCK_REALTIME. On the reference machines lo and veth report software stamping only and
// have no PHC (PEERS.md), so enable_hw_timestamping() refuses there with a message saying so.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/result.hpp"

namespace taid::net {

// An interface's timestamping capabilities, as `ethtool -T IFACE` prints them.
struct HwTimestampingInfo {
  std::string interface;
  uint32_t so_timestamping = 0;  // SOF_TIMESTAMPING_* bits the device supports
  int phc_index = -1;            // N of /dev/ptpN, -1 when the device has no PHC
  uint32_t tx_types = 0;         // bit (1 << HWTSTAMP_TX_*) per supported TX mode
  uint32_t rx_filters = 0;       // bit (1 << HWTSTAMP_FILTER_*) per supported RX filter

  bool software_rx() const;
  bool software_tx() const;
  // RX_HARDWARE, TX_HARDWARE and RAW_HARDWARE: all three are needed for NTP.
  bool hardware() const;
  // ethtool's names of the so_timestamping bits set ("software-transmit", "hardware-raw-clock").
  std::vector<std::string> capability_names() const;
};

// What SIOCSHWTSTAMP is asked for, or reports it applied (hwtstamp_config fields).
struct HwTimestampingConfig {
  int tx_type = 0;    // HWTSTAMP_TX_*
  int rx_filter = 0;  // HWTSTAMP_FILTER_*
};

// Reads the capabilities of `iface` (ioctl SIOCETHTOOL, ETHTOOL_GET_TS_INFO) in the calling
// thread's network namespace. Errors read "IFACE: ETHTOOL_GET_TS_INFO: <strerror>".
Result<HwTimestampingInfo> query_ts_info(const std::string& iface);

// The configuration to ask for, from the capabilities alone (pure): TX on, and the RX filter
// HWTSTAMP_FILTER_NTP_ALL when offered (only NTP packets), else HWTSTAMP_FILTER_ALL — chrony's
// choice. The error names the interface and what is missing, e.g.
// "lo: no hardware timestamping (ethtool reports software only)".
Result<HwTimestampingConfig> choose_hw_config(const HwTimestampingInfo& info);

// The interface's current configuration (SIOCGHWTSTAMP). Errors read "IFACE: SIOCGHWTSTAMP: ...".
Result<HwTimestampingConfig> read_hw_config(const std::string& iface);

// What to do with an interface that may already be configured by someone else (ptp4l, another
// daemon): the NIC's configuration is shared by every socket on it, so taid keeps what is there
// when it already stamps NTP packets (TX on in any form, RX filter ALL or NTP_ALL); widens a PTP
// user's RX filter to ALL (a superset, so its PTP stamps keep coming) rather than narrowing it to
// NTP_ALL; and only a NIC with stamping off gets choose_hw_config()'s choice. `current` is
// nullopt when the driver cannot report its configuration. Pure.
struct HwTimestampingPlan {
  HwTimestampingConfig apply;
  bool change = false;  // apply differs from the current configuration (or that is unknown)
};
Result<HwTimestampingPlan> plan_hw_config(const HwTimestampingInfo& info,
                                          const std::optional<HwTimestampingConfig>& current);

// Hardware stamping switched on by taid on one interface: the destructor puts back the
// configuration that was there before, so an exit leaves the NIC as it was found. Move-only.
class HwTimestampingClaim {
 public:
  HwTimestampingClaim(std::string iface, HwTimestampingConfig applied,
                      std::optional<HwTimestampingConfig> restore)
      : iface_(std::move(iface)), applied_(applied), restore_(restore) {}
  HwTimestampingClaim(HwTimestampingClaim&& other) noexcept;
  HwTimestampingClaim& operator=(HwTimestampingClaim&&) = delete;
  HwTimestampingClaim(const HwTimestampingClaim&) = delete;
  ~HwTimestampingClaim();

  const std::string& interface() const { return iface_; }
  // What the driver applied (it may be wider than asked: a driver may stamp all packets when
  // asked for NTP ones).
  const HwTimestampingConfig& applied() const { return applied_; }
  // The configuration put back at exit; nullopt when nothing was changed (or it was unknown).
  const std::optional<HwTimestampingConfig>& restore() const { return restore_; }

 private:
  std::string iface_;
  HwTimestampingConfig applied_;
  std::optional<HwTimestampingConfig> restore_;
};

// Queries `iface`, reads its current configuration, and applies plan_hw_config() with
// SIOCSHWTSTAMP when it asks for a change. The claim restores the earlier configuration when
// destroyed.
Result<HwTimestampingClaim> enable_hw_timestamping(const std::string& iface);

// Sets SO_TIMESTAMPING on `fd` for raw hardware RX stamps, and TX stamps when `tx`, keeping the
// software stamps (see net/timestamping.hpp). Use after enable_hw_timestamping() succeeded.
Result<void> enable_socket_hw_timestamping(int fd, bool tx);

}  // namespace taid::net
