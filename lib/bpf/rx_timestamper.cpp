// RxTimestamper: libbpf open → rodata → load → attach → take → detach → destroy, in RAII.
#include "bpf/rx_timestamper.hpp"

#include <endian.h>
#include <fcntl.h>
#include <linux/if_link.h>
#include <linux/netlink.h>
#include <linux/pkt_sched.h>
#include <linux/rtnetlink.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "core/fd.hpp"
#include "core/log.hpp"
#include "rx_timestamp.skel.h"

namespace taid::bpf {
namespace {

// BPF_TCX_INGRESS (kernel 6.6). The 6.1 UAPI header we build against has no enum value for it,
// and libbpf 1.1 has no bpf_program__attach_tcx(); the kernel accepts the raw number.
constexpr auto kBpfTcxIngress = static_cast<bpf_attach_type>(46);

// libbpf reports through a process-wide callback; route it into our log once.
int libbpf_print(libbpf_print_level level, const char* format, va_list args) {
  char line[1024];
  const int n = std::vsnprintf(line, sizeof line, format, args);
  if (n <= 0) return n;
  std::string_view text(line);
  while (!text.empty() && text.back() == '\n') text.remove_suffix(1);
  // The kernel's netlink notes ("Cannot find specified filter chain" when we look for a
  // leftover filter that is not there) are expected answers; the errors that matter reach the
  // caller as a Result anyway.
  const bool kernel_note = text.find("Kernel error message:") != std::string_view::npos;
  if (level == LIBBPF_WARN && !kernel_note) {
    log_warning(text);
  } else {
    log_debug(text);
  }
  return n;
}

void route_libbpf_log() {
  static std::once_flag once;
  std::call_once(once, [] { libbpf_set_print(libbpf_print); });
}

// libbpf 1.x returns -errno (and sets errno); keep the positive errno.
int errno_of(int libbpf_result) { return libbpf_result < 0 ? -libbpf_result : errno; }

// EPERM is what the kernel answers for missing capabilities (EACCES is the verifier's "no").
Error error_of(int errno_value, std::string context) {
  if (errno_value == EPERM) {
    context += " (needs CAP_BPF and CAP_NET_ADMIN)";
  }
  return Error{errno_value, std::move(context)};
}

std::string hex(uint32_t value) {
  char text[16];
  std::snprintf(text, sizeof text, "0x%x", value);
  return text;
}

std::string where(int ifindex) { return strcat(" on ifindex ", ifindex); }

// Name of a loaded program by id, "" if it is gone or unreadable.
std::string program_name(uint32_t id) {
  const Fd fd(bpf_prog_get_fd_by_id(id));
  if (!fd) return {};
  bpf_prog_info info{};
  uint32_t len = sizeof info;
  if (bpf_obj_get_info_by_fd(fd.get(), &info, &len) != 0) return {};
  return std::string(info.name, strnlen(info.name, sizeof info.name));
}

uint32_t prog_id_of(int fd) {
  bpf_prog_info info{};
  uint32_t len = sizeof info;
  return bpf_obj_get_info_by_fd(fd, &info, &len) == 0 ? info.id : 0;
}

uint32_t map_id_of(int fd) {
  bpf_map_info info{};
  uint32_t len = sizeof info;
  return bpf_obj_get_info_by_fd(fd, &info, &len) == 0 ? info.id : 0;
}

uint32_t link_id_of(int fd) {
  bpf_link_info info{};
  uint32_t len = sizeof info;
  return bpf_obj_get_info_by_fd(fd, &info, &len) == 0 ? info.id : 0;
}

bool is_xdp(AttachMode mode) {
  return mode == AttachMode::xdp_generic || mode == AttachMode::xdp_native;
}

uint32_t xdp_mode_flags(AttachMode mode) {
  return mode == AttachMode::xdp_native ? XDP_FLAGS_DRV_MODE : XDP_FLAGS_SKB_MODE;
}

bpf_tc_hook ingress_hook(int ifindex) {
  bpf_tc_hook hook{};
  hook.sz = sizeof hook;
  hook.ifindex = ifindex;
  hook.attach_point = BPF_TC_INGRESS;
  return hook;
}

// Our filter's place (handle, priority); prog_fd/prog_id/flags stay 0 as query/detach require.
bpf_tc_opts our_tc_place() {
  bpf_tc_opts opts{};
  opts.sz = sizeof opts;
  opts.handle = kTcHandle;
  opts.priority = kTcPriority;
  return opts;
}

// How many tc filters (any kind, any chain, anyone's) sit on the clsact hook `parent` of ifindex
// in the calling thread's namespace: an RTM_GETTFILTER dump, counting RTM_NEWTFILTER answers.
// libbpf can only query one known handle/priority, which would miss other people's filters.
// 0 also when there is no qdisc (the kernel then answers the dump with nothing).
Result<int> count_tc_filters(int ifindex, uint32_t parent) {
  const Fd sock(::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE));
  if (!sock) return Error::from_errno("netlink socket for the tc filter dump");
  // Bounded: this runs in a destructor, which must not hang on a kernel that never answers.
  const timeval timeout{1, 0};
  ::setsockopt(sock.get(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);

  struct {
    nlmsghdr header;
    tcmsg tc;
  } request{};
  constexpr uint32_t kSeq = 0x7a1d;
  request.header.nlmsg_len = NLMSG_LENGTH(sizeof(tcmsg));
  request.header.nlmsg_type = RTM_GETTFILTER;
  request.header.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  request.header.nlmsg_seq = kSeq;
  request.tc.tcm_family = AF_UNSPEC;
  request.tc.tcm_ifindex = ifindex;
  request.tc.tcm_parent = parent;
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  if (::sendto(sock.get(), &request, request.header.nlmsg_len, 0,
               reinterpret_cast<const sockaddr*>(&kernel), sizeof kernel) < 0) {
    return Error::from_errno("sending the tc filter dump request");
  }

  // A bpf filter's message carries its program name and tag; 32 KiB holds many of them.
  std::vector<char> buffer(32 * 1024);
  int filters = 0;
  for (;;) {
    const ssize_t n = ::recv(sock.get(), buffer.data(), buffer.size(), 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Error::from_errno("reading the tc filter dump");
    }
    auto left = static_cast<unsigned>(n);
    for (auto* msg = reinterpret_cast<nlmsghdr*>(buffer.data()); NLMSG_OK(msg, left);
         msg = NLMSG_NEXT(msg, left)) {
      if (msg->nlmsg_seq != kSeq) continue;  // not an answer to our request
      if (msg->nlmsg_type == NLMSG_DONE) return filters;
      if (msg->nlmsg_type == NLMSG_ERROR) {
        const auto* err = static_cast<const nlmsgerr*>(NLMSG_DATA(msg));
        if (err->error == 0) continue;
        return Error{-err->error, "tc filter dump"};
      }
      if (msg->nlmsg_type == RTM_NEWTFILTER) ++filters;
    }
  }
}

// Identity of a network namespace, to tell whether the thread is still where attach() ran.
bool same_namespace(int ns_a, int ns_b) {
  struct stat a {};
  struct stat b {};
  return fstat(ns_a, &a) == 0 && fstat(ns_b, &b) == 0 && a.st_dev == b.st_dev &&
         a.st_ino == b.st_ino;
}

Fd open_current_netns() { return Fd(::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC)); }

}  // namespace

