// taistamp: stamps a file with taid's signed TAI time, and verifies such a stamp offline.
//
// The digest taid signs is the file's *content digest* (docs/TOKEN.md, "taistamp's content
// digest"): SHA-256 over a canonical encoding of the file's bytes and its sorted metadata, so a
// photo and its "camera=..." lines are stamped together and neither can be swapped afterwards.
#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "core/result.hpp"
#include "core/strcat.hpp"
#include "core/time.hpp"
#include "stamp/crypto.hpp"
#include "stamp/token.hpp"
#include "stamp/wire.hpp"
#include "timescale/leap_table.hpp"
#include "timescale/utc_label.hpp"

namespace {

using nlohmann::json;
using taid::Error;
using taid::Result;
using taid::strcat;
using taid::stamp::Bytes;
using taid::stamp::ByteView;

// Exit codes (also in the usage text and docs/TOKEN.md).
constexpr int kExitOk = 0;
constexpr int kExitRejected = 1;  // verify: the token does not verify for this file/metadata/key
constexpr int kExitUsage = 2;
constexpr int kExitIo = 3;        // a file, the key or the socket could not be used
constexpr int kExitRefused = 4;   // sign: taid answered with an error code
constexpr int kExitBadReply = 5;  // sign: taid's reply is not a token for this request

constexpr const char* kUsage =
    "usage: taistamp [-s SOCKET] [--json] sign FILE [--meta K=V ...] [-o TOKEN] [--pubkey KEY]\n"
    "       taistamp [--json] verify FILE TOKEN --pubkey KEY [--meta K=V ...]\n"
    "                [--leapseclist PATH]\n"
    "       taistamp [--json] pubkey --key KEYFILE\n"
    "  sign     hash FILE and its metadata, ask taid for a signed time, write the token\n"
    "           (raw bytes; default FILE.taitoken). With --pubkey the token is verified too.\n"
    "  verify   offline: check TOKEN against FILE, the same metadata and taid's public key;\n"
    "           print the time in TAI and UTC (UTC through the leap table), the bound, serial\n"
    "  pubkey   print the public key of KEYFILE: taid's key file or its KEYFILE.pub\n"
    "  -s SOCKET        signing socket (default /run/taid/sign.sock)\n"
    "  --meta K=V       metadata stamped with the file (repeatable; order does not matter,\n"
    "                   a key may appear once; verify needs the same set)\n"
    "  --pubkey KEY     a PEM public key file, or 64 hex digits\n"
    "  --leapseclist P  leap-seconds.list for UTC (default /usr/share/zoneinfo/leap-seconds.list)\n"
    "  --json           one JSON document on stdout\n"
    "exit: 0 ok, 1 token rejected, 2 usage, 3 file/key/socket error, 4 taid refused,\n"
    "      5 taid's reply is not a token for this request\n";

constexpr std::string_view kContentDomain{"taistamp content v1\0", 20};

struct Failure {
  int exit_code;
  std::string message;
};

void put_u32(std::string& out, std::uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<char>(v >> shift));
}
void put_u64(std::string& out, std::uint64_t v) {
  for (int shift = 56; shift >= 0; shift -= 8) out.push_back(static_cast<char>(v >> shift));
}

// K=V strings → sorted map; a key given twice or an empty key is a usage error.
std::optional<Failure> parse_meta(const std::vector<std::string>& args,
                                  std::map<std::string, std::string>& out) {
  for (const auto& arg : args) {
    const auto eq = arg.find('=');
    if (eq == std::string::npos || eq == 0)
      return Failure{kExitUsage, strcat("--meta '", arg, "': expected KEY=VALUE")};
    if (!out.emplace(arg.substr(0, eq), arg.substr(eq + 1)).second)
      return Failure{kExitUsage, strcat("--meta key '", arg.substr(0, eq), "' given twice")};
  }
  return std::nullopt;
}

