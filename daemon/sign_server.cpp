// Signing socket server: accept, read request frames, batch them, seal, reply (see the header).
#include "daemon/sign_server.hpp"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <optional>
#include <unordered_set>

#include "core/file_write.hpp"
#include "core/log.hpp"
#include "core/strcat.hpp"
#include "stamp/key_store.hpp"
#include "stamp/serial_store.hpp"

namespace taid::daemon {

namespace asio = boost::asio;
using stream = asio::local::stream_protocol;
using stamp::Bytes;
using stamp::ReplyCode;

namespace {

class Session;

Bytes error_frame(ReplyCode code, std::string_view text) {
  return stamp::frame(stamp::encode_error_reply_body(code, text));
}

// The public half next to the key, world-readable, so that clients and verifiers can get it
// without the daemon's privileges. Written under a temporary name and renamed into place.
Result<void> write_public_key(const std::string& key_path, const stamp::PublicKey& key) {
  // World-readable whatever the umask says.
  return write_file_atomically(key_path + ".pub", key.pem(), 0644);
}

}  // namespace

struct SignServer::Impl : std::enable_shared_from_this<SignServer::Impl> {
  Impl(asio::io_context& io_context, SignSettings s, VerdictFunction v, stamp::LoadedKey k,
       stamp::SerialStore store)
      : io(io_context),
        settings(std::move(s)),
        verdict(std::move(v)),
        key(std::move(k.key)),
        key_created(k.created),
        serials(std::move(store)),
        batcher(settings.max_batch),
        acceptor(io_context),
        batch_timer(io_context),
        retry(io_context) {}

  Result<void> bind();
  void accept();
  void refuse(stream::socket& socket, ReplyCode code, std::string_view text);
  void submit(const std::shared_ptr<Session>& session, stamp::WireRequest request);
  void seal();
  void stop();

  asio::io_context& io;
  SignSettings settings;
  VerdictFunction verdict;
  stamp::SigningKey key;
  bool key_created;
  stamp::SerialStore serials;
  stamp::Batcher batcher;
  // The sessions of the requests in `batcher`, by request_id (their index here). A session
  // waiting for its batch has no I/O in flight: this is what keeps it alive.
  std::vector<std::shared_ptr<Session>> pending;
  std::uint64_t batch_generation = 0;  // a timer handler of a batch already sealed does nothing
  stream::acceptor acceptor;
  asio::steady_timer batch_timer;
  asio::steady_timer retry;               // after an accept error
  std::unordered_set<Session*> sessions;  // alive now; closed by stop()
  SignCounters counters;
  bool bound = false;
  bool stopped = false;
};

namespace {

// One client connection, kept alive by its own handlers. Reads a frame, hands the request to the
// batch, writes the reply, reads the next: one request in flight at a time.
class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(std::shared_ptr<SignServer::Impl> server, stream::socket socket)
      : server_(std::move(server)),
        socket_(std::move(socket)),
        deadline_(socket_.get_executor()),
        decoder_(stamp::kMaxRequestBody) {
    server_->sessions.insert(this);
  }
  ~Session() { server_->sessions.erase(this); }

  void start() { begin_reading(); }

  // The reply to the request in flight (or an error); close afterwards if `close`.
  void deliver(Bytes framed, bool close) {
    if (phase_ == Phase::closed) return;
    phase_ = Phase::writing;
    close_after_write_ = close;
    out_ = std::move(framed);
    arm_deadline();
    asio::async_write(socket_, asio::buffer(out_),
                      [self = shared_from_this()](const boost::system::error_code& ec,
                                                  std::size_t) { self->on_written(ec); });
  }

  void close() {
    phase_ = Phase::closed;
    boost::system::error_code ignored;
    deadline_.cancel();
    socket_.shutdown(stream::socket::shutdown_both, ignored);
    socket_.close(ignored);
  }

 private:
  enum class Phase { reading, waiting, writing, closed };