std::string_view to_string(AttachMode mode) {
  switch (mode) {
    case AttachMode::tc_clsact:
      return "tc_clsact";
    case AttachMode::tcx:
      return "tcx";
    case AttachMode::xdp_generic:
      return "xdp_generic";
    case AttachMode::xdp_native:
      return "xdp_native";
  }
  return "unknown";
}

std::optional<std::array<uint8_t, 16>> to_key_address(const sockaddr_storage& address) {
  std::array<uint8_t, 16> out{};
  if (address.ss_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&address);
    std::memcpy(out.data(), &in6->sin6_addr, out.size());
    return out;
  }
  if (address.ss_family == AF_INET) {
    const auto* in4 = reinterpret_cast<const sockaddr_in*>(&address);
    out[10] = 0xff;
    out[11] = 0xff;
    std::memcpy(out.data() + 12, &in4->sin_addr, 4);
    return out;
  }
  return std::nullopt;
}

namespace {

std::optional<rx_ts_key> key_without_transmit(const sockaddr_storage& remote, uint16_t local_port) {
  const auto address = to_key_address(remote);
  if (!address) return std::nullopt;
  rx_ts_key key{};
  std::memcpy(key.addr, address->data(), address->size());
  const in_port_t port_be = remote.ss_family == AF_INET6
                                ? reinterpret_cast<const sockaddr_in6*>(&remote)->sin6_port
                                : reinterpret_cast<const sockaddr_in*>(&remote)->sin_port;
  key.remote_port = ntohs(port_be);
  key.local_port = local_port;
  return key;
}

}  // namespace

