// Unit tests for the control socket: one line in, one JSON out; bad clients and paths.
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <future>
#include <string>

#include "daemon/control.hpp"

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

}  // namespace
}  // namespace taid::daemon
