// One NTP request on the wire: a fresh UDP socket per request (RFC 9109 port randomisation),
// connected to the server, with kernel RX timestamps, read asynchronously through Asio.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/udp.hpp>

#include <functional>
#include <memory>
#include <span>

#include "core/result.hpp"
#include "ntp/exchange.hpp"

namespace taid::net {

struct RxPrecision {
  int8_t kernel_log2 = -20;  // measured clock precision
  int8_t user_log2 = -14;
};

class UdpRequest {
public:
  // Called for every datagram that arrives on the request's socket, with the best RX stamp.
  using OnReply = std::function<void(std::span<const uint8_t>, ntp::LocalTimestamp)>;

  // Opens a new socket (a new ephemeral port), connects it to `server` and enables kernel RX
  // stamps (falling back to user-space stamps, logged once by the caller via kernel_stamps()).
  static Result<std::unique_ptr<UdpRequest>> open(boost::asio::io_context& io,
                                                  const boost::asio::ip::udp::endpoint& server,
                                                  RxPrecision precision, OnReply on_reply);

  // Sends the request and starts waiting for replies. Returns the user-space send time.
  Result<UtcTime> send(std::span<const uint8_t> bytes);
  bool kernel_stamps() const { return kernel_stamps_; }
  ~UdpRequest();

private:
  UdpRequest(boost::asio::io_context& io, RxPrecision precision, OnReply on_reply);
  void wait_readable();
  void read_all();

  boost::asio::ip::udp::socket socket_;
  RxPrecision precision_;
  OnReply on_reply_;
  bool kernel_stamps_ = false;
  // Tells a pending completion handler that this object is gone.
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace taid::net
