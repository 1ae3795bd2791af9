// One NTP request on the wire: a fresh UDP socket per request (RFC 9109 port randomisation),
// connected to the server, with kernel RX and TX timestamps, read asynchronously through Asio.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/udp.hpp>

#include <functional>
#include <memory>
#include <optional>
#include <span>

#include "core/result.hpp"
#include "ntp/exchange.hpp"

namespace taid::net {

// Precisions given to the stamps of a request, log2 s. kernel_log2 applies to kernel RX and TX
// stamps alike (both read CLOCK_REALTIME in the kernel).
struct RxPrecision {
  int8_t kernel_log2 = -20;  // measured clock precision
  int8_t user_log2 = -14;
};

// Every receive stamp the socket layer had for one datagram; the caller picks (and may add an
// eBPF stamp of its own). The user-space stamp is always there, taken as recvmsg() returned.
struct RxStamps {
  ntp::LocalTimestamp user;
  std::optional<ntp::LocalTimestamp> kernel;  // SO_TIMESTAMPING software stamp
};

// Datagrams the socket layer dropped before the exchange saw them, by reason. The engine keeps
// one per source across its requests (each request has a socket of its own).
struct DroppedDatagrams {
  uint64_t short_datagrams = 0;      // fewer bytes than an NTP header (48): never a reply
  uint64_t oversized_datagrams = 0;  // larger than the receive buffer (MSG_TRUNC)
};

class UdpRequest {
 public:
  // Called for every datagram that arrives on the request's socket, with its stamps. The socket
  // is connected, so the kernel delivers only datagrams from the server's address and port;
  // anything shorter than an NTP header or larger than the buffer is dropped here and counted
  // (count_drops_in).
  using OnReply = std::function<void(std::span<const uint8_t>, const RxStamps&)>;
  // Called at most once per send() with the kernel's software TX stamp of that datagram (source
  // kernel, SCM_TSTAMP_SND: taken in the driver as it hands the packet to the device). Never
  // called from inside send(), so a caller may first apply send()'s user-space time and let this
  // replace it. It comes before the reply's on_reply: the error queue is drained before the data
  // on every readiness event. Not called when the kernel gives no stamp.
  using OnTransmitStamp = std::function<void(ntp::LocalTimestamp)>;

  // Opens a new socket (a new ephemeral port), connects it to `server` and enables kernel RX
  // stamps; every reply also carries a user-space stamp (RxStamps), the caller picks.
  // With an `on_transmit` callback, kernel TX stamps are enabled as well (see kernel_tx_stamps()).
  static Result<std::unique_ptr<UdpRequest>> open(boost::asio::io_context& io,
                                                  const boost::asio::ip::udp::endpoint& server,
                                                  RxPrecision precision, OnReply on_reply,
                                                  OnTransmitStamp on_transmit = {});

  // Sends the request and starts waiting for replies and TX stamps. Returns the user-space send
  // time, the fallback T1 when no kernel TX stamp follows.
  Result<UtcTime> send(std::span<const uint8_t> bytes);
  bool kernel_stamps() const { return kernel_stamps_; }
  // The ephemeral port the kernel chose for this request (host byte order).
  uint16_t local_port() const;
  // True when the kernel accepted the TX stamping request; a stamp may still fail to arrive.
  bool kernel_tx_stamps() const { return kernel_tx_stamps_; }
  // Counts the datagrams this request drops in `drops`, which must outlive it.
  void count_drops_in(DroppedDatagrams& drops) { drops_ = &drops; }
  ~UdpRequest();

 private:
  UdpRequest(boost::asio::io_context& io, RxPrecision precision, OnReply on_reply,
             OnTransmitStamp on_transmit);
  // How a bounded read round ended. `gone`: a callback destroyed this object, so the caller
  // must not touch a member; `more`: the round's bound was reached with messages left.
  enum class Round { done, more, gone };
  void wait_readable();
  void on_readable();
  Round read_error_queue();
  Round read_replies();

  boost::asio::ip::udp::socket socket_;
  RxPrecision precision_;
  OnReply on_reply_;
  OnTransmitStamp on_transmit_;
  bool kernel_stamps_ = false;
  bool kernel_tx_stamps_ = false;
  uint32_t sent_ = 0;                // datagrams sent; the last one has OPT_ID sent_ - 1
  bool tx_stamp_delivered_ = false;  // for the last datagram sent
  bool waiting_ = false;             // an async_wait is pending; a second send() adds none
  DroppedDatagrams own_drops_;       // when the caller keeps no count
  DroppedDatagrams* drops_ = &own_drops_;
  // Tells a pending completion handler, or a read loop after a callback, that this object is gone.
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace taid::net
