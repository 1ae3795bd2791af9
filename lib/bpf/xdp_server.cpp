// XdpServer: libbpf open → rodata → load → bpf_link attach; locked settings updates; stats.
#include "bpf/xdp_server.hpp"

#include <linux/if_link.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "core/fd.hpp"
#include "core/log.hpp"
#include "core/strcat.hpp"
#include "bpf/libbpf_helpers.hpp"
#include "ntp_server_xdp.skel.h"

namespace taid::bpf {
namespace {

constexpr int64_t kNsPerS = 1'000'000'000;

uint32_t mode_flags(XdpMode mode) {
  return mode == XdpMode::native ? XDP_FLAGS_DRV_MODE : XDP_FLAGS_SKB_MODE;
}

// The prefix with the host bits cleared, so equal rules are equal keys.
xdp_ntp_prefix_key prefix_key(const XdpPrefix& rule) {
  xdp_ntp_prefix_key key{};
  key.prefixlen = rule.prefix_len;
  for (std::size_t i = 0; i < 16; ++i) {
    const int bits = std::clamp(static_cast<int>(rule.prefix_len) - static_cast<int>(i) * 8, 0, 8);
    const auto mask = static_cast<uint8_t>(0xff00u >> bits);
    key.addr[i] = static_cast<uint8_t>(rule.address[i] & mask);
  }
  return key;
}

// Empties an access trie, shortest prefix first (see the header: a reader of this trie then finds
// its old longest match or nothing).
Result<void> clear_trie(int fd) {
  std::vector<xdp_ntp_prefix_key> keys;
  xdp_ntp_prefix_key key{};
  xdp_ntp_prefix_key next{};
  const xdp_ntp_prefix_key* previous = nullptr;
  while (bpf_map_get_next_key(fd, previous, &next) == 0) {
    keys.push_back(next);
    key = next;
    previous = &key;
  }
  if (errno != ENOENT) return error_of(errno, "listing the XDP access rules");
  std::stable_sort(keys.begin(), keys.end(),
                   [](const auto& a, const auto& b) { return a.prefixlen < b.prefixlen; });
  for (const auto& k : keys) {
    if (bpf_map_delete_elem(fd, &k) != 0 && errno != ENOENT) {
      return error_of(errno, "deleting an XDP access rule");
    }
  }
  return {};
}

}  // namespace

std::string_view to_string(XdpMode mode) {
  return mode == XdpMode::native ? "xdp native" : "xdp generic";
}

std::string_view to_string(xdp_ntp_stat stat) {
  switch (stat) {
    case XDP_NTP_ANSWERED:
      return "answered";
    case XDP_NTP_TOO_SHORT:
      return "too_short";
    case XDP_NTP_TOO_LONG:
      return "too_long";
    case XDP_NTP_BAD_VERSION_OR_MODE:
      return "bad_version_or_mode";
    case XDP_NTP_ZERO_TRANSMIT:
      return "zero_transmit";
    case XDP_NTP_ORIGIN_SET:
      return "origin_set";
    case XDP_NTP_DENIED:
      return "denied";
    case XDP_NTP_NO_RULE:
      return "no_rule";
    case XDP_NTP_RATE_LIMITED:
      return "rate_limited";
    case XDP_NTP_CLOCK_UNSET:
      return "clock_unset";
    case XDP_NTP_NOT_PLAIN_IP:
      return "not_plain_ip";
    case XDP_NTP_STAT_COUNT:
      break;
  }
  return "unknown";
}

struct XdpServer::State {
  ntp_server_xdp_bpf* skel = nullptr;
  XdpMode mode = XdpMode::native;
  int ifindex = 0;
  Fd link;
  uint32_t program_id = 0;
  uint32_t link_id = 0;
  // What the settings element holds (user space is its only writer, so it is kept here and
  // written whole each time).
  xdp_ntp_settings settings{};

  State() = default;
  State(const State&) = delete;
  State& operator=(const State&) = delete;
  ~State() {
    if (link) {
      // Detach now, whoever else holds the link fd (a forked child would keep it alive).
      const int err = bpf_link_detach(link.get());
      if (err != 0 && errno_of(err) != ENODEV && errno_of(err) != ENOLINK) {
        log_warning(strcat("detaching the XDP NTP server from ifindex ", ifindex, ": ",
                           std::strerror(errno_of(err))));
      }
      link.reset();
    }
    if (skel != nullptr) ntp_server_xdp_bpf__destroy(skel);
  }