// SHA-256 of: domain ‖ u64 file length ‖ file bytes ‖ u32 pair count ‖
//             for each pair in key order (bytewise): u32 key length ‖ key ‖ u32 value length ‖
//             value
// Streams the file through EVP, so a large photo is never held in memory whole.
Result<taid::stamp::Hash32> content_digest(const std::string& path,
                                           const std::map<std::string, std::string>& meta) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Error::from_errno(path);
  std::unique_ptr<int, void (*)(int*)> closer(new int(fd), [](int* p) {
    ::close(*p);
    delete p;
  });
  struct stat st {};
  if (::fstat(fd, &st) != 0) return Error::from_errno(strcat(path, ": fstat"));
  if (!S_ISREG(st.st_mode)) return Error::plain(strcat(path, ": not a regular file"));
  std::unique_ptr<EVP_MD_CTX, void (*)(EVP_MD_CTX*)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  if (!ctx || EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) != 1)
    return Error::plain("OpenSSL: cannot start SHA-256");
  std::string head(kContentDomain);
  put_u64(head, static_cast<std::uint64_t>(st.st_size));
  EVP_DigestUpdate(ctx.get(), head.data(), head.size());
  std::vector<char> buffer(1 << 16);
  std::uint64_t total = 0;
  for (;;) {
    const ssize_t n = ::read(fd, buffer.data(), buffer.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return Error::from_errno(strcat(path, ": read"));
    }
    if (n == 0) break;
    EVP_DigestUpdate(ctx.get(), buffer.data(), static_cast<std::size_t>(n));
    total += static_cast<std::uint64_t>(n);
  }
  // The length went into the hash first: a file that changed while it was read must not pass.
  if (total != static_cast<std::uint64_t>(st.st_size))
    return Error::plain(strcat(path, ": changed size while being read"));
  std::string tail;
  put_u32(tail, static_cast<std::uint32_t>(meta.size()));
  for (const auto& [key, value] : meta) {
    put_u32(tail, static_cast<std::uint32_t>(key.size()));
    tail += key;
    put_u32(tail, static_cast<std::uint32_t>(value.size()));
    tail += value;
  }
  EVP_DigestUpdate(ctx.get(), tail.data(), tail.size());
  taid::stamp::Hash32 out{};
  unsigned int len = 0;
  if (EVP_DigestFinal_ex(ctx.get(), out.data(), &len) != 1 || len != out.size())
    return Error::plain("OpenSSL: SHA-256 failed");
  return out;
}

Result<std::string> read_file(const std::string& path, std::size_t max_bytes) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Error::from_errno(path);
  std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) return Error::from_errno(strcat(path, ": read"));
  if (data.size() > max_bytes) return Error::plain(strcat(path, ": larger than expected"));
  return data;
}

// A PEM file, or the key written inline as 64 hex digits.
Result<taid::stamp::PublicKey> load_public_key(const std::string& spec) {
  auto text = read_file(spec, 1 << 16);
  if (!text) {
    if (spec.size() == 64) {
      if (auto inline_key = taid::stamp::PublicKey::parse(spec)) return *inline_key;
    }
    return text.error();
  }
  auto key = taid::stamp::PublicKey::parse(*text);
  if (!key) return Error::plain(strcat(spec, ": ", key.error().message()));
  return *key;
}

// Writes all of `data` to `path` through a temporary file, so a half token never lies around.
Result<void> write_file(const std::string& path, ByteView data) {
  const std::string tmp = path + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return Error::from_errno(tmp);
  const bool ok = ::write(fd, data.data(), data.size()) == static_cast<ssize_t>(data.size()) &&
                  ::fsync(fd) == 0;
  const int saved = errno;
  ::close(fd);
  if (!ok || ::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = ok ? errno : saved;
    ::unlink(tmp.c_str());
    return Error{err, path};
  }
  return {};
}