std::optional<rx_ts_key> make_key(const sockaddr_storage& remote, uint16_t local_port,
                                  NtpTimestamp transmit) {
  auto key = key_without_transmit(remote, local_port);
  if (!key) return std::nullopt;
  key->transmit_ts = htobe64(transmit.raw());  // the wire bytes, as the program copies them
  return key;
}

std::optional<rx_ts_key> make_key(const sockaddr_storage& remote, uint16_t local_port,
                                  std::span<const uint8_t> ntp_packet) {
  if (ntp_packet.size() < RX_TS_NTP_HEADER_LEN) return std::nullopt;
  auto key = key_without_transmit(remote, local_port);
  if (!key) return std::nullopt;
  std::memcpy(&key->transmit_ts, ntp_packet.data() + RX_TS_NTP_TRANSMIT_OFFSET,
              sizeof key->transmit_ts);
  return key;
}

// Everything attach() set up, undone in reverse by the destructor.
struct RxTimestamper::State {
  rx_timestamp_bpf* skel = nullptr;
  AttachMode mode = AttachMode::tc_clsact;
  int ifindex = 0;
  Fd netns;  // where we attached; detach happens there too
  // The clsact qdisc is ours to delete once it is empty: we created it, or a crashed run of ours
  // was using it (see the header).
  bool owns_clsact = false;
  bool tc_attached = false;
  bool xdp_attached = false;
  Fd tcx_link;  // closing it detaches
  uint32_t program_id = 0;
  uint32_t map_id = 0;
  uint32_t link_id = 0;

  State() = default;
  State(const State&) = delete;
  State& operator=(const State&) = delete;
  ~State();

  bpf_program* program() const {
    return is_xdp(mode) ? skel->progs.taid_rx_xdp : skel->progs.taid_rx_tc;
  }
  Result<void> attach_tc();
  Result<void> attach_tcx();
  Result<void> attach_xdp();
  void delete_clsact_if_empty() noexcept;
  void detach() noexcept;
};

void RxTimestamper::State::delete_clsact_if_empty() noexcept {
  // Deleting the qdisc deletes every filter on it: only when none remains, ours being gone.
  int remaining = 0;
  for (const uint32_t hook : {TC_H_MIN_INGRESS, TC_H_MIN_EGRESS}) {
    const auto count = count_tc_filters(ifindex, TC_H_MAKE(TC_H_CLSACT, hook));
    if (!count) {
      log_warning(
          strcat("clsact qdisc", where(ifindex), " left in place: ", count.error().message()));
      return;
    }
    remaining += *count;
  }
  if (remaining != 0) {
    log_debug(strcat("clsact qdisc", where(ifindex), " left in place: ", remaining,
                     " tc filter(s) of others on it"));
    return;
  }
  // INGRESS | EGRESS is what makes libbpf delete the qdisc itself; INGRESS alone would flush
  // the ingress filters and keep the qdisc.
  bpf_tc_hook hook = ingress_hook(ifindex);
  hook.attach_point = static_cast<bpf_tc_attach_point>(BPF_TC_INGRESS | BPF_TC_EGRESS);
  const int err = bpf_tc_hook_destroy(&hook);
  if (err != 0 && err != -ENOENT && err != -ENODEV) {
    log_warning(
        strcat("deleting the clsact qdisc", where(ifindex), ": ", std::strerror(errno_of(err))));
  }
}

Result<void> RxTimestamper::State::attach_tc() {
  bpf_tc_hook hook = ingress_hook(ifindex);
  const int created = bpf_tc_hook_create(&hook);
  if (created == 0) {
    owns_clsact = true;
  } else if (created != -EEXIST) {
    return error_of(errno_of(created), "creating the clsact qdisc" + where(ifindex));
  }

  // A filter at our place is either a leftover of ours (replace it) or someone else's (refuse).
  bpf_tc_opts existing = our_tc_place();
  if (bpf_tc_query(&hook, &existing) == 0) {
    const std::string name = program_name(existing.prog_id);
    if (name != kTcProgramName) {
      return Error{EBUSY,
                   strcat("tc filter handle ", hex(kTcHandle), " priority ", hex(kTcPriority),
                          where(ifindex), " belongs to another program (id ", existing.prog_id,
                          ", \"", name, "\")")};
    }
    log_info(strcat("replacing a leftover taid tc filter (program id ", existing.prog_id, ")",
                    where(ifindex)));
    // The crashed run may have created the qdisc; no one can tell any more, and without this
    // every crash would leave one behind for good.
    owns_clsact = true;
  }

  bpf_tc_opts opts = our_tc_place();
  opts.prog_fd = bpf_program__fd(program());
  opts.flags = BPF_TC_F_REPLACE;
  const int attached = bpf_tc_attach(&hook, &opts);
  if (attached != 0) {
    return error_of(errno_of(attached),
                    "attaching the eBPF RX timestamp program to tc ingress" + where(ifindex));
  }
  tc_attached = true;
  return {};
}