  // The deadline runs from the start of reading a request to its last byte, and again from the
  // start of writing a reply to its end; not while the request waits for its batch.
  void arm_deadline() {
    const std::uint64_t generation = ++deadline_generation_;
    deadline_.expires_after(server_->settings.read_timeout);
    deadline_.async_wait(
        [self = shared_from_this(), generation](const boost::system::error_code& ec) {
          if (ec || generation != self->deadline_generation_) return;
          if (self->phase_ == Phase::reading) {
            self->timed_out_ = true;
            boost::system::error_code ignored;
            self->socket_.cancel(ignored);  // the read ends with operation_aborted: answer there
          } else if (self->phase_ == Phase::writing) {
            ++self->server_->counters.timeouts;
            self->close();  // the client does not read its reply
          }
        });
  }

  void begin_reading() {
    phase_ = Phase::reading;
    arm_deadline();
    process_buffered();
  }

  void process_buffered() {
    std::optional<Bytes> body = decoder_.next();
    if (decoder_.oversized()) {  // known as soon as the length arrives: no need to wait for more
      ++server_->counters.malformed;
      deliver(error_frame(ReplyCode::malformed,
                          strcat("frame longer than ", stamp::kMaxRequestBody, " bytes")),
              true);
      return;
    }
    if (body) {
      stamp::DecodedRequest decoded = stamp::decode_request_body(*body);
      if (decoded.code != ReplyCode::ok) {
        ++server_->counters.malformed;
        // A bad digest length is a well-framed request: the connection can go on. Anything
        // else means the stream cannot be trusted to be framed right any more.
        deliver(error_frame(decoded.code, decoded.error), decoded.code != ReplyCode::bad_digest);
        return;
      }
      phase_ = Phase::waiting;
      ++deadline_generation_;
      deadline_.cancel();
      server_->submit(shared_from_this(), std::move(decoded.request));
      return;
    }
    socket_.async_read_some(asio::buffer(in_),
                            [self = shared_from_this()](const boost::system::error_code& ec,
                                                        std::size_t n) { self->on_read(ec, n); });
  }

  void on_read(const boost::system::error_code& ec, std::size_t n) {
    if (phase_ != Phase::reading) return;  // closed meanwhile
    if (timed_out_) {
      ++server_->counters.timeouts;
      if (decoder_.buffered() > 0 || n > 0) {
        deliver(error_frame(ReplyCode::malformed,
                            strcat("request not complete within ",
                                   server_->settings.read_timeout.count(), " ms")),
                true);
      } else {
        close();  // idle: nothing to answer
      }
      return;
    }
    if (ec) {  // eof or an error: the client is gone (a partial frame gets no reply)
      close();
      return;
    }
    decoder_.feed(stamp::ByteView(in_.data(), n));
    process_buffered();
  }

  void on_written(const boost::system::error_code& ec) {
    if (phase_ != Phase::writing) return;
    if (ec || close_after_write_) {
      close();
      return;
    }
    begin_reading();
  }

  std::shared_ptr<SignServer::Impl> server_;
  stream::socket socket_;
  asio::steady_timer deadline_;
  stamp::FrameDecoder decoder_;
  std::array<std::uint8_t, 512> in_{};
  Bytes out_;
  Phase phase_ = Phase::reading;
  std::uint64_t deadline_generation_ = 0;
  bool close_after_write_ = false;
  bool timed_out_ = false;
};

}  // namespace

