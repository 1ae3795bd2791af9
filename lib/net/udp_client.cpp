// Fresh-port UDP request socket with SO_TIMESTAMPING receive stamps.
#include "net/udp_client.hpp"

#include <sys/socket.h>

#include <array>

#include "core/log.hpp"
#include "net/timestamping.hpp"

namespace taid::net {

namespace asio = boost::asio;

UdpRequest::UdpRequest(asio::io_context& io, RxPrecision precision, OnReply on_reply)
    : socket_(io), precision_(precision), on_reply_(std::move(on_reply)) {}

UdpRequest::~UdpRequest() {
  *alive_ = false;
  boost::system::error_code ignored;
  socket_.close(ignored);
}

Result<std::unique_ptr<UdpRequest>> UdpRequest::open(asio::io_context& io,
                                                     const asio::ip::udp::endpoint& server,
                                                     RxPrecision precision, OnReply on_reply) {
  std::unique_ptr<UdpRequest> request(new UdpRequest(io, precision, std::move(on_reply)));
  boost::system::error_code ec;
  request->socket_.open(server.protocol(), ec);
  if (ec) return Error{ec.value(), "socket()"};
  // Binding to port 0 lets the kernel pick a fresh ephemeral port for every request.
  request->socket_.connect(server, ec);
  if (ec) return Error{ec.value(), "connect() to " + server.address().to_string()};
  request->kernel_stamps_ = enable_rx_timestamping(request->socket_.native_handle()).ok();
  return request;
}

Result<UtcTime> UdpRequest::send(std::span<const uint8_t> bytes) {
  const UtcTime sent = realtime_now();
  boost::system::error_code ec;
  socket_.send(asio::buffer(bytes.data(), bytes.size()), 0, ec);
  if (ec) return Error{ec.value(), "send()"};
  wait_readable();
  return sent;
}

void UdpRequest::wait_readable() {
  socket_.async_wait(asio::ip::udp::socket::wait_read,
                     [this, alive = alive_](const boost::system::error_code& ec) {
                       if (!*alive || ec) return;
                       read_all();
                       wait_readable();
                     });
}

void UdpRequest::read_all() {
  for (;;) {
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
      return;
    }
    ntp::LocalTimestamp rx{user_time, ntp::TimestampSource::user, precision_.user_log2};
    if (auto kernel = software_rx_timestamp(message))
      rx = {*kernel, ntp::TimestampSource::kernel, precision_.kernel_log2};
    if (message.msg_flags & MSG_TRUNC) continue;  // larger than any NTP packet we accept
    on_reply_(std::span<const uint8_t>(data.data(), static_cast<std::size_t>(n)), rx);
    if (!*alive_) return;  // the callback may have replaced this request
  }
}

}  // namespace taid::net
