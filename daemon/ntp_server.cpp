// The NTP server's sockets: recvmmsg/sendmmsg workers around lib/server's Responder.
#include "daemon/ntp_server.hpp"

#include <arpa/inet.h>
#include <linux/errqueue.h>
#include <linux/net_tstamp.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cstring>
#include <thread>

#include "core/log.hpp"
#include "core/strcat.hpp"
#include "net/timestamping.hpp"
#include "timescale/tai.hpp"

namespace taid::daemon {
namespace {

constexpr std::size_t kBatch = 64;
constexpr std::size_t kRequestBuffer = 1024;  // larger datagrams are cut and dropped as malformed
constexpr std::size_t kControlBuffer = 256;
constexpr std::size_t kErrorBuffer = 512;  // a reply with its link, IP and UDP headers

int64_t monotonic_ns() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

std::string endpoint_text(int family, const std::string& address, uint16_t port) {
  return family == AF_INET6 ? strcat("[", address, "]:", port) : strcat(address, ":", port);
}

server::ClientAddress client_of(const sockaddr_storage& from) {
  server::ClientAddress client;
  if (from.ss_family == AF_INET) {
    const auto& v4 = reinterpret_cast<const sockaddr_in&>(from);
    client.address[10] = 0xff;
    client.address[11] = 0xff;
    std::memcpy(&client.address[12], &v4.sin_addr, 4);
    client.port = ntohs(v4.sin_port);
  } else if (from.ss_family == AF_INET6) {
    const auto& v6 = reinterpret_cast<const sockaddr_in6&>(from);
    std::memcpy(client.address.data(), &v6.sin6_addr, 16);
    client.port = ntohs(v6.sin6_port);
  }
  return client;
}

// The request's destination address, to answer from it (nullopt when the kernel sent none).
struct Destination {
  int level = 0;
  int ifindex = 0;  // the interface it came in on
  in_pktinfo v4{};
  in6_pktinfo v6{};
};

std::optional<Destination> destination_of(msghdr& message) {
  for (cmsghdr* c = CMSG_FIRSTHDR(&message); c != nullptr; c = CMSG_NXTHDR(&message, c)) {
    if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO &&
        c->cmsg_len >= CMSG_LEN(sizeof(in_pktinfo))) {
      Destination d;
      d.level = IPPROTO_IP;
      std::memcpy(&d.v4, CMSG_DATA(c), sizeof d.v4);
      d.ifindex = d.v4.ipi_ifindex;
      // Answer from the address asked, out of whatever interface the route says.
      d.v4.ipi_spec_dst = d.v4.ipi_addr;
      d.v4.ipi_ifindex = 0;
      return d;
    }
    if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO &&
        c->cmsg_len >= CMSG_LEN(sizeof(in6_pktinfo))) {
      Destination d;
      d.level = IPPROTO_IPV6;
      std::memcpy(&d.v6, CMSG_DATA(c), sizeof d.v6);
      d.ifindex = static_cast<int>(d.v6.ipi6_ifindex);
      return d;  // the interface stays: link-local clients need it
    }
  }
  return std::nullopt;
}

Result<Fd> open_socket(int family, const std::string& address, uint16_t port) {
  const std::string where = endpoint_text(family, address, port);
  Fd fd(::socket(family, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd) return Error::from_errno(strcat("socket for ", where));
  const int one = 1;
  if (::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0)
    return Error::from_errno(strcat("SO_REUSEPORT on ", where));
  // Room for bursts while a worker is busy with a batch (the kernel caps it at rmem_max; a
  // smaller buffer only means earlier drops, so a refusal is no error).
  const int receive_buffer = 1 << 20;
  (void)::setsockopt(fd.get(), SOL_SOCKET, SO_RCVBUF, &receive_buffer, sizeof receive_buffer);
  // Software RX stamps for every request; software TX stamps are asked per reply (a
  // SCM_TIMESTAMPING cmsg on the send, Linux >= 4.13) and come back with the packet (see the
  // header). SOFTWARE is the reporting flag both need.
  const uint32_t flags = SOF_TIMESTAMPING_RX_SOFTWARE | SOF_TIMESTAMPING_SOFTWARE;
  if (::setsockopt(fd.get(), SOL_SOCKET, SO_TIMESTAMPING, &flags, sizeof flags) != 0)
    return Error::from_errno(strcat("SO_TIMESTAMPING on ", where));
  if (family == AF_INET) {
    if (::setsockopt(fd.get(), IPPROTO_IP, IP_PKTINFO, &one, sizeof one) != 0)
      return Error::from_errno(strcat("IP_PKTINFO on ", where));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    if (::inet_pton(AF_INET, address.c_str(), &a.sin_addr) != 1)
      return Error::plain(strcat("bindaddress '", address, "' is not an IPv4 address"));
    if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&a), sizeof a) != 0)
      return Error::from_errno(strcat("bind ", where));
  } else {
    if (::setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) != 0)
      return Error::from_errno(strcat("IPV6_V6ONLY on ", where));
    if (::setsockopt(fd.get(), IPPROTO_IPV6, IPV6_RECVPKTINFO, &one, sizeof one) != 0)
      return Error::from_errno(strcat("IPV6_RECVPKTINFO on ", where));
    sockaddr_in6 a{};
    a.sin6_family = AF_INET6;
    a.sin6_port = htons(port);
    if (::inet_pton(AF_INET6, address.c_str(), &a.sin6_addr) != 1)
      return Error::plain(strcat("bindaddress '", address, "' is not an IPv6 address"));
    if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&a), sizeof a) != 0)
      return Error::from_errno(strcat("bind ", where));
  }
  return fd;
}

