// Fresh-port UDP request socket with SO_TIMESTAMPING receive stamps and error-queue TX stamps.
#include "net/udp_client.hpp"

#include <linux/errqueue.h>
#include <sys/socket.h>

#include <boost/asio/post.hpp>

#include <array>
#include <cstring>

#include "core/log.hpp"
#include "net/timestamping.hpp"
#include "ntp/packet.hpp"

namespace taid::net {

namespace asio = boost::asio;

namespace {

// Messages read per readiness event from each queue. A request socket sees one reply and one TX
// stamp; the bound keeps a flood from starving the rest of the io_context (the remainder is
// read in a posted round).
constexpr int kMaxMessagesPerRound = 16;

}  // namespace

UdpRequest::UdpRequest(asio::io_context& io, RxPrecision precision, OnReply on_reply,
                       OnTransmitStamp on_transmit)
    : socket_(io),
      precision_(precision),
      on_reply_(std::move(on_reply)),
      on_transmit_(std::move(on_transmit)) {}

UdpRequest::~UdpRequest() {
  *alive_ = false;
  boost::system::error_code ignored;
  socket_.close(ignored);
}

Result<std::unique_ptr<UdpRequest>> UdpRequest::open(asio::io_context& io,
                                                     const asio::ip::udp::endpoint& server,
                                                     RxPrecision precision, OnReply on_reply,
                                                     OnTransmitStamp on_transmit) {
  std::unique_ptr<UdpRequest> request(
      new UdpRequest(io, precision, std::move(on_reply), std::move(on_transmit)));
  boost::system::error_code ec;
  request->socket_.open(server.protocol(), ec);
  if (ec) return Error{ec.value(), "socket()"};
  // connect() binds the new socket to a fresh ephemeral port: one per request (RFC 9109).
  request->socket_.connect(server, ec);
  if (ec) return Error{ec.value(), "connect() to " + server.address().to_string()};
  const int fd = request->socket_.native_handle();
  // Without it the kernel may switch RX stamping on only after this request's reply arrived.
  (void)hold_rx_timestamping_on();
  // Set before the first send: OPT_ID numbers the datagrams sent after it, from 0.
  if (request->on_transmit_ && enable_timestamping(fd, {.tx_software = true}).ok()) {
    request->kernel_stamps_ = true;
    request->kernel_tx_stamps_ = true;
  } else {
    request->kernel_stamps_ = enable_rx_timestamping(fd).ok();
  }
  return request;
}

Result<UtcTime> UdpRequest::send(std::span<const uint8_t> bytes) {
  const UtcTime sent = realtime_now();
  boost::system::error_code ec;
  socket_.send(asio::buffer(bytes.data(), bytes.size()), 0, ec);
  if (ec) return Error{ec.value(), "send()"};
  ++sent_;
  tx_stamp_delivered_ = false;
  wait_readable();
  return sent;
}

void UdpRequest::wait_readable() {
  if (waiting_) return;
  waiting_ = true;
  // A queued TX stamp raises EPOLLERR, which Asio's reactor hands to read waits as well, so one
  // wait covers both queues.
  socket_.async_wait(asio::ip::udp::socket::wait_read,
                     [this, alive = alive_](const boost::system::error_code& ec) {
                       if (!*alive) return;
                       waiting_ = false;
                       if (!ec) on_readable();
                     });
}

void UdpRequest::on_readable() {
  // The error queue first: Exchange takes a TX stamp only while its request is outstanding, so
  // the stamp must reach it before the reply that ends the request.
  const Round stamps = read_error_queue();
  if (stamps == Round::gone) return;
  const Round replies = read_replies();
  if (replies == Round::gone) return;
  if (stamps == Round::more || replies == Round::more) {
    // Epoll is edge-triggered: messages left behind raise no new event, so come back for them.
    asio::post(socket_.get_executor(), [this, alive = alive_] {
      if (*alive) on_readable();
    });
    return;
  }
  wait_readable();
}

UdpRequest::Round UdpRequest::read_error_queue() {
  if (!kernel_tx_stamps_) return Round::done;
  const auto alive = alive_;  // outlives this object if a callback destroys it
  for (int i = 0; i < kMaxMessagesPerRound; ++i) {
    // OPT_TSONLY: the message carries no payload, only the stamp and the extended error.
    alignas(cmsghdr) std::array<char, 256> control{};
    msghdr message{};
    message.msg_control = control.data();
    message.msg_controllen = control.size();
    const ssize_t n = ::recvmsg(socket_.native_handle(), &message, MSG_ERRQUEUE | MSG_DONTWAIT);
    if (n < 0) {
      if (errno != EAGAIN && errno != EWOULDBLOCK)
        log_debug(strcat("recvmsg(MSG_ERRQUEUE): ", std::strerror(errno)));
      return Round::done;
    }
    const ControlData data = parse_control_data(message);
    const std::optional<TxStamp> stamp = tx_timestamp(data);
    if (!stamp) {
      log_debug(data.truncated ? "error queue: truncated control data"
                               : "error queue: message without a TX timestamp");
      continue;
    }
    // Only the SND stamp of the datagram sent last counts: an older one (a resent request on
    // the same socket) would put T1 before the request the reply answers.
    if (stamp->kind != SCM_TSTAMP_SND || !stamp->software || sent_ == 0 || stamp->id != sent_ - 1 ||
        tx_stamp_delivered_) {
      continue;
    }
    tx_stamp_delivered_ = true;
    on_transmit_({*stamp->software, ntp::TimestampSource::kernel, precision_.kernel_log2});
    if (!*alive) return Round::gone;
  }
  return Round::more;
}

uint16_t UdpRequest::local_port() const {
  boost::system::error_code ec;
  const auto endpoint = socket_.local_endpoint(ec);
  return ec ? 0 : endpoint.port();
}

UdpRequest::Round UdpRequest::read_replies() {
  const auto alive = alive_;  // outlives this object if a callback destroys it
  for (int i = 0; i < kMaxMessagesPerRound; ++i) {
    std::array<uint8_t, 1024> data{};
    alignas(cmsghdr) std::array<char, 256> control{};
    iovec iov{data.data(), data.size()};
    msghdr message{};
    message.msg_iov = &iov;
    message.msg_iovlen = 1;
    message.msg_control = control.data();
    message.msg_controllen = control.size();
    const ssize_t n = ::recvmsg(socket_.native_handle(), &message, MSG_DONTWAIT);
    const UtcTime user_time = realtime_now();
    if (n < 0) {
      // ECONNREFUSED reports an ICMP port-unreachable from the server; the exchange treats it
      // like silence (the poll process notices), so just stop reading.
      if (errno != EAGAIN && errno != EWOULDBLOCK)
        log_debug(strcat("recvmsg: ", std::strerror(errno)));
      return Round::done;
    }
    RxStamps rx{{user_time, ntp::TimestampSource::user, precision_.user_log2}, std::nullopt};
    if (auto kernel = parse_control_data(message).software)
      rx.kernel =
          ntp::LocalTimestamp{*kernel, ntp::TimestampSource::kernel, precision_.kernel_log2};
    if (message.msg_flags & MSG_TRUNC) {  // larger than any NTP packet we accept
      ++drops_->oversized_datagrams;
      log_debug(strcat("dropped a datagram of more than ", data.size(), " bytes"));
      continue;
    }
    if (static_cast<std::size_t>(n) < ntp::kHeaderSize) {  // a truncated packet, or not NTP
      ++drops_->short_datagrams;
      log_debug(
          strcat("dropped a ", n, "-byte datagram (an NTP header has ", ntp::kHeaderSize, ")"));
      continue;
    }
    on_reply_(std::span<const uint8_t>(data.data(), static_cast<std::size_t>(n)), rx);
    if (!*alive) return Round::gone;  // the callback may have replaced this request
  }
  return Round::more;
}

}  // namespace taid::net
