// Control socket: a Unix stream socket that answers one request line with one JSON document.
//
// Protocol (kept trivial so any client — taictl, socat, a test — can speak it): the client
// writes one line ("sources\n"), the server writes one JSON document and a newline, then closes.
// A request longer than 1 KiB or not ended within 2 s is answered with an error; a client can
// never block or stop the daemon.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <nlohmann/json.hpp>

#include <functional>
#include <string>
#include <string_view>

#include "core/result.hpp"

namespace taid::daemon {

class ControlServer {
public:
  using Handler = std::function<nlohmann::json(std::string_view request)>;

  ControlServer(boost::asio::io_context& io, std::string path, Handler handler);
  ~ControlServer();  // closes the socket and removes its path

  // Binds (replacing a stale socket file, refusing one a live daemon answers on) and listens.
  Result<void> start();

private:
  void accept();

  boost::asio::io_context& io_;
  std::string path_;
  Handler handler_;
  boost::asio::local::stream_protocol::acceptor acceptor_;
  bool bound_ = false;
};

}  // namespace taid::daemon
