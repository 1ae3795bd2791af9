// RFC 3161 TSA over HTTP: Beast sessions, replies from OpenSSL's TS_RESP_CTX (see the header).
#include "daemon/tsa_server.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/ts.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <cctype>
#include <climits>
#include <ctime>
#include <unordered_set>

#include "core/file_write.hpp"
#include "core/log.hpp"
#include "core/strcat.hpp"
#include "stamp/serial_store.hpp"

namespace taid::daemon {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

namespace {

template <typename T, void (*Free)(T*)>
struct Deleter {
  void operator()(T* p) const { Free(p); }
};
using BioPtr = std::unique_ptr<BIO, Deleter<BIO, BIO_free_all>>;
using X509Ptr = std::unique_ptr<X509, Deleter<X509, X509_free>>;
using PkeyPtr = std::unique_ptr<EVP_PKEY, Deleter<EVP_PKEY, EVP_PKEY_free>>;
using RespCtxPtr = std::unique_ptr<TS_RESP_CTX, Deleter<TS_RESP_CTX, TS_RESP_CTX_free>>;
using RespPtr = std::unique_ptr<TS_RESP, Deleter<TS_RESP, TS_RESP_free>>;
using ObjPtr = std::unique_ptr<ASN1_OBJECT, Deleter<ASN1_OBJECT, ASN1_OBJECT_free>>;
using BnPtr = std::unique_ptr<BIGNUM, Deleter<BIGNUM, BN_free>>;
using ExtPtr = std::unique_ptr<X509_EXTENSION, Deleter<X509_EXTENSION, X509_EXTENSION_free>>;
struct CertStackDeleter {
  void operator()(STACK_OF(X509) * s) const { sk_X509_pop_free(s, X509_free); }
};
using CertStackPtr = std::unique_ptr<STACK_OF(X509), CertStackDeleter>;

// The first queued OpenSSL error as text (then the queue is cleared, so it cannot leak into the
// next request's diagnostics).
std::string openssl_error(std::string_view what) {
  const unsigned long code = ERR_get_error();
  ERR_clear_error();
  if (code == 0) return std::string(what);
  char text[256];
  ERR_error_string_n(code, text, sizeof text);
  return strcat(what, ": ", text);
}

Result<std::string> read_file(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Error::from_errno(strcat(path, ": open"));
  std::string data;
  char chunk[4096];
  for (;;) {
    const ssize_t n = ::read(fd, chunk, sizeof chunk);
    if (n < 0) {
      const Error e = Error::from_errno(strcat(path, ": read"));
      ::close(fd);
      return e;
    }
    if (n == 0) break;
    data.append(chunk, static_cast<std::size_t>(n));
  }
  ::close(fd);
  return data;
}


BioPtr memory_bio(std::string_view data) {
  return BioPtr(BIO_new_mem_buf(data.data(), static_cast<int>(data.size())));
}

std::string bio_contents(BIO* bio) {
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio, &data);
  return std::string(data, static_cast<std::size_t>(n));
}

std::int64_t floor_div(std::int64_t a, std::int64_t b) {
  const std::int64_t q = a / b;
  return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

// "application/timestamp-query", ignoring case, surrounding spaces and any parameters.
bool is_timestamp_query(std::string_view content_type) {
  content_type = content_type.substr(0, content_type.find(';'));
  while (!content_type.empty() && content_type.front() == ' ') content_type.remove_prefix(1);
  while (!content_type.empty() && content_type.back() == ' ') content_type.remove_suffix(1);
  constexpr std::string_view want = "application/timestamp-query";
  return std::equal(
      content_type.begin(), content_type.end(), want.begin(), want.end(),
      [](char a, char b) { return std::tolower(static_cast<unsigned char>(a)) == b; });
}

class Session;

}  // namespace

struct TsaServer::Impl : std::enable_shared_from_this<TsaServer::Impl> {
  Impl(asio::io_context& io_context, TsaSettings s, VerdictFunction v, UtcFromTaiFunction u)
      : io(io_context),
        settings(std::move(s)),
        verdict(std::move(v)),
        utc_from_tai(std::move(u)),
        acceptor(io_context),
        retry(io_context) {}