// The port the kernel gave a socket (bound to port 0 in tests).
uint16_t bound_port(int fd) {
  sockaddr_storage a{};
  socklen_t length = sizeof a;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &length) != 0) return 0;
  if (a.ss_family == AF_INET) return ntohs(reinterpret_cast<sockaddr_in&>(a).sin_port);
  return ntohs(reinterpret_cast<sockaddr_in6&>(a).sin6_port);
}

bool host_has_ipv6() {
  Fd probe(::socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  return probe.valid();
}

}  // namespace

struct NtpServer::Worker {
  std::vector<Socket> sockets;
  std::thread thread;

  // recvmmsg's buffers, reused for every batch.
  std::array<std::array<uint8_t, kRequestBuffer>, kBatch> data{};
  std::array<sockaddr_storage, kBatch> from{};
  std::array<iovec, kBatch> iov{};
  alignas(cmsghdr) std::array<std::array<char, kControlBuffer>, kBatch> control{};
  std::array<mmsghdr, kBatch> in{};
  // sendmmsg's: the replies, their destinations and source-address cmsgs.
  std::array<server::Reply, kBatch> replies{};
  std::array<iovec, kBatch> out_iov{};
  // Each buffer's size is a multiple of cmsghdr's alignment, so every one of them is aligned.
  alignas(cmsghdr) std::array<std::array<char, CMSG_SPACE(sizeof(in6_pktinfo)) + CMSG_SPACE(sizeof(uint32_t))>,
             kBatch>
      out_control{};
  std::array<mmsghdr, kBatch> out{};
  // The error queue's.
  std::array<std::array<uint8_t, kErrorBuffer>, kBatch> error_data{};
  alignas(cmsghdr) std::array<std::array<char, kControlBuffer>, kBatch> error_control{};
  std::array<iovec, kBatch> error_iov{};
  std::array<mmsghdr, kBatch> errors{};
};

Result<std::unique_ptr<NtpServer>> NtpServer::open(NtpServerSettings settings,
                                                   const server::ServerClockState& clock,
                                                   RequestStampLookup bpf_stamps,
                                                   OverLimitLookup over_limit) {
  std::unique_ptr<NtpServer> server(new NtpServer());
  server->settings_ = std::move(settings);
  server->bpf_stamps_ = std::move(bpf_stamps);
  server->over_limit_ = std::move(over_limit);
  server->responder_.emplace(server->settings_.responder);
  server->chooser_.emplace(server->settings_.stamp_policy);
  server->clock_ = clock;
  // The kernel stamps packets only once some socket's wish for RX stamps has taken effect (a
  // static key switched in deferred work): without this the first requests arrive unstamped.
  // UdpRequest::open() does the same for the client; a failure leaves user-space stamps.
  if (auto held = net::hold_rx_timestamping_on(); !held)
    log_warning(strcat("NTP server: kernel RX timestamps: ", held.error().message()));
  server->stop_ = Fd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!server->stop_) return Error::from_errno("eventfd for the NTP server");

  std::vector<std::pair<int, std::string>> binds;
  if (server->settings_.bind_addresses.empty()) {
    binds.emplace_back(AF_INET, "0.0.0.0");
    if (host_has_ipv6()) binds.emplace_back(AF_INET6, "::");
  } else {
    for (const std::string& address : server->settings_.bind_addresses) {
      in_addr v4{};
      binds.emplace_back(::inet_pton(AF_INET, address.c_str(), &v4) == 1 ? AF_INET : AF_INET6,
                         address);
    }
  }
  int workers = server->settings_.workers;
  if (workers <= 0) workers = std::max(1u, std::thread::hardware_concurrency());
  server->counters_.workers = workers;

  // Port 0 (tests): the first socket's port is what the others bind, so all workers share it.
  uint16_t port = server->settings_.port;
  for (int w = 0; w < workers; ++w) {
    auto worker = std::make_unique<Worker>();
    for (std::size_t b = 0; b < binds.size(); ++b) {
      auto fd = open_socket(binds[b].first, binds[b].second, port);
      if (!fd) return fd.error();
      Socket socket;
      socket.family = binds[b].first;
      socket.port = bound_port(fd->get());
      socket.fd = std::move(*fd);
      if (port == 0) port = socket.port;
      if (w == 0)
        server->counters_.listening.push_back(endpoint_text(socket.family, binds[b].second,
                                                            socket.port));
      worker->sockets.push_back(std::move(socket));
    }
    server->workers_.push_back(std::move(worker));
  }
  for (auto& worker : server->workers_) {
    Worker* w = worker.get();
    NtpServer* self = server.get();
    w->thread = std::thread([self, w] { self->run(*w); });
  }
  return server;
}

