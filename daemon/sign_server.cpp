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
#include <deque>
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

// u32 length ‖ code 0 ‖ token, built in one buffer (frame(encode_reply_body()) copies twice).
Bytes ok_frame(stamp::ByteView token) {
  Bytes out;
  out.reserve(5 + token.size());
  const auto n = static_cast<std::uint32_t>(1 + token.size());
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<std::uint8_t>(n >> shift));
  out.push_back(static_cast<std::uint8_t>(ReplyCode::ok));
  out.insert(out.end(), token.begin(), token.end());
  return out;
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
  void submit(const std::shared_ptr<Session>& session, std::uint64_t slot,
              stamp::WireRequest request);
  void seal();
  void stop();

  asio::io_context& io;
  SignSettings settings;
  VerdictFunction verdict;
  stamp::SigningKey key;
  bool key_created;
  stamp::SerialStore serials;
  stamp::Batcher batcher;
  // Who asked each request in `batcher`, by request_id (their index here): the session and its
  // reply slot. This also keeps a session alive while its requests wait.
  struct Waiting {
    std::shared_ptr<Session> session;
    std::uint64_t slot;
  };
  std::vector<Waiting> pending;
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

// One client connection, kept alive by its own handlers and by its entries in the pending batch.
//
// Pipelined: the session keeps reading while its requests wait for their batch, takes every
// complete frame a read() brought, and writes every reply that is ready (in request order) with
// one gathered write. Replies are slots in request order: a request's slot is filled when its
// batch is sealed (or at once for a code-2 error), and only the ready prefix is written, so a
// code 2 never overtakes an earlier request still waiting for its signature.
//
// At most kMaxInFlight requests per connection are unanswered or unwritten: beyond that the
// session stops reading (the client's writes then block in its socket buffer), so one connection
// can never queue more than that in the daemon.
//
// One deadline per connection, kept in deadline_at_ and re-armed lazily: the timer is started
// once and, when it fires early (the deadline moved on meanwhile), waits again for the rest. A
// request costs no timer system call. The deadline runs while a reply is being written (from the
// start of that write) and while the connection is idle (nothing unanswered: from the last reply
// or the connect); not while requests wait for their batch.
class Session : public std::enable_shared_from_this<Session> {
 public:
  static constexpr std::size_t kMaxInFlight = 64;

  Session(std::shared_ptr<SignServer::Impl> server, stream::socket socket)
      : server_(std::move(server)),
        socket_(std::move(socket)),
        timer_(socket_.get_executor()),
        decoder_(stamp::kMaxRequestBody) {
    server_->sessions.insert(this);
  }
  ~Session() { server_->sessions.erase(this); }

  void start() {
    update_deadline();
    read_more();
  }

  // The reply to this connection's request `slot` (or an error for it). Without `write_now`
  // the caller calls flush() once it has delivered all it has: a batch's replies to one
  // pipelining connection then go out in one write, not the first alone and the rest after it.
  void deliver(std::uint64_t slot, Bytes framed, bool write_now = true) {
    if (closed_ || slot < first_slot_ || slot - first_slot_ >= replies_.size()) return;
    replies_[slot - first_slot_] = std::move(framed);
    if (write_now) flush();
  }

  // Writes the ready prefix of the replies, in request order, with one gathered write.
  void flush() {
    if (closed_ || writing_) return;
    while (!replies_.empty() && !replies_.front().empty() && out_.size() < kMaxInFlight) {
      out_.push_back(std::move(replies_.front()));
      replies_.pop_front();
      ++first_slot_;
    }
    if (out_.empty()) {
      if (close_after_flush_ && replies_.empty()) {
        close();
        return;
      }
      update_deadline();
      return;
    }
    writing_ = true;
    update_deadline();
    buffers_.clear();
    for (const Bytes& b : out_) buffers_.push_back(asio::buffer(b));
    asio::async_write(socket_, buffers_,
                      [self = shared_from_this()](const boost::system::error_code& ec,
                                                  std::size_t) { self->on_written(ec); });
  }

  void close() {
    closed_ = true;
    boost::system::error_code ignored;
    timer_.cancel();
    socket_.shutdown(stream::socket::shutdown_both, ignored);
    socket_.close(ignored);
  }

 private:
  enum class Deadline { none, idle, writing };
  using Clock = std::chrono::steady_clock;

  std::size_t outstanding() const { return replies_.size() + out_.size(); }

  // A slot for the next request, its reply not known yet.
  std::uint64_t open_slot() {
    replies_.emplace_back();
    return first_slot_ + replies_.size() - 1;
  }

  // An error reply in the next slot; `close` ends the connection once it (and every reply
  // before it) is written, and nothing more is read.
  void answer_error(ReplyCode code, std::string_view text, bool close) {
    replies_.push_back(error_frame(code, text));
    if (close) {
      stop_reading_ = true;
      close_after_flush_ = true;
    }
  }

  void read_more() {
    if (closed_ || reading_ || stop_reading_ || outstanding() >= kMaxInFlight) return;
    reading_ = true;
    socket_.async_read_some(asio::buffer(in_),
                            [self = shared_from_this()](const boost::system::error_code& ec,
                                                        std::size_t n) { self->on_read(ec, n); });
  }