  Result<void> load_signer();
  Result<void> bind();
  void accept();
  // The DER TimeStampResp for a request body, or nullopt when OpenSSL could not build any.
  std::optional<std::string> respond(std::string_view query_der);
  // Sets what the time callback hands OpenSSL for this request (accuracy included).
  void prepare_time();
  std::uint64_t take_serial(bool& ok);

  asio::io_context& io;
  TsaSettings settings;
  VerdictFunction verdict;
  UtcFromTaiFunction utc_from_tai;
  RespCtxPtr ctx;
  std::optional<stamp::SerialStore> serial_store;
  std::uint64_t next_serial = 0;  // without serial_store
  tcp::acceptor acceptor;
  asio::steady_timer retry;  // after an accept error
  std::uint16_t port = 0;
  std::unordered_set<Session*> sessions;  // alive now; closed by the destructor
  TsaCounters counters;
  bool stopped = false;

  // This request's time, read by time_callback (OpenSSL calls it inside create_response).
  bool time_available = false;
  long gen_sec = 0;
  long gen_usec = 0;
  std::string time_refusal;
};

namespace {

int time_callback(TS_RESP_CTX* ctx, void* data, long* sec, long* usec) {
  auto* impl = static_cast<TsaServer::Impl*>(data);
  if (!impl->time_available) {
    // What OpenSSL's own callback does when the clock cannot be read, with our reason.
    TS_RESP_CTX_set_status_info(ctx, TS_STATUS_REJECTION, impl->time_refusal.c_str());
    TS_RESP_CTX_add_failure_info(ctx, TS_INFO_TIME_NOT_AVAILABLE);
    return 0;
  }
  *sec = impl->gen_sec;
  *usec = impl->gen_usec;
  return 1;
}

ASN1_INTEGER* serial_callback(TS_RESP_CTX* ctx, void* data) {
  auto* impl = static_cast<TsaServer::Impl*>(data);
  bool ok = false;
  const std::uint64_t serial = impl->take_serial(ok);
  ASN1_INTEGER* value = ok ? ASN1_INTEGER_new() : nullptr;
  if (value == nullptr || ASN1_INTEGER_set_uint64(value, serial) != 1) {
    ASN1_INTEGER_free(value);
    TS_RESP_CTX_set_status_info(ctx, TS_STATUS_REJECTION, "serial number not available");
    TS_RESP_CTX_add_failure_info(ctx, TS_INFO_SYSTEM_FAILURE);
    return nullptr;
  }
  return value;
}

// One HTTP connection, kept alive by its own handlers: read a request, answer, read the next
// (keep-alive) or close.
class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(std::shared_ptr<TsaServer::Impl> impl, tcp::socket socket)
      : impl_(std::move(impl)), stream_(std::move(socket)) {
    impl_->sessions.insert(this);
  }
  ~Session() { impl_->sessions.erase(this); }
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  void start() { read(); }
  void close() {
    beast::error_code ignored;
    stream_.socket().close(ignored);
  }

 private:
  void read() {
    parser_.emplace();
    parser_->body_limit(impl_->settings.max_body_bytes);
    parser_->header_limit(16 * 1024);
    stream_.expires_after(impl_->settings.io_timeout);
    http::async_read(
        stream_, buffer_, *parser_,
        [self = shared_from_this()](beast::error_code ec, std::size_t) { self->on_read(ec); });
  }

  void on_read(beast::error_code ec) {
    if (impl_->stopped || ec == asio::error::operation_aborted) return;
    if (ec == http::error::end_of_stream) return shutdown();
    if (ec == beast::error::timeout) {
      ++impl_->counters.timeouts;  // beast::tcp_stream has closed the socket already
      return;
    }
    if (ec == http::error::body_limit)
      return send_error(http::status::payload_too_large, "request body too large\n", 11);
    if (ec.category() == make_error_code(http::error::bad_target).category())
      return send_error(http::status::bad_request, strcat("bad HTTP request: ", ec.message(), "\n"),
                        11);
    if (ec) return;  // reset by the peer and the like: nobody to answer
    handle(parser_->release());
  }

