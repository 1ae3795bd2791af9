// Control socket: a Unix stream socket that answers one request line with one JSON document.
//
// Protocol (kept trivial so any client — taictl, socat, a test — can speak it): the client
// writes one line ("sources\n"), the server writes one JSON document and a newline, then closes.
// The line ends at '\n' or at the end of the client's stream. A request longer than 1 KiB or not
// ended within 2 s is answered with an error; an answer the client does not read within 2 s is
// dropped with the connection; at most 16 clients are served at once, and more are told they are
// "busy" and closed; a client can never block or stop the daemon.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <nlohmann/json.hpp>

#include <boost/asio/steady_timer.hpp>

#include <functional>
#include <memory>
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

  // Sessions served at once; beyond it new clients get a "busy" error and are closed at once.
  static constexpr int kMaxSessions = 16;

 private:
  void accept();

  boost::asio::io_context& io_;
  std::string path_;
  Handler handler_;
  boost::asio::local::stream_protocol::acceptor acceptor_;
  boost::asio::steady_timer retry_;  // after an accept error
  // Sessions alive now (shared with them: a session may outlive the server's last handler).
  std::shared_ptr<int> live_sessions_ = std::make_shared<int>(0);
  bool bound_ = false;
};

}  // namespace taid::daemon
