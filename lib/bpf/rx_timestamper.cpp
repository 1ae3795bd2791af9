// RxTimestamper: libbpf open → rodata → load → attach → take → detach → destroy, in RAII.
#include "bpf/rx_timestamper.hpp"

#include <dirent.h>
#include <endian.h>
#include <fcntl.h>
#include <linux/if_link.h>
#include <linux/netlink.h>
#include <linux/pkt_cls.h>
#include <linux/pkt_sched.h>
#include <linux/rtnetlink.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <atomic>
#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "bpf/libbpf_helpers.hpp"
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
  // Sized to the message: libbpf hands over the verifier's whole log as one message, and its
  // last lines say why a program was refused.
  va_list measure;
  va_copy(measure, args);
  const int n = std::vsnprintf(nullptr, 0, format, measure);
  va_end(measure);
  if (n <= 0) return n;
  std::string line(static_cast<std::size_t>(n) + 1, '\0');
  std::vsnprintf(line.data(), line.size(), format, args);
  line.resize(static_cast<std::size_t>(n));
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

std::string hex(uint32_t value) {
  char text[16];
  std::snprintf(text, sizeof text, "0x%x", value);
  return text;
}

std::string where(int ifindex) { return strcat(" on ifindex ", ifindex); }

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

// A filter's place (handle, our priority); prog_fd/prog_id/flags stay 0 as query/detach require.
bpf_tc_opts tc_place(uint32_t handle) {
  bpf_tc_opts opts{};
  opts.sz = sizeof opts;
  opts.handle = handle;
  opts.priority = kTcPriority;
  return opts;
}

// One answer of a tc filter dump. A classifier instance is announced once without a handle
// (handle 0, what `tc filter show` prints as "... bpf chain 0"), then each filter with one.
struct TcFilter {
  uint32_t handle = 0;
  uint32_t priority = 0;
  std::string kind;         // "bpf", "u32", ...
  uint32_t program_id = 0;  // bpf filters: TCA_BPF_ID
};

std::string attribute_string(const rtattr* attribute) {
  const auto* text = static_cast<const char*>(RTA_DATA(attribute));
  const auto length = static_cast<size_t>(RTA_PAYLOAD(attribute));
  return std::string(text, strnlen(text, length));
}

TcFilter parse_tc_filter(const nlmsghdr* msg) {
  TcFilter filter;
  const auto* tc = static_cast<const tcmsg*>(NLMSG_DATA(msg));
  filter.handle = tc->tcm_handle;
  filter.priority = TC_H_MAJ(tc->tcm_info) >> 16;  // tcm_info: priority << 16 | protocol
  int left = static_cast<int>(msg->nlmsg_len) - static_cast<int>(NLMSG_LENGTH(sizeof(tcmsg)));
  for (auto* a = reinterpret_cast<const rtattr*>(reinterpret_cast<const char*>(tc) +
                                                 NLMSG_ALIGN(sizeof(tcmsg)));
       RTA_OK(a, left); a = RTA_NEXT(a, left)) {
    if (a->rta_type == TCA_KIND) filter.kind = attribute_string(a);
    if (a->rta_type != TCA_OPTIONS) continue;
    int nested_left = static_cast<int>(RTA_PAYLOAD(a));
    for (auto* n = static_cast<const rtattr*>(RTA_DATA(a)); RTA_OK(n, nested_left);
         n = RTA_NEXT(n, nested_left)) {
      if (n->rta_type == TCA_BPF_ID && RTA_PAYLOAD(n) >= sizeof(uint32_t)) {
        std::memcpy(&filter.program_id, RTA_DATA(n), sizeof(uint32_t));
      }
    }
  }
  return filter;
}

// Every tc filter (any kind, any chain, anyone's) on the clsact hook `parent` of ifindex in the
// calling thread's namespace: an RTM_GETTFILTER dump. libbpf can only query one known
// handle/priority, which would miss other people's filters. Empty also when there is no qdisc
// (the kernel then answers the dump with nothing).
Result<std::vector<TcFilter>> list_tc_filters(int ifindex, uint32_t parent) {
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
  std::vector<TcFilter> filters;
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
      if (msg->nlmsg_type == RTM_NEWTFILTER) filters.push_back(parse_tc_filter(msg));
    }
  }
}