  void handle(http::request<http::string_body> request) {
    const unsigned version = request.version();
    if (request.target() != "/")
      return send_error(http::status::not_found, "no such resource; POST queries to /\n", version,
                        request.keep_alive());
    if (request.method() != http::verb::post)
      return send_error(http::status::method_not_allowed, "POST a timestamp query\n", version,
                        request.keep_alive());
    const beast::string_view content_type = request[http::field::content_type];
    if (!is_timestamp_query(std::string_view(content_type.data(), content_type.size())))
      return send_error(http::status::unsupported_media_type,
                        "Content-Type must be application/timestamp-query\n", version,
                        request.keep_alive());
    std::optional<std::string> reply = impl_->respond(request.body());
    if (!reply)
      return send_error(http::status::internal_server_error, "cannot build a reply\n", version,
                        false);
    auto response = std::make_shared<http::response<http::string_body>>(http::status::ok, version);
    response->set(http::field::server, "taid");
    response->set(http::field::content_type, "application/timestamp-reply");
    response->keep_alive(request.keep_alive());
    response->body() = std::move(*reply);
    response->prepare_payload();
    write(std::move(response), false);
  }

  // An HTTP error. After a broken request (413, 400) the rest of the stream cannot be framed, so
  // the connection closes, and we drain the unread input first: closing with unread bytes sends
  // a reset, which may destroy the reply before the client reads it.
  void send_error(http::status status, std::string text, unsigned version,
                  bool keep_alive = false) {
    ++impl_->counters.http_errors;
    auto response = std::make_shared<http::response<http::string_body>>(status, version);
    response->set(http::field::server, "taid");
    response->set(http::field::content_type, "text/plain");
    if (status == http::status::method_not_allowed) response->set(http::field::allow, "POST");
    response->keep_alive(keep_alive);
    response->body() = std::move(text);
    response->prepare_payload();
    write(std::move(response), !keep_alive);
  }

  void write(std::shared_ptr<http::response<http::string_body>> response, bool close_after) {
    stream_.expires_after(impl_->settings.io_timeout);
    http::async_write(
        stream_, *response,
        [self = shared_from_this(), response, close_after](beast::error_code ec, std::size_t) {
          if (self->impl_->stopped || ec == asio::error::operation_aborted) return;
          if (ec == beast::error::timeout) {
            ++self->impl_->counters.timeouts;
            return;
          }
          if (ec) return;
          if (close_after || response->need_eof()) return self->shutdown();
          self->read();
        });
  }

  // Half-close, then read and discard until the client closes or io_timeout passes.
  void shutdown() {
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
    drain();
  }

  void drain() {
    stream_.expires_after(impl_->settings.io_timeout);
    stream_.async_read_some(asio::buffer(discard_),
                            [self = shared_from_this()](beast::error_code ec, std::size_t) {
                              if (ec || self->impl_->stopped) return self->close();
                              self->drain();
                            });
  }

  std::shared_ptr<TsaServer::Impl> impl_;
  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  std::array<char, 4096> discard_{};
};

}  // namespace

std::uint64_t TsaServer::Impl::take_serial(bool& ok) {
  ok = true;
  if (!serial_store) return next_serial++;
  auto first = serial_store->reserve(1);
  if (!first) {
    log_error(strcat("TSA serial: ", first.error().message()));
    ok = false;
    return 0;
  }
  return *first;
}