Result<void> SignServer::Impl::bind() {
  const std::string& path = settings.socket_path;
  boost::system::error_code ec;
  // A socket file left by a daemon that died is stale; one that still answers is not ours.
  stream::socket probe(io);
  probe.connect(stream::endpoint(path), ec);
  if (!ec) return Error::plain(strcat(path, ": another process is answering on this socket"));
  // Remove only a stale *socket*: a typo in signsocket must not delete a file.
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode))
      return Error::plain(strcat(path, ": exists and is not a socket; not replacing it"));
    ::unlink(path.c_str());
  }
  acceptor.open(stream(), ec);
  if (ec) return Error{ec.value(), strcat(path, ": socket()")};
  acceptor.bind(stream::endpoint(path), ec);
  if (ec) return Error{ec.value(), strcat(path, ": bind()")};
  bound = true;
  // chmod after bind rather than umask around it: the umask is the whole process's, and the
  // socket is not yet listening, so nobody can connect under the interim mode.
  if (::chmod(path.c_str(), settings.socket_mode) != 0)
    return Error::from_errno(strcat(path, ": chmod"));
  acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return Error{ec.value(), strcat(path, ": listen()")};
  return {};
}

void SignServer::Impl::refuse(stream::socket& socket, ReplyCode code, std::string_view text) {
  // The socket is fresh and its send buffer empty, so this short write completes at once; it
  // never waits for the client.
  ++counters.rejected;
  const Bytes reply = error_frame(code, text);
  boost::system::error_code ignored;
  socket.non_blocking(true, ignored);
  socket.write_some(asio::buffer(reply), ignored);
  socket.shutdown(stream::socket::shutdown_both, ignored);
  socket.close(ignored);
}