// Whether process `pid` holds an fd of program `program_id` (its fdinfo has "prog_id:\t<id>"):
// a live taid keeps its program's fd until it detaches, a dead one holds nothing, and a process
// that got the dead one's pid holds other programs. What we cannot read (another user's process,
// /proc mounted with hidepid) counts as held: a filter is removed only when its owner is proven
// gone. kill(pid, 0) says whether the pid exists at all, whatever /proc lets us see.
bool holds_program(int32_t pid, uint32_t program_id) {
  if (pid <= 0) return false;  // no process; kill() would address a process group
  if (::kill(pid, 0) != 0 && errno == ESRCH) return false;
  const std::string directory = strcat("/proc/", pid, "/fdinfo");
  DIR* fds = ::opendir(directory.c_str());
  if (fds == nullptr) return true;
  const std::string needle = strcat("\nprog_id:\t", program_id, "\n");
  bool held = false;
  while (const dirent* entry = ::readdir(fds)) {
    if (entry->d_name[0] == '.') continue;
    const Fd info(::openat(::dirfd(fds), entry->d_name, O_RDONLY | O_CLOEXEC));
    if (!info) continue;  // closed meanwhile
    char text[4096];
    const ssize_t n = ::read(info.get(), text, sizeof text - 1);
    if (n <= 0) continue;
    if (std::string_view(text, static_cast<size_t>(n)).find(needle) != std::string_view::npos) {
      held = true;
      break;
    }
  }
  ::closedir(fds);
  return held;
}

// Per process: tells apart our own filters on one interface (one per server port).
uint32_t next_tc_instance() {
  static std::atomic<uint32_t> counter{0};
  return counter.fetch_add(1) & 0x1ffU;
}

// A trivial tc program (r0 = TC_ACT_UNSPEC; exit) for the tcx probe.
Fd trivial_tc_program() {
  const bpf_insn insns[] = {
      {BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_0, 0, 0, TC_ACT_UNSPEC},
      {BPF_JMP | BPF_EXIT, 0, 0, 0, 0},
  };
  return Fd(bpf_prog_load(BPF_PROG_TYPE_SCHED_CLS, "taid_tcx_probe", "GPL", insns, 2, nullptr));
}