void TsaServer::Impl::prepare_time() {
  time_available = false;
  const TimeVerdict v = verdict();
  if (const auto* refusal = std::get_if<SignRefusal>(&v)) {
    time_refusal = strcat("time not available: ", refusal->text);
    return;
  }
  const stamp::BatchTime& t = std::get<stamp::BatchTime>(v);
  const std::optional<std::int64_t> utc_ns = utc_from_tai(t.tai_ns);
  if (!utc_ns) {
    time_refusal = "time not available: UTC of the TAI time unknown";
    return;
  }
  // genTime is floored to the microsecond, so the bound grows by up to 999 ns; rounded up.
  const std::uint64_t accuracy_us = (std::max<std::uint64_t>(t.bound_ns, 1) + 999 + 999) / 1000;
  const std::uint64_t accuracy_s = accuracy_us / 1000000;
  if (accuracy_s > static_cast<std::uint64_t>(INT_MAX)) {
    time_refusal = "time not available: error bound too large";
    return;
  }
  // POSIX time cannot name 23:59:60, and around a deletion the offset changes: no stamp whose
  // interval (widened by 1 s for the repeated or missing second) touches a leap midnight.
  if (t.leap != stamp::Leap::none) {
    constexpr std::int64_t kDayNs = 86400LL * 1000000000;
    const std::int64_t margin_ns = static_cast<std::int64_t>(accuracy_us) * 1000 + 1000000000;
    const std::int64_t midnight_ns = floor_div(*utc_ns + margin_ns, kDayNs) * kDayNs;
    if (midnight_ns >= *utc_ns - margin_ns) {
      time_refusal = "time not available: leap second";
      return;
    }
  }
  const std::int64_t sec = floor_div(*utc_ns, 1000000000);
  gen_sec = static_cast<long>(sec);
  gen_usec = static_cast<long>((*utc_ns - sec * 1000000000) / 1000);
  if (TS_RESP_CTX_set_accuracy(ctx.get(), static_cast<int>(accuracy_s),
                               static_cast<int>(accuracy_us / 1000 % 1000),
                               static_cast<int>(accuracy_us % 1000)) != 1) {
    time_refusal = "time not available: accuracy";
    ERR_clear_error();
    return;
  }
  time_available = true;
}

std::optional<std::string> TsaServer::Impl::respond(std::string_view query_der) {
  prepare_time();
  BioPtr in = memory_bio(query_der);
  if (!in) return std::nullopt;
  RespPtr response(TS_RESP_create_response(ctx.get(), in.get()));
  ERR_clear_error();  // a rejection leaves errors queued; they are in the reply's status already
  if (!response) return std::nullopt;
  const int status = static_cast<int>(
      ASN1_INTEGER_get(TS_STATUS_INFO_get0_status(TS_RESP_get_status_info(response.get()))));
  if (status == TS_STATUS_GRANTED)
    ++counters.granted;
  else
    ++counters.rejected;
  const int length = i2d_TS_RESP(response.get(), nullptr);
  if (length <= 0) return std::nullopt;
  std::string der(static_cast<std::size_t>(length), '\0');
  auto* out = reinterpret_cast<unsigned char*>(der.data());
  if (i2d_TS_RESP(response.get(), &out) != length) return std::nullopt;
  return der;
}

