// Unit tests for the control socket: one line in, one JSON out; bad clients and paths. Every
// test runs the real server on a Unix socket under a temp dir, with clients on other threads.
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include "clock/null_driver.hpp"
#include "daemon/control.hpp"
#include "daemon/engine.hpp"

namespace taid::daemon {
namespace {

namespace fs = std::filesystem;

class ControlTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/taid-control-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    path_ = (dir_ / "taid.sock").string();
  }
  void TearDown() override { fs::remove_all(dir_); }

  // Sends `request` as is and returns everything the server wrote back.
  static std::string exchange(const std::string& path, const std::string& request) {
    const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path.c_str());
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      ::close(fd);
      return "connect failed";
    }
    (void)!::send(fd, request.data(), request.size(), MSG_NOSIGNAL);
    std::string answer;
    char buf[4096];
    for (ssize_t n; (n = ::read(fd, buf, sizeof buf)) > 0;)
      answer.append(buf, static_cast<size_t>(n));
    ::close(fd);
    return answer;
  }

  std::string ask(const std::string& request) {
    boost::asio::io_context io;
    ControlServer server(io, path_, [](std::string_view r) {
      return nlohmann::json{{"echo", std::string(r)}};
    });
    EXPECT_TRUE(server.start().ok());
    auto answer = std::async(std::launch::async, [&] { return exchange(path_, request); });
    while (answer.wait_for(std::chrono::milliseconds(0)) != std::future_status::ready)
      io.run_for(std::chrono::milliseconds(10));
    return answer.get();
  }

  fs::path dir_;
  std::string path_;
};

TEST_F(ControlTest, OneLineInOneJsonOut) {
  EXPECT_EQ(ask("sources\n"), "{\"echo\":\"sources\"}\n");
  EXPECT_EQ(ask("filter a\r\n"), "{\"echo\":\"filter a\"}\n");
}

TEST_F(ControlTest, OverlongRequestGetsAnError) {
  const std::string answer = ask(std::string(5000, 'x') + "\n");
  EXPECT_NE(answer.find("request longer than 1024 bytes"), std::string::npos) << answer;
}

TEST_F(ControlTest, RefusesToReplaceAFileThatIsNotASocket) {
  { std::ofstream(path_) << "precious"; }
  boost::asio::io_context io;
  ControlServer server(io, path_, [](std::string_view) { return nlohmann::json{}; });
  const auto started = server.start();
  ASSERT_FALSE(started.ok());
  EXPECT_NE(started.error().message().find("not a socket"), std::string::npos);
  std::ifstream in(path_);
  std::string content;
  in >> content;
  EXPECT_EQ(content, "precious");
}

TEST_F(ControlTest, RemovesItsSocketOnExit) {
  {
    boost::asio::io_context io;
    ControlServer server(io, path_, [](std::string_view) { return nlohmann::json{}; });
    ASSERT_TRUE(server.start().ok());
    EXPECT_TRUE(fs::is_socket(path_));
  }
  EXPECT_FALSE(fs::exists(path_));
}

// A raw client on its own descriptor, for the tests that misbehave on purpose.
class Client {
 public:
  explicit Client(const std::string& path) : fd_(::socket(AF_UNIX, SOCK_STREAM, 0)) {
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path.c_str());
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  }
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;
  ~Client() { ::close(fd_); }
  bool connected() const { return connected_; }
  void send(const std::string& bytes) {
    (void)!::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
  }
  void end_request() { ::shutdown(fd_, SHUT_WR); }
  // Everything the server writes until it closes, or what came before `timeout`.
  std::string read_all(std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    std::string answer;
    char buf[65536];
    for (;;) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) break;
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) break;
      const ssize_t n = ::read(fd_, buf, sizeof buf);
      if (n <= 0) {
        closed_ = true;
        break;
      }
      answer.append(buf, static_cast<size_t>(n));
    }
    return answer;
  }
  bool closed() const { return closed_; }

 private:
  int fd_;
  bool connected_ = false;
  bool closed_ = false;
};