  Result<void> write_settings() {
    const uint32_t zero = 0;
    const int fd = bpf_map__fd(skel->maps.taid_xdp_settings);
    if (bpf_map_update_elem(fd, &zero, &settings, BPF_F_LOCK) != 0) {
      return error_of(errno, "updating the XDP NTP server's settings");
    }
    return {};
  }

  int acl_fd(uint32_t slot) const {
    return bpf_map__fd(slot == 0 ? skel->maps.taid_xdp_acl0 : skel->maps.taid_xdp_acl1);
  }

  Result<void> attach_link() {
    const uint32_t flags = mode_flags(mode);
    uint32_t existing = 0;
    const int queried = bpf_xdp_query_id(ifindex, static_cast<int>(flags), &existing);
    if (queried != 0) {
      return error_of(errno_of(queried), strcat("querying XDP on ifindex ", ifindex));
    }
    if (existing != 0) {
      return Error{EBUSY, strcat("an XDP program is attached to ifindex ", ifindex, " (id ",
                                 existing, ", \"", program_name(existing), "\")")};
    }
    bpf_link_create_opts opts{};
    opts.sz = sizeof opts;
    opts.flags = flags;
    const int fd =
        bpf_link_create(bpf_program__fd(skel->progs.taid_ntp_xdp), ifindex, BPF_XDP, &opts);
    if (fd < 0) {
      const int err = errno_of(fd);
      // EEXIST: a program in the other XDP mode; EBUSY: a link attached since the query.
      if (err == EEXIST || err == EBUSY) {
        return Error{EBUSY, strcat("another XDP program holds ifindex ", ifindex,
                                   " (in this or the other XDP mode)")};
      }
      return error_of(
          err, strcat("attaching the XDP NTP server (", to_string(mode), ") to ifindex ", ifindex));
    }
    link.reset(fd);
    link_id = id_of<bpf_link_info>(fd);
    return {};
  }
};

XdpServer::XdpServer(std::unique_ptr<State> state) : state_(std::move(state)) {}
XdpServer::XdpServer(XdpServer&&) noexcept = default;
XdpServer& XdpServer::operator=(XdpServer&&) noexcept = default;
XdpServer::~XdpServer() = default;

Result<XdpServer> XdpServer::attach(int ifindex, XdpMode mode, uint16_t port) {
  if (ifindex <= 0) return Error{EINVAL, strcat("XDP NTP server: invalid ifindex ", ifindex)};
  if (port == 0) return Error{EINVAL, "XDP NTP server: port 0"};
  auto state = std::make_unique<State>();
  state->mode = mode;
  state->ifindex = ifindex;
  state->skel = ntp_server_xdp_bpf__open();
  if (state->skel == nullptr) return error_of(errno, "opening the XDP NTP server program");
  state->skel->rodata->ntp_port = port;
  const int loaded = ntp_server_xdp_bpf__load(state->skel);
  if (loaded != 0) return error_of(errno_of(loaded), "loading the XDP NTP server program");
  state->program_id = id_of<bpf_prog_info>(bpf_program__fd(state->skel->progs.taid_ntp_xdp));
  // The element exists (an array) and reads as zeros, i.e. clock invalid; written once anyway so
  // a failure of locked updates shows here, not at the first set_clock().
  if (auto written = state->write_settings(); !written) return written.error();
  if (auto attached = state->attach_link(); !attached) return attached.error();
  log_debug(strcat("XDP NTP server on ifindex ", ifindex, " (", to_string(mode), "), port ", port,
                   ", program id ", state->program_id));
  return XdpServer(std::move(state));
}

Result<void> XdpServer::set_clock(const XdpClock& clock) {
  if (!state_) return Error{EBADF, "XDP NTP server: moved from"};
  if (clock.leap > 3) return Error{EINVAL, strcat("XDP NTP server: leap ", int{clock.leap})};
  xdp_ntp_clock& c = state_->settings.clock;
  c = xdp_ntp_clock{};
  c.valid = clock.valid ? 1 : 0;
  c.leap = clock.leap;
  c.stratum = clock.stratum;
  c.precision_log2 = clock.precision_log2;
  c.reference_id = clock.reference_id;
  c.root_delay = clock.root_delay.raw();
  c.root_dispersion = clock.root_dispersion.raw();
  c.reference_time = clock.reference_time.raw();
  c.tai_offset_s = clock.tai_offset_s;
  return state_->write_settings();
}

Result<void> XdpServer::set_rate_limit(std::optional<XdpRateLimit> limit) {
  if (!state_) return Error{EBADF, "XDP NTP server: moved from"};
  uint64_t interval_ns = 0;
  uint64_t burst_ns = 0;
  if (limit) {
    if (limit->interval_log2 < -20 || limit->interval_log2 > 30 || limit->burst < 1) {
      return Error{EINVAL, strcat("XDP NTP server: rate limit interval 2^", limit->interval_log2,
                                  " s, burst ", limit->burst)};
    }
    interval_ns = limit->interval_log2 >= 0
                      ? static_cast<uint64_t>(kNsPerS) << limit->interval_log2
                      : static_cast<uint64_t>(kNsPerS) >> -limit->interval_log2;
    // At most 2^32 * 2^30 * 10^9 would overflow: burst is capped by what fits.
    if (limit->burst - 1 > UINT64_MAX / interval_ns) {
      return Error{EINVAL, strcat("XDP NTP server: burst ", limit->burst, " too large")};
    }
    burst_ns = (limit->burst - 1) * interval_ns;
  }
  state_->settings.rate_interval_ns = interval_ns;
  state_->settings.rate_burst_ns = burst_ns;
  return state_->write_settings();
}

Result<void> XdpServer::set_access(std::span<const XdpPrefix> rules) {
  if (!state_) return Error{EBADF, "XDP NTP server: moved from"};
  if (rules.size() > XDP_NTP_ACCESS_ENTRIES) {
    return Error{E2BIG, strcat("XDP NTP server: ", rules.size(), " access rules, at most ",
                               XDP_NTP_ACCESS_ENTRIES)};
  }
  for (const XdpPrefix& rule : rules) {
    if (rule.prefix_len > 128) {
      return Error{EINVAL, strcat("XDP NTP server: prefix length ", int{rule.prefix_len})};
    }
  }
  const uint32_t idle = state_->settings.access_slot ^ 1u;
  const int idle_fd = state_->acl_fd(idle);
  // Left over from a failed call, or empty.
  if (auto cleared = clear_trie(idle_fd); !cleared) return cleared.error();
  for (const XdpPrefix& rule : rules) {
    const xdp_ntp_prefix_key key = prefix_key(rule);
    const xdp_ntp_access value{rule.allow ? 1u : 0u};
    if (bpf_map_update_elem(idle_fd, &key, &value, BPF_ANY) != 0) {
      const int err = errno;
      (void)clear_trie(idle_fd);
      return error_of(err, "adding an XDP access rule");
    }
  }
  const uint32_t old = state_->settings.access_slot;
  state_->settings.access_slot = idle;
  if (auto written = state_->write_settings(); !written) {
    state_->settings.access_slot = old;
    (void)clear_trie(idle_fd);
    return written.error();
  }
  return clear_trie(state_->acl_fd(old));
}

Result<XdpStats> XdpServer::stats() const {
  if (!state_) return Error{EBADF, "XDP NTP server: moved from"};
  const int cpus = libbpf_num_possible_cpus();
  if (cpus <= 0) return error_of(errno_of(cpus), "counting the possible CPUs");
  std::vector<uint64_t> per_cpu(static_cast<std::size_t>(cpus));
  const int fd = bpf_map__fd(state_->skel->maps.taid_xdp_stats);
  XdpStats stats;
  for (uint32_t i = 0; i < XDP_NTP_STAT_COUNT; ++i) {
    if (bpf_map_lookup_elem(fd, &i, per_cpu.data()) != 0) {
      return error_of(errno, "reading the XDP NTP server's counters");
    }
    for (const uint64_t v : per_cpu) stats.count[i] += v;
  }
  return stats;
}

std::optional<uint64_t> XdpServer::client_tat_ns(const std::array<uint8_t, 16>& address) const {
  if (!state_) return std::nullopt;
  xdp_ntp_client_key key{};
  std::memcpy(key.addr, address.data(), sizeof key.addr);
  xdp_ntp_client value{};
  if (bpf_map_lookup_elem(bpf_map__fd(state_->skel->maps.taid_xdp_clients), &key, &value) != 0) {
    return std::nullopt;
  }
  return value.tat_ns;
}

bool XdpServer::client_over_limit(const std::array<uint8_t, 16>& address,
                                  uint64_t now_monotonic_ns) const {
  if (!state_ || state_->settings.rate_interval_ns == 0) return false;
  const auto tat = client_tat_ns(address);
  return tat && *tat > now_monotonic_ns && *tat - now_monotonic_ns > state_->settings.rate_burst_ns;
}

XdpMode XdpServer::mode() const { return state_ ? state_->mode : XdpMode::native; }
int XdpServer::ifindex() const { return state_ ? state_->ifindex : 0; }
uint32_t XdpServer::program_id() const { return state_ ? state_->program_id : 0; }
uint32_t XdpServer::link_id() const { return state_ ? state_->link_id : 0; }

}  // namespace taid::bpf