Result<void> TsaServer::Impl::load_signer() {
  auto key_pem = read_file(settings.key_path);
  if (!key_pem) return key_pem.error();
  auto cert_pem = read_file(settings.cert_path);
  if (!cert_pem) return cert_pem.error();
  BioPtr key_bio = memory_bio(*key_pem);
  PkeyPtr key(PEM_read_bio_PrivateKey(key_bio.get(), nullptr, nullptr, nullptr));
  if (!key)
    return Error::plain(openssl_error(strcat(settings.key_path, ": not a PEM private key")));
  BioPtr cert_bio = memory_bio(*cert_pem);
  X509Ptr cert(PEM_read_bio_X509(cert_bio.get(), nullptr, nullptr, nullptr));
  if (!cert)
    return Error::plain(openssl_error(strcat(settings.cert_path, ": not a PEM certificate")));
  if (X509_check_private_key(cert.get(), key.get()) != 1)
    return Error::plain(openssl_error(
        strcat(settings.cert_path, ": certificate does not match the key ", settings.key_path)));

  ctx.reset(TS_RESP_CTX_new());
  if (!ctx) return Error::plain(openssl_error("TS_RESP_CTX_new"));
  if (TS_RESP_CTX_set_signer_cert(ctx.get(), cert.get()) != 1)
    return Error::plain(openssl_error(strcat(
        settings.cert_path,
        ": not a time-stamping certificate (needs extendedKeyUsage critical,timeStamping)")));
  if (TS_RESP_CTX_set_signer_key(ctx.get(), key.get()) != 1 ||
      TS_RESP_CTX_set_signer_digest(ctx.get(), EVP_sha256()) != 1 ||
      TS_RESP_CTX_set_ess_cert_id_digest(ctx.get(), EVP_sha256()) != 1)
    return Error::plain(openssl_error("TSA signer"));
  if (!settings.chain_path.empty()) {
    auto chain_pem = read_file(settings.chain_path);
    if (!chain_pem) return chain_pem.error();
    BioPtr chain_bio = memory_bio(*chain_pem);
    CertStackPtr chain(sk_X509_new_null());
    while (X509* c = PEM_read_bio_X509(chain_bio.get(), nullptr, nullptr, nullptr))
      sk_X509_push(chain.get(), c);
    ERR_clear_error();  // the loop ends on "no start line"
    if (sk_X509_num(chain.get()) == 0)
      return Error::plain(strcat(settings.chain_path, ": no PEM certificate"));
    if (TS_RESP_CTX_set_certs(ctx.get(), chain.get()) != 1)
      return Error::plain(openssl_error("TSA chain"));
  }
  ObjPtr policy(OBJ_txt2obj(settings.policy_oid.c_str(), 1));
  if (!policy || TS_RESP_CTX_set_def_policy(ctx.get(), policy.get()) != 1)
    return Error::plain(openssl_error(strcat("TSA policy ", settings.policy_oid, ": not an OID")));
  for (const EVP_MD* md :
       {EVP_sha256(), EVP_sha384(), EVP_sha512(), EVP_sha3_256(), EVP_sha3_384(), EVP_sha3_512()})
    if (TS_RESP_CTX_add_md(ctx.get(), md) != 1) return Error::plain(openssl_error("TSA digests"));
  if (TS_RESP_CTX_set_clock_precision_digits(ctx.get(), 6) != 1)
    return Error::plain(openssl_error("TSA clock precision"));
  TS_RESP_CTX_add_flags(ctx.get(), TS_TSA_NAME);  // tsa = the signer's subject
  TS_RESP_CTX_set_time_cb(ctx.get(), time_callback, this);
  TS_RESP_CTX_set_serial_cb(ctx.get(), serial_callback, this);

  if (!settings.serial_path.empty()) {
    auto store = stamp::SerialStore::open(settings.serial_path);
    if (!store) return store.error();
    serial_store.emplace(std::move(*store));
  } else {
    timespec now{};
    ::clock_gettime(CLOCK_REALTIME, &now);
    next_serial = static_cast<std::uint64_t>(now.tv_sec) * 1000000000 +
                  static_cast<std::uint64_t>(now.tv_nsec);
  }
  return {};
}

Result<void> TsaServer::Impl::bind() {
  boost::system::error_code ec;
  const asio::ip::address address = asio::ip::make_address(settings.bind_address, ec);
  if (ec) return Error::plain(strcat("tsabind ", settings.bind_address, ": not an IP address"));
  const tcp::endpoint endpoint(address, settings.port);
  const std::string where = strcat("TSA ", settings.bind_address, " port ", settings.port);
  if (acceptor.open(endpoint.protocol(), ec); ec)
    return Error{ec.value(), strcat(where, ": socket")};
  if (acceptor.set_option(tcp::acceptor::reuse_address(true), ec); ec)
    return Error{ec.value(), strcat(where, ": SO_REUSEADDR")};
  if (acceptor.bind(endpoint, ec); ec) return Error{ec.value(), strcat(where, ": bind")};
  if (acceptor.listen(asio::socket_base::max_listen_connections, ec); ec)
    return Error{ec.value(), strcat(where, ": listen")};
  port = acceptor.local_endpoint(ec).port();
  return {};
}

void TsaServer::Impl::accept() {
  acceptor.async_accept(
      [self = shared_from_this()](const boost::system::error_code& ec, tcp::socket socket) {
        if (self->stopped || ec == asio::error::operation_aborted) return;
        if (ec) {
          // EMFILE and friends persist while the backlog stays readable: pause instead of spinning.
          log_warning(strcat("TSA accept: ", ec.message(), "; retrying in 100 ms"));
          self->retry.expires_after(std::chrono::milliseconds(100));
          self->retry.async_wait([self](const boost::system::error_code& e) {
            if (!e && !self->stopped) self->accept();
          });
          return;
        }
        if (self->sessions.size() >= self->settings.max_connections) {
          ++self->counters.busy;
          boost::system::error_code ignored;
          socket.close(ignored);
        } else {
          std::make_shared<Session>(self, std::move(socket))->start();
        }
        self->accept();
      });
}