// The server on its own io thread, so that clients on the test's thread can misbehave at will.
class RunningServer {
 public:
  RunningServer(const std::string& path, ControlServer::Handler handler)
      : server_(io_, path, std::move(handler)) {
    started_ = server_.start().ok();
    thread_ = std::thread([this] {
      auto guard = boost::asio::make_work_guard(io_);
      io_.run();
    });
  }
  ~RunningServer() {
    io_.stop();
    thread_.join();
  }
  bool started() const { return started_; }

 private:
  boost::asio::io_context io_;
  ControlServer server_;
  bool started_ = false;
  std::thread thread_;
};

nlohmann::json echo(std::string_view r) { return nlohmann::json{{"echo", std::string(r)}}; }

TEST_F(ControlTest, RequestEndedByEndOfStreamWithoutNewlineIsAnswered) {
  // `printf sources | socat - UNIX:...` sends no newline; the end of the stream ends the line.
  RunningServer server(path_, echo);
  ASSERT_TRUE(server.started());
  Client client(path_);
  ASSERT_TRUE(client.connected());
  client.send("sources");
  client.end_request();
  EXPECT_EQ(client.read_all(std::chrono::seconds(3)), "{\"echo\":\"sources\"}\n");
}

TEST_F(ControlTest, SlowClientGetsAnErrorAndDoesNotDelayOthers) {
  RunningServer server(path_, echo);
  ASSERT_TRUE(server.started());
  Client slow(path_);
  ASSERT_TRUE(slow.connected());
  const auto start = std::chrono::steady_clock::now();
  slow.send("sour");  // half a line, then nothing
  {
    Client normal(path_);
    normal.send("tracking\n");
    EXPECT_EQ(normal.read_all(std::chrono::seconds(1)), "{\"echo\":\"tracking\"}\n");
    EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(1));
  }
  const std::string answer = slow.read_all(std::chrono::seconds(5));
  const auto waited = std::chrono::steady_clock::now() - start;
  const auto j = nlohmann::json::parse(answer, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << answer;
  EXPECT_EQ(j.value("error", ""), "no complete request line within 2 s") << answer;
  EXPECT_TRUE(slow.closed());
  EXPECT_GE(waited, std::chrono::milliseconds(1900));
  EXPECT_LT(waited, std::chrono::milliseconds(3500));
}

// Asks until a client gets a JSON answer that is not "busy"; bounded.
std::string ask_when_free(const std::string& path, const std::string& request,
                          std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::string answer;
  while (std::chrono::steady_clock::now() < deadline) {
    Client client(path);
    client.send(request);
    answer = client.read_all(std::chrono::seconds(2));
    if (answer.find("busy") == std::string::npos && !answer.empty()) return answer;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return answer;
}

TEST_F(ControlTest, ClientsBeyondTheCapGetABusyErrorAndTheDaemonServesAfterwards) {
  RunningServer server(path_, echo);
  ASSERT_TRUE(server.started());
  std::vector<std::unique_ptr<Client>> holders;
  for (int i = 0; i < ControlServer::kMaxSessions; ++i) {
    holders.push_back(std::make_unique<Client>(path_));
    ASSERT_TRUE(holders.back()->connected());
  }
  // The backlog is accepted in order, so these come after all the holders.
  for (int i = 0; i < 3; ++i) {
    Client extra(path_);
    ASSERT_TRUE(extra.connected());
    const std::string answer = extra.read_all(std::chrono::seconds(1));
    EXPECT_TRUE(extra.closed()) << "a refused client must be closed at once";
    const auto j = nlohmann::json::parse(answer, nullptr, false);
    ASSERT_FALSE(j.is_discarded()) << "a refused client must be told why: '" << answer << "'";
    EXPECT_NE(j.value("error", "").find("busy"), std::string::npos) << answer;
  }
  holders.clear();  // the sessions end as their clients go away
  EXPECT_EQ(ask_when_free(path_, "sources\n", std::chrono::seconds(2)), "{\"echo\":\"sources\"}\n");
}

TEST_F(ControlTest, ClientsThatNeverReadTheAnswerCannotHoldTheSessions) {
  // An answer far larger than a Unix socket's buffer (about 200 KiB): its write cannot finish
  // unless read.
  const std::string big(1 << 20, 'x');
  RunningServer server(path_, [&](std::string_view r) {
    return r == "big" ? nlohmann::json{{"big", big}} : echo(r);
  });
  ASSERT_TRUE(server.started());
  std::vector<std::unique_ptr<Client>> stalled;
  for (int i = 0; i < ControlServer::kMaxSessions; ++i) {
    stalled.push_back(std::make_unique<Client>(path_));
    stalled.back()->send("big\n");
  }
  const auto start = std::chrono::steady_clock::now();
  // Served once the stalled answers time out (2 s after each was written), with room for a
  // loaded machine; never, when a stalled answer holds its session for good.
  EXPECT_EQ(ask_when_free(path_, "sources\n", std::chrono::seconds(10)),
            "{\"echo\":\"sources\"}\n");
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(8));
}

