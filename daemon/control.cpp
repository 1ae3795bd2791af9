// Control socket server: accept, read one line, answer with JSON, close.
#include "daemon/control.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <boost/asio/read_until.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/write.hpp>
#include <memory>

#include "core/log.hpp"

namespace taid::daemon {

namespace asio = boost::asio;
using stream = asio::local::stream_protocol;

namespace {

constexpr std::size_t kMaxRequest = 1024;
// For the request to arrive, and again for the answer to be read: a client that stops reading
// must not hold one of the few sessions for ever.
constexpr auto kClientTimeout = std::chrono::seconds(2);

// One client connection, kept alive by its own handlers.
class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(stream::socket socket, const ControlServer::Handler& handler,
          std::shared_ptr<int> live_sessions)
      : socket_(std::move(socket)),
        deadline_(socket_.get_executor()),
        handler_(handler),
        buffer_(kMaxRequest),
        live_sessions_(std::move(live_sessions)) {
    ++*live_sessions_;
  }
  ~Session() { --*live_sessions_; }

  void run() {
    arm_deadline();
    asio::async_read_until(socket_, buffer_, '\n',
                           [self = shared_from_this()](const boost::system::error_code& ec,
                                                       std::size_t n) { self->on_read(ec, n); });
  }

 private:
  enum class Phase { reading, writing, done };

  // One deadline per phase. A handler already queued when the phase moved on sees the new phase
  // (or operation_aborted from the re-arm) and leaves the socket be.
  void arm_deadline() {
    deadline_.expires_after(kClientTimeout);
    deadline_.async_wait(
        [self = shared_from_this(), phase = phase_](const boost::system::error_code& ec) {
          if (ec || self->phase_ != phase) return;
          boost::system::error_code ignored;
          if (phase == Phase::reading)
            self->socket_.cancel(ignored);  // the read ends with operation_aborted: answer that
          else
            self->socket_.close(ignored);  // the client does not read its answer: drop it
        });
  }

  void on_read(const boost::system::error_code& ec, std::size_t n) {
    phase_ = Phase::writing;
    nlohmann::json answer;
    if (ec == asio::error::not_found) {
      answer = {{"error", "request longer than 1024 bytes"}};
    } else if (ec == asio::error::operation_aborted) {
      answer = {{"error", "no complete request line within 2 s"}};
    } else if (ec && ec != asio::error::eof) {
      phase_ = Phase::done;
      deadline_.cancel();
      return;  // the client went away
    } else {
      // At the end of the stream (ec == eof) read_until reports 0 bytes but keeps what came: a
      // client that shut its side after "sources" without a newline asked for the sources.
      if (ec == asio::error::eof) n = buffer_.size();
      std::string line(asio::buffers_begin(buffer_.data()),
                       asio::buffers_begin(buffer_.data()) + static_cast<std::ptrdiff_t>(n));
      while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.pop_back();
      try {
        answer = handler_(line);
      } catch (const std::exception& e) {
        // A bug answering one request must not take the daemon down.
        log_error(strcat("control request '", line, "' failed: ", e.what()));
        answer = {{"error", strcat("internal error: ", e.what())}};
      }
    }
    // replace invalid UTF-8 rather than throwing on odd bytes echoed from a request
    out_ = answer.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
    arm_deadline();
    asio::async_write(socket_, asio::buffer(out_),
                      [self = shared_from_this()](const boost::system::error_code&, std::size_t) {
                        self->phase_ = Phase::done;
                        self->deadline_.cancel();
                        boost::system::error_code ignored;
                        self->socket_.shutdown(stream::socket::shutdown_both, ignored);
                      });
  }

  stream::socket socket_;
  asio::steady_timer deadline_;
  const ControlServer::Handler& handler_;
  asio::streambuf buffer_;
  std::string out_;
  std::shared_ptr<int> live_sessions_;
  Phase phase_ = Phase::reading;
};

// Tells a client beyond the session cap why it is closed. The socket is fresh and its send
// buffer empty, so this short write completes at once; it never waits for the client.
void refuse_busy(stream::socket& socket) {
  static const std::string busy =
      nlohmann::json{{"error", strcat("busy: ", ControlServer::kMaxSessions,
                                      " clients are being served; try again")}}
          .dump() +
      "\n";
  boost::system::error_code ignored;
  socket.non_blocking(true, ignored);
  socket.write_some(asio::buffer(busy), ignored);
  socket.shutdown(stream::socket::shutdown_both, ignored);
  socket.close(ignored);
}

}  // namespace

ControlServer::ControlServer(asio::io_context& io, std::string path, Handler handler)
    : io_(io), path_(std::move(path)), handler_(std::move(handler)), acceptor_(io), retry_(io) {}

ControlServer::~ControlServer() {
  boost::system::error_code ignored;
  try {
    retry_.cancel();  // throws only if the reactor itself failed; the socket must go regardless
  } catch (const boost::system::system_error&) {
  }
  acceptor_.close(ignored);
  if (bound_) ::unlink(path_.c_str());
}

Result<void> ControlServer::start() {
  boost::system::error_code ec;
  // A socket file left by a daemon that died is stale; one that still answers is not ours.
  stream::socket probe(io_);
  probe.connect(stream::endpoint(path_), ec);
  if (!ec) return Error::plain(strcat(path_, ": another daemon is answering on this socket"));
  // Remove only a stale *socket*: a typo in bindcmdaddress must not delete a file.
  struct stat st {};
  if (::lstat(path_.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode))
      return Error::plain(strcat(path_, ": exists and is not a socket; not replacing it"));
    ::unlink(path_.c_str());
  }
  acceptor_.open(stream(), ec);
  if (ec) return Error{ec.value(), strcat(path_, ": socket()")};
  // Only the owner and its group may talk to the daemon.
  const mode_t old_mask = ::umask(0117);
  acceptor_.bind(stream::endpoint(path_), ec);
  ::umask(old_mask);
  if (ec) return Error{ec.value(), strcat(path_, ": bind()")};
  bound_ = true;
  acceptor_.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return Error{ec.value(), strcat(path_, ": listen()")};
  accept();
  return {};
}

void ControlServer::accept() {
  acceptor_.async_accept([this](const boost::system::error_code& ec, stream::socket socket) {
    if (ec == asio::error::operation_aborted) return;
    if (ec) {
      // EMFILE and friends persist while the backlog stays readable: pause instead of spinning.
      log_warning(strcat("control socket accept: ", ec.message(), "; retrying in 100 ms"));
      retry_.expires_after(std::chrono::milliseconds(100));
      retry_.async_wait([this](const boost::system::error_code& e) {
        if (!e) accept();
      });
      return;
    }
    if (*live_sessions_ >= kMaxSessions) {
      refuse_busy(socket);  // a flood of clients must not eat the daemon's descriptors
    } else {
      std::make_shared<Session>(std::move(socket), handler_, live_sessions_)->run();
    }
    accept();
  });
}

}  // namespace taid::daemon