Result<std::unique_ptr<TsaServer>> TsaServer::open(asio::io_context& io, TsaSettings settings,
                                                   VerdictFunction verdict,
                                                   UtcFromTaiFunction utc_from_tai) {
  if (!verdict || !utc_from_tai) return Error::plain("TSA: no verdict or UTC function");
  auto impl =
      std::make_shared<Impl>(io, std::move(settings), std::move(verdict), std::move(utc_from_tai));
  if (auto loaded = impl->load_signer(); !loaded) return loaded.error();
  if (auto bound = impl->bind(); !bound) return bound.error();
  impl->accept();
  return std::unique_ptr<TsaServer>(new TsaServer(std::move(impl)));
}

TsaServer::~TsaServer() {
  impl_->stopped = true;
  boost::system::error_code ignored;
  impl_->acceptor.close(ignored);
  impl_->retry.cancel();
  for (Session* session : impl_->sessions) session->close();
}

std::uint16_t TsaServer::port() const { return impl_->port; }
TsaCounters TsaServer::counters() const {
  TsaCounters c = impl_->counters;
  c.connections = impl_->sessions.size();
  return c;
}

Result<void> make_self_signed_tsa(const std::string& key_path, const std::string& cert_path,
                                  const std::string& common_name, int days) {
  PkeyPtr key(EVP_EC_gen("P-256"));
  X509Ptr cert(X509_new());
  BnPtr serial(BN_new());
  if (!key || !cert || !serial) return Error::plain(openssl_error("self-signed TSA: allocate"));
  // A random 127-bit serial, positive, as RFC 5280 asks for CA-less certificates too.
  bool ok =
      X509_set_version(cert.get(), X509_VERSION_3) == 1 &&
      BN_rand(serial.get(), 127, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY) == 1 &&
      BN_to_ASN1_INTEGER(serial.get(), X509_get_serialNumber(cert.get())) != nullptr &&
      X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600) != nullptr &&
      X509_gmtime_adj(X509_getm_notAfter(cert.get()), static_cast<long>(days) * 86400) != nullptr &&
      X509_set_pubkey(cert.get(), key.get()) == 1;
  X509_NAME* name = X509_get_subject_name(cert.get());
  ok = ok &&
       X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                                  reinterpret_cast<const unsigned char*>(common_name.c_str()), -1,
                                  -1, 0) == 1 &&
       X509_set_issuer_name(cert.get(), name) == 1;
  if (!ok) return Error::plain(openssl_error("self-signed TSA: certificate fields"));
  X509V3_CTX v3{};
  X509V3_set_ctx_nodb(&v3);
  X509V3_set_ctx(&v3, cert.get(), cert.get(), nullptr, nullptr, 0);
  const std::pair<int, const char*> extensions[] = {
      {NID_basic_constraints, "critical,CA:FALSE"},
      {NID_key_usage, "critical,digitalSignature"},
      {NID_ext_key_usage, "critical,timeStamping"},
      {NID_subject_key_identifier, "hash"},
  };
  for (const auto& [nid, value] : extensions) {
    ExtPtr ext(X509V3_EXT_conf_nid(nullptr, &v3, nid, value));
    if (!ext || X509_add_ext(cert.get(), ext.get(), -1) != 1)
      return Error::plain(openssl_error(strcat("self-signed TSA: extension ", value)));
  }
  if (X509_sign(cert.get(), key.get(), EVP_sha256()) <= 0)
    return Error::plain(openssl_error("self-signed TSA: sign"));
  BioPtr key_out(BIO_new(BIO_s_mem()));
  BioPtr cert_out(BIO_new(BIO_s_mem()));
  if (!key_out || !cert_out ||
      PEM_write_bio_PrivateKey(key_out.get(), key.get(), nullptr, nullptr, 0, nullptr, nullptr) !=
          1 ||
      PEM_write_bio_X509(cert_out.get(), cert.get()) != 1)
    return Error::plain(openssl_error("self-signed TSA: PEM"));
  if (auto w = write_file_atomically(key_path, bio_contents(key_out.get()), 0600); !w) return w.error();
  if (auto w = write_file_atomically(cert_path, bio_contents(cert_out.get()), 0644); !w) return w.error();
  return {};
}

}  // namespace taid::daemon