// Errors by which a kernel says it does not know an attach type (ENOTSUPP, 524, is the kernel's
// internal variant that leaks to user space from some paths).
bool means_unsupported(int errno_value) {
  return errno_value == EINVAL || errno_value == EOPNOTSUPP || errno_value == 524;
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

uint32_t tc_handle(const TcOwner& owner) {
  return static_cast<uint32_t>(owner.pid) << 10 | (owner.owns_clsact ? 1U << 9 : 0U) |
         (owner.instance & 0x1ffU);
}

TcOwner tc_owner(uint32_t handle) {
  return TcOwner{static_cast<int32_t>(handle >> 10), ((handle >> 9) & 1U) != 0, handle & 0x1ffU};
}

Result<bool> tcx_supported() {
  route_libbpf_log();
  const Fd program = trivial_tc_program();
  if (!program) return error_of(errno, "loading the tcx probe program");
  // ifindex 0 is no device: a tcx kernel gets as far as looking it up, nothing is attached.
  const Fd link(bpf_link_create(program.get(), 0, kBpfTcxIngress, nullptr));
  if (link) return true;
  const int err = errno;
  if (err == ENODEV) return true;
  if (means_unsupported(err)) return false;
  return error_of(err, "probing the kernel for tcx");
}

std::vector<AttachMode> auto_attach_order() {
  const auto tcx = tcx_supported();
  if (!tcx) log_debug(strcat("tcx probe: ", tcx.error().message()));
  if (tcx && *tcx) return {AttachMode::tcx, AttachMode::tc_clsact};
  return {AttachMode::tc_clsact};
}

std::vector<AttachMode> attach_order(AttachMode requested) {
  std::vector<AttachMode> order{requested};
  if (is_xdp(requested)) {
    for (const AttachMode fallback : auto_attach_order()) order.push_back(fallback);
  }
  return order;
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
  uint32_t tc_handle = 0;  // tc_clsact: our filter's handle (TcOwner)
  Fd link;                 // tcx and XDP: detached explicitly, and by the kernel when we die
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
  Result<void> remove_dead_tc_filters(const bpf_tc_hook& hook, bool& inherit_clsact);
  Result<void> attach_tcx();
  Result<void> attach_xdp();
  void delete_clsact_if_empty() noexcept;
  void detach() noexcept;
};

void RxTimestamper::State::delete_clsact_if_empty() noexcept {
  // Deleting the qdisc deletes every filter on it: only when none remains, ours being gone.
  size_t remaining = 0;
  for (const uint32_t hook : {TC_H_MIN_INGRESS, TC_H_MIN_EGRESS}) {
    const auto filters = list_tc_filters(ifindex, TC_H_MAKE(TC_H_CLSACT, hook));
    if (!filters) {
      log_warning(
          strcat("clsact qdisc", where(ifindex), " left in place: ", filters.error().message()));
      return;
    }
    remaining += filters->size();
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

// Removes the taid filters at our priority whose owner is dead; reports whether any taid filter
// (live or dead) carries the clsact owner bit, which the caller then inherits.
Result<void> RxTimestamper::State::remove_dead_tc_filters(const bpf_tc_hook& hook,
                                                          bool& inherit_clsact) {
  const auto filters = list_tc_filters(ifindex, TC_H_MAKE(TC_H_CLSACT, TC_H_MIN_INGRESS));
  if (!filters) return filters.error();
  for (const TcFilter& filter : *filters) {
    if (filter.handle == 0 || filter.priority != kTcPriority || filter.kind != "bpf") continue;
    // Someone else's filter at our priority coexists with ours (another handle); not ours to judge.
    if (program_name(filter.program_id) != kTcProgramName) continue;
    const TcOwner owner = tc_owner(filter.handle);
    inherit_clsact = inherit_clsact || owner.owns_clsact;
    if (holds_program(owner.pid, filter.program_id)) continue;  // a live taid's
    log_info(strcat("replacing a leftover taid tc filter (program id ", filter.program_id,
                    ") of pid ", owner.pid, ", which has exited,", where(ifindex)));
    const bpf_tc_opts place = tc_place(filter.handle);
    const int err = bpf_tc_detach(&hook, &place);
    if (err != 0 && err != -ENOENT) {
      return error_of(errno_of(err), strcat("removing the leftover tc filter handle ",
                                            hex(filter.handle), where(ifindex)));
    }
  }
  return {};
}

Result<void> RxTimestamper::State::attach_tc() {
  bpf_tc_hook hook = ingress_hook(ifindex);
  const int created = bpf_tc_hook_create(&hook);
  if (created == 0) {
    owns_clsact = true;
  } else if (created != -EEXIST) {
    return error_of(errno_of(created), "creating the clsact qdisc" + where(ifindex));
  }

  // The crashed run or the taid beside us may have created the qdisc: the owner bit of its
  // filter says so, and without inheriting it every crash would leave a qdisc behind for good.
  bool inherit_clsact = false;
  if (auto removed = remove_dead_tc_filters(hook, inherit_clsact); !removed) {
    return removed.error();
  }
  owns_clsact = owns_clsact || inherit_clsact;

  TcOwner owner{static_cast<int32_t>(::getpid()), owns_clsact, next_tc_instance()};
  if (owner.pid <= 0 || owner.pid >= (1 << 22)) {
    return Error{ERANGE, strcat("pid ", owner.pid, " does not fit a tc filter handle")};
  }
  bpf_tc_opts opts = tc_place(taid::bpf::tc_handle(owner));
  opts.prog_fd = bpf_program__fd(program());
  // No BPF_TC_F_REPLACE: the handle is ours alone, whatever sits there is not ours to replace.
  const int attached = bpf_tc_attach(&hook, &opts);
  if (attached == -EEXIST) {
    bpf_tc_opts existing = tc_place(opts.handle);
    const uint32_t id = bpf_tc_query(&hook, &existing) == 0 ? existing.prog_id : 0;
    return Error{EBUSY, strcat("tc filter handle ", hex(opts.handle), " priority ",
                               hex(kTcPriority), where(ifindex), " belongs to another program (id ",
                               id, ", \"", program_name(id), "\")")};
  }
  if (attached != 0) {
    return error_of(errno_of(attached),
                    "attaching the eBPF RX timestamp program to tc ingress" + where(ifindex));
  }
  tc_handle = opts.handle;
  tc_attached = true;
  return {};
}

Result<void> RxTimestamper::State::attach_tcx() {
  const int fd = bpf_link_create(bpf_program__fd(program()), ifindex, kBpfTcxIngress, nullptr);
  if (fd < 0) {
    const int err = errno_of(fd);
    // EINVAL is also what a tcx kernel says to other mistakes: the probe tells them apart.
    if (means_unsupported(err)) {
      if (const auto tcx = tcx_supported(); tcx && !*tcx) {
        return Error{EOPNOTSUPP, strcat("this kernel has no tcx (Linux 6.6 added it): use "
                                        "bpfattach tc, or auto, which chooses tc clsact here",
                                        where(ifindex))};
      }
    }
    return error_of(err, "attaching the eBPF RX timestamp program to tcx ingress" + where(ifindex));
  }
  link.reset(fd);
  link_id = id_of<bpf_link_info>(fd);
  return {};
}

Result<void> RxTimestamper::State::attach_xdp() {
  const uint32_t mode_flags = xdp_mode_flags(mode);
  uint32_t existing_id = 0;
  const int queried = bpf_xdp_query_id(ifindex, static_cast<int>(mode_flags), &existing_id);
  if (queried != 0) {
    return error_of(errno_of(queried), "querying the XDP program" + where(ifindex));
  }
  if (existing_id != 0) {
    const std::string name = program_name(existing_id);
    if (name != kXdpProgramName) {
      return Error{EBUSY, strcat("another XDP program is attached", where(ifindex), " (id ",
                                 existing_id, ", \"", name, "\")")};
    }
    // Ours by name: held by a live taid's link (the kernel refuses to detach it: EBUSY), or left
    // by an older taid that attached without a link. Detach exactly that program, never one
    // attached meanwhile.
    const Fd old_program(bpf_prog_get_fd_by_id(existing_id));
    if (!old_program) {
      return error_of(errno, strcat("opening the leftover XDP program id ", existing_id));
    }
    bpf_xdp_attach_opts opts{};
    opts.sz = sizeof opts;
    opts.old_prog_fd = old_program.get();
    const int err = bpf_xdp_detach(ifindex, mode_flags | XDP_FLAGS_REPLACE, &opts);
    if (err == -EBUSY) {
      return Error{EBUSY,
                   strcat("XDP", where(ifindex), " is held by another running taid (program id ",
                          existing_id, ", through a bpf_link)")};
    }
    if (err != 0) {
      return error_of(errno_of(err),
                      strcat("removing the leftover XDP program id ", existing_id, where(ifindex)));
    }
    log_info(strcat("replaced a leftover taid XDP program (id ", existing_id,
                    ", attached without a link)", where(ifindex)));
  }

  // A link, not a netlink attach: it dies with our fd (no leftover after a crash), and while we
  // live nobody can replace it by accident.
  bpf_link_create_opts opts{};
  opts.sz = sizeof opts;
  opts.flags = mode_flags;
  const int fd = bpf_link_create(bpf_program__fd(program()), ifindex, BPF_XDP, &opts);
  if (fd < 0) {
    const int err = errno_of(fd);
    // EEXIST: a program in the other XDP mode (generic and native cannot both be active); EBUSY:
    // a link attached in the instant since the query.
    if (err == EEXIST || err == EBUSY) {
      return Error{EBUSY, strcat("another XDP program holds", where(ifindex),
                                 " (in this or the other XDP mode)")};
    }
    return error_of(err, strcat("attaching the eBPF RX timestamp program to XDP (", to_string(mode),
                                ")", where(ifindex)));
  }
  link.reset(fd);
  link_id = id_of<bpf_link_info>(fd);
  return {};
}

void RxTimestamper::State::detach() noexcept {
  if (tc_attached) {
    bpf_tc_hook hook = ingress_hook(ifindex);
    // Only our own program: if someone replaced our filter meanwhile, it is theirs now.
    bpf_tc_opts current = tc_place(tc_handle);
    if (bpf_tc_query(&hook, &current) == 0 && current.prog_id == program_id) {
      const bpf_tc_opts place = tc_place(tc_handle);
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
  if (link) {
    // Detach now, whoever else holds the link fd (a forked child would keep it alive).
    const int err = bpf_link_detach(link.get());
    if (err != 0 && err != -ENODEV && err != -ENOLINK) {
      log_warning(strcat("detaching the RX timestamp link (", to_string(mode), ")", where(ifindex),
                         ": ", std::strerror(errno_of(err))));
    }
    link.reset();
  }
}

RxTimestamper::State::~State() {
  if (skel == nullptr) return;
  // Netlink requests go to the calling thread's namespace: detach where we attached.
  Fd back;
  bool moved = false;
  if (netns && (tc_attached || owns_clsact)) {
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

Result<RxTimestamper> RxTimestamper::attach(int ifindex, AttachMode mode, uint16_t ntp_port,
                                            Stamped what) {
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
  state->skel->rodata->stamp_requests = what == Stamped::requests ? 1 : 0;
  // Load only the program this mode uses: nothing idle stays in the kernel.
  bpf_program__set_autoload(state->skel->progs.taid_rx_tc, !is_xdp(mode));
  bpf_program__set_autoload(state->skel->progs.taid_rx_xdp, is_xdp(mode));
  const int loaded = rx_timestamp_bpf__load(state->skel);
  if (loaded != 0) {
    return error_of(errno_of(loaded), "loading the eBPF RX timestamp program");
  }
  state->program_id = id_of<bpf_prog_info>(bpf_program__fd(state->program()));
  state->map_id = id_of<bpf_map_info>(bpf_map__fd(state->skel->maps.taid_rx_ts));

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
                   ", NTP port ", ntp_port, what == Stamped::requests ? " (requests)" : "",
                   ", program id ", state->program_id));
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
uint32_t RxTimestamper::tc_handle() const { return state_ ? state_->tc_handle : 0; }

}  // namespace taid::bpf