NtpServer::~NtpServer() {
  const uint64_t one = 1;
  if (stop_ && ::write(stop_.get(), &one, sizeof one) < 0) log_error("NTP server: cannot stop");
  for (auto& worker : workers_) {
    if (worker->thread.joinable()) worker->thread.join();
  }
}

void NtpServer::set_clock(const server::ServerClockState& clock) {
  std::lock_guard lock(mutex_);
  clock_ = clock;
}

NtpServerStats NtpServer::stats() const {
  std::lock_guard lock(mutex_);
  NtpServerStats stats = counters_;
  stats.responder = responder_->stats();
  stats.stamp_path = chooser_->current();
  stats.stamp_decided = chooser_->decided();
  stats.stamp_lateness = chooser_->lateness();
  return stats;
}

void NtpServer::run(Worker& worker) {
  std::vector<pollfd> fds;
  fds.push_back({stop_.get(), POLLIN, 0});
  for (const Socket& socket : worker.sockets) fds.push_back({socket.fd.get(), POLLIN, 0});
  for (;;) {
    const int ready = ::poll(fds.data(), fds.size(), -1);
    if (ready < 0) {
      if (errno == EINTR) continue;
      log_error(strcat("NTP server: poll: ", std::strerror(errno)));
      return;
    }
    if (fds[0].revents != 0) return;
    for (std::size_t i = 1; i < fds.size(); ++i) {
      Socket& socket = worker.sockets[i - 1];
      if (fds[i].revents & POLLERR) read_tx_stamps(worker, socket);
      if (fds[i].revents & POLLIN) receive_batch(worker, socket);
    }
  }
}