  void on_read(const boost::system::error_code& ec, std::size_t n) {
    reading_ = false;
    if (closed_) return;
    if (timed_out_) {
      ++server_->counters.timeouts;
      if (decoder_.buffered() > 0 || n > 0) {
        answer_error(
            ReplyCode::malformed,
            strcat("request not complete within ", server_->settings.read_timeout.count(), " ms"),
            true);
        flush();
      } else {
        close();  // idle: nothing to answer
      }
      return;
    }
    if (ec == asio::error::eof) {
      // The client has sent all it will: answer what it asked (a partial frame gets nothing),
      // then close.
      stop_reading_ = true;
      close_after_flush_ = true;
      flush();
      return;
    }
    if (ec) {  // an error: the client is gone
      close();
      return;
    }
    decoder_.feed(stamp::ByteView(in_.data(), n));
    take_frames();
  }

  // Every complete frame buffered, up to the in-flight cap; then write what is ready and read on.
  void take_frames() {
    // Keeps this alive across submit(), which may seal and deliver re-entrantly.
    const std::shared_ptr<Session> self = shared_from_this();
    while (!stop_reading_ && !closed_ && outstanding() < kMaxInFlight) {
      std::optional<Bytes> body = decoder_.next();
      if (decoder_.oversized()) {  // known as soon as the length arrives
        ++server_->counters.malformed;
        answer_error(ReplyCode::malformed,
                     strcat("frame longer than ", stamp::kMaxRequestBody, " bytes"), true);
        break;
      }
      if (!body) break;
      stamp::DecodedRequest decoded = stamp::decode_request_body(*body);
      if (decoded.code != ReplyCode::ok) {
        ++server_->counters.malformed;
        // A bad digest length is a well-framed request: the connection can go on. Anything
        // else means the stream cannot be trusted to be framed right any more.
        answer_error(decoded.code, decoded.error, decoded.code != ReplyCode::bad_digest);
        continue;
      }
      server_->submit(self, open_slot(), std::move(decoded.request));
    }
    flush();
    read_more();
  }

  void on_written(const boost::system::error_code& ec) {
    writing_ = false;
    if (closed_) return;
    if (ec) {
      close();
      return;
    }
    out_.clear();
    flush();
    // Room under the cap again: frames left in the buffer first, then the socket.
    if (!closed_) take_frames();
  }

  // Moves the deadline when the connection's state calls for it (see the class comment).
  void update_deadline() {
    Deadline want = Deadline::none;
    if (writing_) {
      want = Deadline::writing;
    } else if (outstanding() == 0 && !close_after_flush_) {
      want = Deadline::idle;
    }
    // A new write always restarts the clock; idle restarts it only when the connection becomes
    // idle (a trickling client does not push its own deadline on).
    if (want == Deadline::writing || want != deadline_kind_) {
      deadline_kind_ = want;
      deadline_at_ = want == Deadline::none ? Clock::time_point::max()
                                            : Clock::now() + server_->settings.read_timeout;
    }
    if (deadline_at_ != Clock::time_point::max() && !timer_waiting_) wait_for(deadline_at_);
  }

  void wait_for(Clock::time_point at) {
    timer_waiting_ = true;
    timer_.expires_at(at);
    timer_.async_wait(
        [self = shared_from_this()](const boost::system::error_code& ec) { self->on_timer(ec); });
  }

  void on_timer(const boost::system::error_code& ec) {
    timer_waiting_ = false;
    if (ec || closed_ || deadline_at_ == Clock::time_point::max()) return;
    if (Clock::now() < deadline_at_) {  // the deadline moved on since the timer was set
      wait_for(deadline_at_);
      return;
    }
    if (deadline_kind_ == Deadline::writing) {
      ++server_->counters.timeouts;
      close();  // the client does not read its replies
    } else if (reading_) {
      timed_out_ = true;
      boost::system::error_code ignored;
      socket_.cancel(ignored);  // the read ends with operation_aborted: answer there
    } else {
      close();
    }
  }

  std::shared_ptr<SignServer::Impl> server_;
  stream::socket socket_;
  asio::steady_timer timer_;
  stamp::FrameDecoder decoder_;
  std::array<std::uint8_t, 4096> in_{};  // 64 pipelined requests of 48 bytes fit one read
  std::deque<Bytes> replies_;            // from slot first_slot_ on; empty: not ready yet
  std::uint64_t first_slot_ = 0;
  std::vector<Bytes> out_;  // being written
  std::vector<asio::const_buffer> buffers_;
  Clock::time_point deadline_at_ = Clock::time_point::max();
  Deadline deadline_kind_ = Deadline::none;
  bool reading_ = false;
  bool writing_ = false;
  bool timer_waiting_ = false;
  bool stop_reading_ = false;
  bool close_after_flush_ = false;
  bool timed_out_ = false;
  bool closed_ = false;
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

void SignServer::Impl::submit(const std::shared_ptr<Session>& session, std::uint64_t slot,
                              stamp::WireRequest request) {
  if (stopped) return;
  auto added = batcher.add(stamp::SignRequest{request.algorithm, std::move(request.digest),
                                              std::move(request.nonce), pending.size()});
  if (!added) {  // decode_request_body checked the same; kept for safety
    ++counters.malformed;
    session->deliver(slot, error_frame(ReplyCode::bad_digest, added.error().context));
    return;
  }
  pending.push_back(Waiting{session, slot});
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
  std::vector<Waiting> waiting;
  waiting.swap(pending);
  stamp::Batcher batch(settings.max_batch);
  std::swap(batch, batcher);

  auto refuse_all = [&](ReplyCode code, const std::string& text) {
    counters.refused += waiting.size();
    const Bytes reply = error_frame(code, text);
    for (auto& w : waiting) w.session->deliver(w.slot, reply, false);
    for (auto& w : waiting) w.session->flush();
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
    const Waiting& w = waiting[issued.request_id];
    w.session->deliver(w.slot, ok_frame(issued.token), false);
  }
  for (const Waiting& w : waiting) w.session->flush();  // a no-op once a session is writing
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