// One request, one reply over the signing socket; every wait is bounded (10 s).
Result<taid::stamp::WireReply> ask_taid(const std::string& socket_path,
                                        const taid::stamp::WireRequest& request) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Error::from_errno("socket");
  std::unique_ptr<int, void (*)(int*)> closer(new int(fd), [](int* p) {
    ::close(*p);
    delete p;
  });
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (socket_path.size() >= sizeof addr.sun_path)
    return Error::plain(strcat(socket_path, ": path too long"));
  std::memcpy(addr.sun_path, socket_path.c_str(), socket_path.size() + 1);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0)
    return Error::from_errno(strcat(socket_path, ": connect (is taid running with signsocket?)"));
  timeval tv{10, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  const Bytes out = taid::stamp::frame(taid::stamp::encode_request_body(request));
  if (::send(fd, out.data(), out.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(out.size()))
    return Error::from_errno(strcat(socket_path, ": send"));
  // taid may refuse at accept (not allowed, busy) before reading: its reply is read all the same.
  taid::stamp::FrameDecoder decoder(taid::stamp::kMaxReplyBody);
  std::uint8_t buffer[4096];
  for (;;) {
    if (auto body = decoder.next()) return taid::stamp::decode_reply_body(*body);
    if (decoder.oversized()) return Error::plain("taid's reply is larger than any token");
    const ssize_t n = ::recv(fd, buffer, sizeof buffer, 0);
    if (n == 0) return Error::plain(strcat(socket_path, ": taid closed the connection"));
    if (n < 0) {
      if (errno == EINTR) continue;
      return Error::from_errno(strcat(socket_path, ": recv"));
    }
    decoder.feed(ByteView(buffer, static_cast<std::size_t>(n)));
  }
}

std::string tai_label(std::int64_t tai_ns) {
  // The TAI calendar has no leap seconds: it is the POSIX calendar applied to TAI's count.
  std::string s = taid::timescale::to_string(
      taid::timescale::utc_label_from_posix(taid::UtcTime::from_unix_ns(tai_ns)));
  if (!s.empty() && s.back() == 'Z') s.pop_back();
  return s + " TAI";
}

std::string format_bound(std::uint64_t bound_ns) {
  char text[64];
  if (bound_ns < 1'000'000)
    std::snprintf(text, sizeof text, "%.3f us", static_cast<double>(bound_ns) / 1e3);
  else if (bound_ns < 1'000'000'000)
    std::snprintf(text, sizeof text, "%.3f ms", static_cast<double>(bound_ns) / 1e6);
  else
    std::snprintf(text, sizeof text, "%.3f s", static_cast<double>(bound_ns) / 1e9);
  return text;
}

// The token's fields as JSON and as human lines; UTC through the leap table when it can.
json describe(const taid::stamp::Token& token, const std::string& leap_path) {
  json out;
  out["serial"] = token.leaf.serial;
  out["tai_ns"] = token.header.tai_ns;
  out["tai"] = tai_label(token.header.tai_ns);
  out["bound_ns"] = token.header.bound_ns;
  out["status"] = std::string(taid::stamp::status_name(token.header.status));
  out["leap"] = std::string(taid::stamp::leap_name(token.header.leap));
  out["key_id"] = taid::stamp::to_hex(token.header.key_id);
  out["leaf_index"] = token.leaf_index;
  out["leaf_count"] = token.header.leaf_count;
  out["nonce"] = taid::stamp::to_hex(token.leaf.nonce);
  out["digest"] = taid::stamp::to_hex(token.leaf.digest);
  if (leap_path.empty()) return out;
  auto table = taid::timescale::read_leap_seconds_list(leap_path);
  if (!table) {
    out["utc_error"] = table.error().message();
    return out;
  }
  auto utc = taid::timescale::utc_from_tai(taid::TaiTime::from_tai_ns(token.header.tai_ns), *table);
  if (!utc) {
    out["utc_error"] = utc.error().message();
    return out;
  }
  out["utc"] = taid::timescale::to_string(*utc);
  const std::int64_t posix_s = taid::timescale::posix_from_label(*utc).unix_ns() / 1'000'000'000;
  if (!table->covers(posix_s)) {
    out["utc_note"] = strcat(table->origin,
                             " does not vouch for this date (expired): a leap second announced "
                             "later would move UTC by a second");
  }
  return out;
}

void print_human(const json& d) {
  std::printf("time (TAI)  %s\n", d["tai"].get<std::string>().c_str());
  if (d.contains("utc")) {
    std::printf("time (UTC)  %s\n", d["utc"].get<std::string>().c_str());
    if (d.contains("utc_note"))
      std::printf("            (%s)\n", d["utc_note"].get<std::string>().c_str());
  } else if (d.contains("utc_error")) {
    std::printf("time (UTC)  unknown: %s\n", d["utc_error"].get<std::string>().c_str());
  }
  std::printf("bound       +/- %s (true TAI within)\n",
              format_bound(d["bound_ns"].get<std::uint64_t>()).c_str());
  std::printf("serial      %llu\n",
              static_cast<unsigned long long>(d["serial"].get<std::uint64_t>()));
  std::printf("status      %s, leap %s\n", d["status"].get<std::string>().c_str(),
              d["leap"].get<std::string>().c_str());
  std::printf("key id      %s\n", d["key_id"].get<std::string>().c_str());
  std::printf("batch       leaf %u of %u\n", d["leaf_index"].get<unsigned>(),
              d["leaf_count"].get<unsigned>());
}

struct Options {
  std::string socket_path = "/run/taid/sign.sock";
  bool json_out = false;
  std::string command;
  std::vector<std::string> positional;
  std::vector<std::string> meta;
  std::string output;
  std::string pubkey;
  std::string key;
  std::string leap_path = "/usr/share/zoneinfo/leap-seconds.list";
};

int fail(const Options& options, const Failure& failure) {
  if (options.json_out) {
    std::cout << json{{"ok", false}, {"error", failure.message}, {"exit", failure.exit_code}}.dump()
              << "\n";
  } else {
    std::fprintf(stderr, "taistamp: %s\n", failure.message.c_str());
    if (failure.exit_code == kExitUsage) std::fputs(kUsage, stderr);
  }
  return failure.exit_code;
}

int run_sign(const Options& o) {
  if (o.positional.size() != 1) return fail(o, {kExitUsage, "sign takes one FILE"});
  const std::string& file = o.positional[0];
  std::map<std::string, std::string> meta;
  if (auto bad = parse_meta(o.meta, meta)) return fail(o, *bad);
  std::optional<taid::stamp::PublicKey> key;
  if (!o.pubkey.empty()) {
    auto loaded = load_public_key(o.pubkey);
    if (!loaded) return fail(o, {kExitIo, loaded.error().message()});
    key = *loaded;
  }
  auto digest = content_digest(file, meta);
  if (!digest) return fail(o, {kExitIo, digest.error().message()});
  // A fresh nonce ties the reply to this request: a replayed token for the same file would not
  // carry it.
  Bytes nonce(16);
  if (RAND_bytes(nonce.data(), static_cast<int>(nonce.size())) != 1)
    return fail(o, {kExitIo, "OpenSSL: no random bytes for the nonce"});
  const taid::stamp::WireRequest request{taid::stamp::HashAlgorithm::sha256,
                                         Bytes(digest->begin(), digest->end()), nonce};
  auto reply = ask_taid(o.socket_path, request);
  if (!reply) return fail(o, {kExitIo, reply.error().message()});
  if (reply->code != taid::stamp::ReplyCode::ok) {
    const std::string text(reply->payload.begin(), reply->payload.end());
    return fail(o,
                {kExitRefused, strcat("taid refused: ", taid::stamp::reply_code_name(reply->code),
                                      " (code ", static_cast<int>(reply->code), "): ", text)});
  }
  auto token =
      key ? taid::stamp::verify_token(reply->payload, request.algorithm, request.digest, *key)
          : taid::stamp::decode_token(reply->payload);
  if (!token) return fail(o, {kExitBadReply, strcat("taid's token: ", token.error().message())});
  if (token->leaf.digest != request.digest || token->leaf.nonce != nonce ||
      token->leaf.algorithm != request.algorithm)
    return fail(o, {kExitBadReply, "taid's token is not for this request (digest or nonce)"});
  const std::string out_path = o.output.empty() ? file + ".taitoken" : o.output;
  if (auto written = write_file(out_path, reply->payload); !written)
    return fail(o, {kExitIo, written.error().message()});
  json d = describe(*token, "");
  if (o.json_out) {
    d["ok"] = true;
    d["token"] = out_path;
    d["verified"] = key.has_value();
    std::cout << d.dump() << "\n";
  } else {
    std::printf("token       %s (%zu bytes%s)\n", out_path.c_str(), reply->payload.size(),
                key ? ", signature verified" : "");
    print_human(d);
  }
  return kExitOk;
}

int run_verify(const Options& o) {
  if (o.positional.size() != 2) return fail(o, {kExitUsage, "verify takes FILE and TOKEN"});
  if (o.pubkey.empty()) return fail(o, {kExitUsage, "verify needs --pubkey KEY"});
  std::map<std::string, std::string> meta;
  if (auto bad = parse_meta(o.meta, meta)) return fail(o, *bad);
  auto key = load_public_key(o.pubkey);
  if (!key) return fail(o, {kExitIo, key.error().message()});
  auto digest = content_digest(o.positional[0], meta);
  if (!digest) return fail(o, {kExitIo, digest.error().message()});
  auto bytes = read_file(o.positional[1], 4096);
  if (!bytes) return fail(o, {kExitIo, bytes.error().message()});
  const ByteView token_bytes(reinterpret_cast<const std::uint8_t*>(bytes->data()), bytes->size());
  auto token = taid::stamp::verify_token(token_bytes, taid::stamp::HashAlgorithm::sha256,
                                         ByteView(digest->data(), digest->size()), *key);
  if (!token) {
    std::string why = token.error().message();
    if (why.rfind("digest: ", 0) == 0) why += " (another file, or other --meta)";
    return fail(o, {kExitRejected, strcat("token rejected: ", why)});
  }
  json d = describe(*token, o.leap_path);
  if (o.json_out) {
    d["ok"] = true;
    d["file"] = o.positional[0];
    std::cout << d.dump() << "\n";
  } else {
    std::printf("verified    %s\n", o.positional[0].c_str());
    print_human(d);
  }
  return kExitOk;
}

int run_pubkey(const Options& o) {
  if (o.key.empty() || !o.positional.empty())
    return fail(o, {kExitUsage, "pubkey needs --key KEYFILE"});
  auto text = read_file(o.key, 1 << 16);
  if (!text) return fail(o, {kExitIo, text.error().message()});
  std::optional<taid::stamp::PublicKey> key;
  if (text->find("PRIVATE KEY") != std::string::npos) {
    auto signing = taid::stamp::SigningKey::from_pem(*text);
    if (!signing) return fail(o, {kExitIo, strcat(o.key, ": ", signing.error().message())});
    key = signing->public_key();
  } else {
    auto parsed = taid::stamp::PublicKey::parse(*text);
    if (!parsed) return fail(o, {kExitIo, strcat(o.key, ": ", parsed.error().message())});
    key = *parsed;
  }
  if (o.json_out) {
    std::cout << json{{"ok", true},
                      {"pem", key->pem()},
                      {"hex", key->hex()},
                      {"key_id", taid::stamp::to_hex(key->key_id())}}
                     .dump()
              << "\n";
  } else {
    std::printf("%skey id  %s\nhex     %s\n", key->pem().c_str(),
                taid::stamp::to_hex(key->key_id()).c_str(), key->hex().c_str());
  }
  return kExitOk;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  auto need_value = [&](int& i, const std::string& flag) -> std::optional<std::string> {
    if (i + 1 >= argc) return std::nullopt;
    (void)flag;
    return std::string(argv[++i]);
  };
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    std::optional<std::string> value;
    auto take = [&](std::string& into) {
      value = need_value(i, arg);
      if (value) into = *value;
      return value.has_value();
    };
    bool ok = true;
    if (arg == "-h" || arg == "--help") {
      std::fputs(kUsage, stdout);
      return kExitOk;
    } else if (arg == "--json") {
      o.json_out = true;
    } else if (arg == "-s") {
      ok = take(o.socket_path);
    } else if (arg == "-o") {
      ok = take(o.output);
    } else if (arg == "--pubkey") {
      ok = take(o.pubkey);
    } else if (arg == "--key") {
      ok = take(o.key);
    } else if (arg == "--leapseclist") {
      ok = take(o.leap_path);
    } else if (arg == "--meta") {
      std::string m;
      ok = take(m);
      if (ok) o.meta.push_back(m);
    } else if (!arg.empty() && arg[0] == '-') {
      return fail(o, {kExitUsage, strcat("unknown option ", arg)});
    } else if (o.command.empty()) {
      o.command = arg;
    } else {
      o.positional.push_back(arg);
    }
    if (!ok) return fail(o, {kExitUsage, strcat(arg, " needs a value")});
  }
  if (o.command == "sign") return run_sign(o);
  if (o.command == "verify") return run_verify(o);
  if (o.command == "pubkey") return run_pubkey(o);
  return fail(
      o, {kExitUsage, o.command.empty() ? "no command" : strcat("unknown command ", o.command)});
}