void NtpServer::receive_batch(Worker& worker, Socket& socket) {
  for (std::size_t i = 0; i < kBatch; ++i) {
    worker.iov[i] = {worker.data[i].data(), worker.data[i].size()};
    msghdr& m = worker.in[i].msg_hdr;
    m = {};
    m.msg_name = &worker.from[i];
    m.msg_namelen = sizeof worker.from[i];
    m.msg_iov = &worker.iov[i];
    m.msg_iovlen = 1;
    m.msg_control = worker.control[i].data();
    m.msg_controllen = worker.control[i].size();
    worker.in[i].msg_len = 0;
  }
  const int received = ::recvmmsg(socket.fd.get(), worker.in.data(), kBatch, MSG_DONTWAIT, nullptr);
  if (received <= 0) {
    if (received < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
      std::lock_guard lock(mutex_);
      ++counters_.receive_errors;
    }
    return;
  }
  const UtcTime user_rx = realtime_now();
  const int64_t now_monotonic = monotonic_ns();

  // Every path's stamp first, outside the lock (the eBPF lookup is a syscall).
  std::array<net::RxCandidates, kBatch> candidates{};
  std::array<server::ClientAddress, kBatch> clients{};
  std::array<std::optional<Destination>, kBatch> destinations{};
  std::array<int, kBatch> ifindex{};
  std::array<bool, kBatch> over_limit{};
  const int8_t kernel_precision = settings_.kernel_precision_log2;
  bool want_bpf = false;
  if (bpf_stamps_) {
    std::lock_guard lock(mutex_);
    want_bpf = !chooser_->decided() || chooser_->current() == ntp::TimestampSource::bpf;
  }
  // The kernel's TAI offset around the lookups, for their CLOCK_TAI stamps (applied_tai_offset:
  // when it changed by one second in between, a leap; each stamp on its side of the instant).
  timescale::KernelTaiOffset tai_offset;
  std::optional<int32_t> offset_before;
  if (want_bpf) {
    if (auto o = tai_offset.tai_offset_s()) offset_before = *o;
  }
  std::array<std::optional<TaiTime>, kBatch> bpf_tai{};
  const int8_t user_precision = std::max(net::kUserStampPrecisionLog2, kernel_precision);
  for (int i = 0; i < received; ++i) {
    const auto k = static_cast<std::size_t>(i);
    msghdr& m = worker.in[k].msg_hdr;
    clients[k] = client_of(worker.from[k]);
    destinations[k] = destination_of(m);
    ifindex[k] = destinations[k] ? destinations[k]->ifindex : 0;
    over_limit[k] = over_limit_ && over_limit_(clients[k], ifindex[k], now_monotonic);
    candidates[k] = {};
    candidates[k][ntp::TimestampSource::user] =
        ntp::LocalTimestamp{user_rx, ntp::TimestampSource::user, user_precision};
    const net::ControlData control = net::parse_control_data(m);
    if (control.software)
      candidates[k][ntp::TimestampSource::kernel] =
          ntp::LocalTimestamp{*control.software, ntp::TimestampSource::kernel, kernel_precision};
    if (want_bpf && offset_before)
      bpf_tai[k] = bpf_stamps_(clients[k], socket.port, ifindex[k],
                               std::span<const uint8_t>(worker.data[k].data(), worker.in[k].msg_len));
  }
  if (want_bpf && offset_before) {
    const auto offset_after = tai_offset.tai_offset_s();
    for (int i = 0; offset_after && i < received; ++i) {
      const auto k = static_cast<std::size_t>(i);
      if (!bpf_tai[k]) continue;
      const int32_t applied =
          timescale::applied_tai_offset(*bpf_tai[k], *offset_before, *offset_after);
      candidates[k][ntp::TimestampSource::bpf] = ntp::LocalTimestamp{
          bpf_tai[k]->to_utc(Duration::from_s(applied)), ntp::TimestampSource::bpf,
          kernel_precision};
    }
  }

  std::size_t replies = 0;
  {
    std::lock_guard lock(mutex_);
    for (int i = 0; i < received; ++i) {
      const auto k = static_cast<std::size_t>(i);
      msghdr& m = worker.in[k].msg_hdr;
      // A datagram longer than the buffer arrives cut: no NTP request we answer is that long.
      if (m.msg_flags & MSG_TRUNC) {
        ++counters_.oversized;
        continue;
      }
      const ntp::LocalTimestamp t2 = chooser_->pick(candidates[k]);
      ++(t2.source == ntp::TimestampSource::bpf      ? counters_.rx_bpf_stamps
         : t2.source == ntp::TimestampSource::kernel ? counters_.rx_kernel_stamps
                                                     : counters_.rx_user_stamps);
      const server::Request request{
          std::span<const uint8_t>(worker.data[k].data(), worker.in[k].msg_len), clients[k],
          NtpTimestamp::from_utc(t2.time), now_monotonic, over_limit[k]};
      auto decided = responder_->respond(request, clock_);
      if (!std::holds_alternative<server::Reply>(decided)) continue;
      // Only requests good enough to answer teach the chooser (as only accepted replies do the
      // client's): a forged packet must not steer it.
      chooser_->record(candidates[k]);
      worker.replies[replies] = std::get<server::Reply>(decided);
      msghdr& o = worker.out[replies].msg_hdr;
      o = {};
      o.msg_name = &worker.from[k];
      o.msg_namelen = m.msg_namelen;
      worker.out_iov[replies] = {worker.replies[replies].bytes.data(),
                                 worker.replies[replies].size};
      o.msg_iov = &worker.out_iov[replies];
      o.msg_iovlen = 1;
      // A kernel TX stamp only where a next request may be interleaved: the request's origin
      // is set (an interleaving client echoes our last T2 there; chrony, ntpdig and taid send 0
      // in basic mode). Each stamp costs a packet clone and an error-queue read. A client that
      // starts interleaving gets one more basic reply first: its origin-0 request went unstamped.
      bool origin_set = false;
      for (std::size_t b = 24; b < 32; ++b) origin_set = origin_set || worker.data[k][b] != 0;
      auto& buffer = worker.out_control[replies];
      buffer.fill(0);
      o.msg_control = buffer.data();
      o.msg_controllen = buffer.size();
      std::size_t used = 0;
      cmsghdr* c = CMSG_FIRSTHDR(&o);
      if (const auto& destination = destinations[k]) {
        if (destination->level == IPPROTO_IP) {
          c->cmsg_level = IPPROTO_IP;
          c->cmsg_type = IP_PKTINFO;
          c->cmsg_len = CMSG_LEN(sizeof(in_pktinfo));
          std::memcpy(CMSG_DATA(c), &destination->v4, sizeof destination->v4);
          used += CMSG_SPACE(sizeof(in_pktinfo));
        } else {
          c->cmsg_level = IPPROTO_IPV6;
          c->cmsg_type = IPV6_PKTINFO;
          c->cmsg_len = CMSG_LEN(sizeof(in6_pktinfo));
          std::memcpy(CMSG_DATA(c), &destination->v6, sizeof destination->v6);
          used += CMSG_SPACE(sizeof(in6_pktinfo));
        }
        // Not CMSG_NXTHDR: it reads the next header's length, which is not written yet.
        c = reinterpret_cast<cmsghdr*>(buffer.data() + used);
      }
      if (origin_set) {
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SO_TIMESTAMPING;
        c->cmsg_len = CMSG_LEN(sizeof(uint32_t));
        const uint32_t tx = SOF_TIMESTAMPING_TX_SOFTWARE;
        std::memcpy(CMSG_DATA(c), &tx, sizeof tx);
        used += CMSG_SPACE(sizeof(uint32_t));
      }
      o.msg_controllen = used;
      if (used == 0) o.msg_control = nullptr;
      ++replies;
    }
    // T3 as late as the batch allows: one read, right before the send.
    const NtpTimestamp t3 = NtpTimestamp::from_utc(realtime_now());
    for (std::size_t r = 0; r < replies; ++r) {
      server::Reply& reply = worker.replies[r];
      if (reply.needs_transmit)
        responder_->patch_transmit(reply, t3);
      else if (reply.interleaved)  // until the kernel's stamp of it replaces this read
        responder_->on_transmit_stamp(reply.receive_time, t3);
    }
  }
  std::size_t sent = 0;
  while (sent < replies) {
    const int n = ::sendmmsg(socket.fd.get(), worker.out.data() + sent,
                             static_cast<unsigned>(replies - sent), MSG_DONTWAIT);
    if (n > 0) {
      sent += static_cast<std::size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    // This datagram is refused (its destination unreachable, buffers full): count it, go on.
    std::lock_guard lock(mutex_);
    ++counters_.send_errors;
    ++sent;
  }
}

void NtpServer::read_tx_stamps(Worker& worker, Socket& socket) {
  for (int round = 0; round < 4; ++round) {
    for (std::size_t i = 0; i < kBatch; ++i) {
      worker.error_iov[i] = {worker.error_data[i].data(), worker.error_data[i].size()};
      msghdr& m = worker.errors[i].msg_hdr;
      m = {};
      m.msg_iov = &worker.error_iov[i];
      m.msg_iovlen = 1;
      m.msg_control = worker.error_control[i].data();
      m.msg_controllen = worker.error_control[i].size();
    }
    const int n = ::recvmmsg(socket.fd.get(), worker.errors.data(), kBatch,
                             MSG_ERRQUEUE | MSG_DONTWAIT, nullptr);
    if (n <= 0) return;
    std::lock_guard lock(mutex_);
    for (int i = 0; i < n; ++i) {
      const auto k = static_cast<std::size_t>(i);
      msghdr& m = worker.errors[k].msg_hdr;
      const auto stamp = net::tx_timestamp(net::parse_control_data(m));
      if (!stamp || !stamp->software || stamp->kind != SCM_TSTAMP_SND) continue;
      // The reply is the packet's UDP payload, its last 48 bytes (nothing follows it on TX).
      const std::size_t length = worker.errors[k].msg_len;
      if ((m.msg_flags & MSG_TRUNC) || length < ntp::kHeaderSize) continue;
      const uint8_t* reply = worker.error_data[k].data() + length - ntp::kHeaderSize;
      if ((reply[0] & 0x7) != static_cast<uint8_t>(ntp::Mode::server)) continue;
      uint64_t receive_raw = 0;
      for (int b = 0; b < 8; ++b) receive_raw = (receive_raw << 8) | reply[32 + b];
      responder_->on_transmit_stamp(NtpTimestamp::from_raw(receive_raw),
                                    NtpTimestamp::from_utc(*stamp->software));
      ++counters_.tx_stamps;
    }
    if (static_cast<std::size_t>(n) < kBatch) return;
  }
}

}  // namespace taid::daemon