Result<void> RxTimestamper::State::attach_tcx() {
  const int fd = bpf_link_create(bpf_program__fd(program()), ifindex, kBpfTcxIngress, nullptr);
  if (fd < 0) {
    return error_of(errno_of(fd),
                    "attaching the eBPF RX timestamp program to tcx ingress" + where(ifindex));
  }
  tcx_link.reset(fd);
  link_id = link_id_of(fd);
  return {};
}

Result<void> RxTimestamper::State::attach_xdp() {
  const uint32_t mode_flags = xdp_mode_flags(mode);
  uint32_t existing_id = 0;
  const int queried = bpf_xdp_query_id(ifindex, static_cast<int>(mode_flags), &existing_id);
  if (queried != 0) {
    return error_of(errno_of(queried), "querying the XDP program" + where(ifindex));
  }

  bpf_xdp_attach_opts opts{};
  opts.sz = sizeof opts;
  Fd old_program;
  uint32_t flags = mode_flags;
  if (existing_id != 0) {
    const std::string name = program_name(existing_id);
    if (name != kXdpProgramName) {
      return Error{EBUSY, strcat("another XDP program is attached", where(ifindex), " (id ",
                                 existing_id, ", \"", name, "\")")};
    }
    old_program.reset(bpf_prog_get_fd_by_id(existing_id));
    if (!old_program) {
      return error_of(errno, strcat("opening the leftover XDP program id ", existing_id));
    }
    log_info(
        strcat("replacing a leftover taid XDP program (id ", existing_id, ")", where(ifindex)));
    // Replace exactly that program: fails instead of clobbering one attached meanwhile.
    opts.old_prog_fd = old_program.get();
    flags |= XDP_FLAGS_REPLACE;
  } else {
    flags |= XDP_FLAGS_UPDATE_IF_NOEXIST;
  }
  const int attached = bpf_xdp_attach(ifindex, bpf_program__fd(program()), flags, &opts);
  if (attached != 0) {
    return error_of(errno_of(attached), strcat("attaching the eBPF RX timestamp program to XDP (",
                                               to_string(mode), ")", where(ifindex)));
  }
  xdp_attached = true;
  return {};
}

void RxTimestamper::State::detach() noexcept {
  if (tc_attached) {
    bpf_tc_hook hook = ingress_hook(ifindex);
    // Only our own program: if someone replaced our filter meanwhile, it is theirs now.
    bpf_tc_opts current = our_tc_place();
    if (bpf_tc_query(&hook, &current) == 0 && current.prog_id == program_id) {
      const bpf_tc_opts place = our_tc_place();
      const int err = bpf_tc_detach(&hook, &place);
      if (err != 0) {
        log_warning(strcat("detaching the tc RX timestamp filter", where(ifindex), ": ",
                           std::strerror(errno_of(err))));
      }
    }
    tc_attached = false;
  }
  if (owns_clsact) {
    delete_clsact_if_empty();
    owns_clsact = false;
  }
  if (xdp_attached) {
    bpf_xdp_attach_opts opts{};
    opts.sz = sizeof opts;
    opts.old_prog_fd = bpf_program__fd(program());
    const int err = bpf_xdp_detach(ifindex, xdp_mode_flags(mode) | XDP_FLAGS_REPLACE, &opts);
    if (err == -EEXIST) {
      // Someone else's program is attached now (it replaced ours): not ours to remove.
      log_debug(strcat("XDP program", where(ifindex), " is no longer ours; left in place"));
    } else if (err != 0 && err != -ENODEV) {
      log_warning(strcat("detaching the XDP RX timestamp program", where(ifindex), ": ",
                         std::strerror(errno_of(err))));
    }
    xdp_attached = false;
  }
  tcx_link.reset();
}