TEST_F(ControlTest, GarbageBytesGetJsonErrorsFromTheEngineAndServingGoesOn) {
  boost::asio::io_context engine_io;
  clock::NullClockDriver driver;
  Engine engine(engine_io, Config{}, driver, "-x");
  RunningServer server(path_, [&](std::string_view r) { return engine.query(r); });
  ASSERT_TRUE(server.started());
  const std::vector<std::string> garbage{
      std::string("\x00\xff\xfe\x01\x02garbage\n", 13),
      std::string("\0\0\0\n", 4),
      std::string("sources\0tracking\n", 17),
      "\xc3\x28 invalid UTF-8\n",
      "sources sources\n",
      "filter\n",
      "\r\n",
      std::string(3000, '\0') + "\n",
      std::string(1023, 'a') + "\n",
  };
  for (const std::string& request : garbage) {
    Client client(path_);
    client.send(request);
    const std::string answer = client.read_all(std::chrono::seconds(3));
    const auto j = nlohmann::json::parse(answer, nullptr, false);
    ASSERT_FALSE(j.is_discarded()) << "not JSON: '" << answer << "'";
    ASSERT_TRUE(j.is_object() && j.contains("error")) << answer;
    EXPECT_FALSE(j["error"].get<std::string>().empty());
  }
  Client client(path_);
  client.send("tracking\n");
  const auto j = nlohmann::json::parse(client.read_all(std::chrono::seconds(3)), nullptr, false);
  ASSERT_FALSE(j.is_discarded());
  EXPECT_FALSE(j.contains("error")) << j.dump();
  EXPECT_EQ(j.value("leap", ""), "unsynchronized") << j.dump();
}

TEST_F(ControlTest, SecondServerOnALiveSocketFailsAndLeavesItAlone) {
  RunningServer first(path_, echo);
  ASSERT_TRUE(first.started());
  {
    boost::asio::io_context io;
    ControlServer second(io, path_, echo);
    const auto started = second.start();
    ASSERT_FALSE(started.ok());
    EXPECT_NE(started.error().message().find("another daemon is answering"), std::string::npos)
        << started.error().message();
  }  // the second server's destructor must not remove the first one's socket either
  EXPECT_TRUE(fs::is_socket(path_));
  Client client(path_);
  ASSERT_TRUE(client.connected());
  client.send("sources\n");
  EXPECT_EQ(client.read_all(std::chrono::seconds(3)), "{\"echo\":\"sources\"}\n");
}

TEST_F(ControlTest, StaleSocketNobodyAnswersIsReplaced) {
  // A socket file left by a daemon that died: bound, then closed without unlink.
  {
    const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path_.c_str());
    ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    ::close(fd);
  }
  ASSERT_TRUE(fs::is_socket(path_));
  EXPECT_EQ(ask("sources\n"), "{\"echo\":\"sources\"}\n");
}

}  // namespace
}  // namespace taid::daemon