void SignServer::Impl::accept() {
  acceptor.async_accept(
      [self = shared_from_this()](const boost::system::error_code& ec, stream::socket socket) {
        if (self->stopped || ec == asio::error::operation_aborted) return;
        if (ec) {
          // EMFILE and friends persist while the backlog stays readable: pause instead of spinning.
          log_warning(strcat("sign socket accept: ", ec.message(), "; retrying in 100 ms"));
          self->retry.expires_after(std::chrono::milliseconds(100));
          self->retry.async_wait([self](const boost::system::error_code& e) {
            if (!e && !self->stopped) self->accept();
          });
          return;
        }
        if (self->sessions.size() >= self->settings.max_connections) {
          self->refuse(socket, ReplyCode::busy,
                       strcat("busy: ", self->settings.max_connections, " connections open"));
        } else if (!self->settings.allowed_uids.empty()) {
          struct ucred cred {};
          socklen_t len = sizeof cred;
          const auto& allowed = self->settings.allowed_uids;
          if (::getsockopt(socket.native_handle(), SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
            self->refuse(socket, ReplyCode::not_allowed, "cannot tell the caller's uid");
          } else if (std::find(allowed.begin(), allowed.end(), cred.uid) == allowed.end()) {
            self->refuse(socket, ReplyCode::not_allowed,
                         strcat("uid ", cred.uid, " is not allowed to sign (signallow)"));
          } else {
            std::make_shared<Session>(self, std::move(socket))->start();
          }
        } else {
          std::make_shared<Session>(self, std::move(socket))->start();
        }
        self->accept();
      });
}

void SignServer::Impl::submit(const std::shared_ptr<Session>& session, stamp::WireRequest request) {
  if (stopped) return;
  auto added = batcher.add(stamp::SignRequest{request.algorithm, std::move(request.digest),
                                              std::move(request.nonce), pending.size()});
  if (!added) {  // decode_request_body checked the same; kept for safety
    ++counters.malformed;
    session->deliver(error_frame(ReplyCode::bad_digest, added.error().context), false);
    return;
  }
  pending.push_back(session);
  if (batcher.full()) {
    seal();
  } else if (pending.size() == 1) {
    batch_timer.expires_after(settings.batch_window);
    batch_timer.async_wait([self = shared_from_this(),
                            generation = batch_generation](const boost::system::error_code& ec) {
      if (!ec && !self->stopped && generation == self->batch_generation) self->seal();
    });
  }
}

void SignServer::Impl::seal() {
  if (pending.empty()) return;
  ++batch_generation;
  batch_timer.cancel();
  std::vector<std::shared_ptr<Session>> waiting;
  waiting.swap(pending);
  stamp::Batcher batch(settings.max_batch);
  std::swap(batch, batcher);

  auto refuse_all = [&](ReplyCode code, const std::string& text) {
    counters.refused += waiting.size();
    const Bytes reply = error_frame(code, text);
    for (auto& session : waiting) session->deliver(reply, false);
  };

  TimeVerdict time;
  try {
    time = verdict();
  } catch (const std::exception& e) {
    log_error(strcat("sign: the time verdict failed: ", e.what()));
    refuse_all(ReplyCode::internal, "internal error reading the time");
    return;
  }
  if (const auto* refusal = std::get_if<SignRefusal>(&time)) {
    refuse_all(refusal->code, refusal->text);
    return;
  }
  auto first = serials.reserve(waiting.size());
  if (!first) {
    log_error(strcat("sign: serial store: ", first.error().message()));
    refuse_all(ReplyCode::internal, "serial store failed");
    return;
  }
  auto tokens = batch.seal(std::get<stamp::BatchTime>(time), *first, key);
  if (!tokens) {
    log_error(strcat("sign: seal: ", tokens.error().message()));
    refuse_all(ReplyCode::internal, strcat("cannot sign: ", tokens.error().message()));
    return;
  }
  ++counters.batches;
  for (auto& issued : *tokens) {
    ++counters.tokens;
    waiting[issued.request_id]->deliver(
        stamp::frame(stamp::encode_reply_body(ReplyCode::ok, issued.token)), false);
  }
}

void SignServer::Impl::stop() {
  stopped = true;
  boost::system::error_code ignored;
  acceptor.close(ignored);
  batch_timer.cancel();
  retry.cancel();
  // Closing may destroy a session (and erase it from the set): iterate over a copy.
  std::vector<Session*> open(sessions.begin(), sessions.end());
  for (Session* session : open) session->close();
  pending.clear();
  if (bound) ::unlink(settings.socket_path.c_str());
  bound = false;
}

Result<std::unique_ptr<SignServer>> SignServer::open(asio::io_context& io, SignSettings settings,
                                                     VerdictFunction verdict) {
  if (settings.socket_path.empty() || settings.key_path.empty() || settings.serial_path.empty())
    return Error::plain("signing needs signsocket, signkey and signserials");
  if (settings.max_batch == 0 || settings.max_batch > stamp::kMaxBatchRequests)
    return Error::plain(strcat("sign batch size must be 1 .. ", stamp::kMaxBatchRequests));
  if (settings.max_connections == 0) return Error::plain("sign max connections must be > 0");
  if (!verdict) return Error::plain("sign server needs a time verdict function");
  auto key = stamp::load_or_create_signing_key(settings.key_path);
  if (!key) return Error{key.error().errno_value, strcat("signkey: ", key.error().context)};
  auto serials = stamp::SerialStore::open(settings.serial_path);
  if (!serials)
    return Error{serials.error().errno_value, strcat("signserials: ", serials.error().context)};
  if (auto pub = write_public_key(settings.key_path, key->key.public_key()); !pub) {
    // Signing works without it; clients then need the key some other way (taistamp pubkey).
    log_warning(strcat("sign: cannot write the public key: ", pub.error().message()));
  }
  auto impl = std::make_shared<Impl>(io, std::move(settings), std::move(verdict), std::move(*key),
                                     std::move(*serials));
  if (auto bound = impl->bind(); !bound) {
    impl->stop();
    return bound.error();
  }
  impl->accept();
  return std::unique_ptr<SignServer>(new SignServer(std::move(impl)));
}

SignServer::~SignServer() {
  try {
    impl_->stop();
  } catch (const boost::system::system_error&) {
    // a timer cancel throws only if the reactor itself failed; nothing more to release here
  }
}

const stamp::PublicKey& SignServer::public_key() const { return impl_->key.public_key(); }
bool SignServer::key_created() const { return impl_->key_created; }
SignCounters SignServer::counters() const { return impl_->counters; }

}  // namespace taid::daemon