RxTimestamper::State::~State() {
  if (skel == nullptr) return;
  // Netlink requests go to the calling thread's namespace: detach where we attached.
  Fd back;
  bool moved = false;
  if (netns && (tc_attached || owns_clsact || xdp_attached)) {
    back = open_current_netns();
    if (back && !same_namespace(back.get(), netns.get())) {
      moved = ::setns(netns.get(), CLONE_NEWNET) == 0;
      if (!moved) {
        log_warning(strcat("entering the RX timestamper's network namespace to detach: ",
                           std::strerror(errno)));
      }
    }
  }
  detach();
  if (moved && ::setns(back.get(), CLONE_NEWNET) != 0) {
    log_error(strcat("returning to the original network namespace: ", std::strerror(errno)));
  }
  rx_timestamp_bpf__destroy(skel);
}

RxTimestamper::RxTimestamper(std::unique_ptr<State> state) : state_(std::move(state)) {}
RxTimestamper::RxTimestamper(RxTimestamper&&) noexcept = default;
RxTimestamper& RxTimestamper::operator=(RxTimestamper&&) noexcept = default;
RxTimestamper::~RxTimestamper() = default;

Result<RxTimestamper> RxTimestamper::attach(int ifindex, AttachMode mode, uint16_t ntp_port) {
  if (ifindex <= 0) return Error{EINVAL, strcat("RX timestamper: invalid ifindex ", ifindex)};
  route_libbpf_log();

  auto state = std::make_unique<State>();
  state->mode = mode;
  state->ifindex = ifindex;
  state->netns = open_current_netns();

  state->skel = rx_timestamp_bpf__open();
  if (state->skel == nullptr) {
    return error_of(errno, "opening the eBPF RX timestamp program");
  }
  state->skel->rodata->ntp_port = ntp_port;
  // Load only the program this mode uses: nothing idle stays in the kernel.
  bpf_program__set_autoload(state->skel->progs.taid_rx_tc, !is_xdp(mode));
  bpf_program__set_autoload(state->skel->progs.taid_rx_xdp, is_xdp(mode));
  const int loaded = rx_timestamp_bpf__load(state->skel);
  if (loaded != 0) {
    return error_of(errno_of(loaded), "loading the eBPF RX timestamp program");
  }
  state->program_id = prog_id_of(bpf_program__fd(state->program()));
  state->map_id = map_id_of(bpf_map__fd(state->skel->maps.taid_rx_ts));

  Result<void> attached = [&]() -> Result<void> {
    switch (mode) {
      case AttachMode::tc_clsact:
        return state->attach_tc();
      case AttachMode::tcx:
        return state->attach_tcx();
      case AttachMode::xdp_generic:
      case AttachMode::xdp_native:
        return state->attach_xdp();
    }
    return Error{EINVAL, "RX timestamper: unknown attach mode"};
  }();
  if (!attached) return attached.error();  // ~State undoes what was done (e.g. the qdisc)
  log_debug(strcat("eBPF RX timestamps on ifindex ", ifindex, " via ", to_string(mode),
                   ", NTP port ", ntp_port, ", program id ", state->program_id));
  return RxTimestamper(std::move(state));
}

std::optional<TaiTime> RxTimestamper::take(const rx_ts_key& key) {
  if (!state_) return std::nullopt;
  rx_ts_value value{};
  const int fd = bpf_map__fd(state_->skel->maps.taid_rx_ts);
  if (bpf_map_lookup_and_delete_elem(fd, &key, &value) != 0) {
    if (errno != ENOENT) {
      log_debug(strcat("RX timestamp map lookup: ", std::strerror(errno)));
    }
    return std::nullopt;
  }
  return TaiTime::from_tai_ns(static_cast<int64_t>(value.tai_ns));
}

AttachMode RxTimestamper::mode() const { return state_ ? state_->mode : AttachMode::tc_clsact; }
int RxTimestamper::ifindex() const { return state_ ? state_->ifindex : 0; }
uint32_t RxTimestamper::program_id() const { return state_ ? state_->program_id : 0; }
uint32_t RxTimestamper::map_id() const { return state_ ? state_->map_id : 0; }
uint32_t RxTimestamper::link_id() const { return state_ ? state_->link_id : 0; }

}  // namespace taid::bpf
