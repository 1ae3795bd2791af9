// Tests for the drift file: chrony's format and sign, every way a file can be wrong, and the
// atomic replacement (a failed write leaves the old file and no temporary file behind).
#include <linux/capability.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <thread>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "clock/null_driver.hpp"
#include "daemon/config.hpp"
#include "daemon/drift_file.hpp"
#include "daemon/engine.hpp"

namespace taid::daemon {
namespace {

namespace fs = std::filesystem;

class DriftFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string templ = (fs::temp_directory_path() / "taid-drift-XXXXXX").string();
    ASSERT_NE(::mkdtemp(templ.data()), nullptr);
    dir_ = templ;
    path_ = dir_ + "/drift";
  }
  void TearDown() override {
    std::error_code ec;
    fs::permissions(dir_, fs::perms::owner_all, ec);
    fs::remove_all(dir_, ec);
  }

  void put(const std::string& content) const {
    std::ofstream out(path_, std::ios::binary | std::ios::trunc);
    out << content;
  }
  std::string contents() const {
    std::ifstream in(path_, std::ios::binary);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }
  std::vector<std::string> entries() const {
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(dir_)) names.push_back(e.path().filename());
    return names;
  }
  std::string read_error(const std::string& content) const {
    put(content);
    const auto r = read_drift_file(path_);
    if (r.ok()) return "(read fine)";
    return r.error().message();
  }

  std::string dir_;
  std::string path_;
};

TEST_F(DriftFileTest, ReadsChronysFormatWithChronysSign) {
  // As chrony writes it: the clock gains 12.345678 ppm, so the correction is -12.345678.
  put("           12.345678             0.123456\n");
  const auto r = read_drift_file(path_);
  ASSERT_TRUE(r.ok()) << r.error().message();
  ASSERT_TRUE(r->has_value());
  EXPECT_DOUBLE_EQ((*r)->frequency_ppm, -12.345678);
  ASSERT_TRUE((*r)->skew_ppm.has_value());
  EXPECT_DOUBLE_EQ(*(*r)->skew_ppm, 0.123456);
}

TEST_F(DriftFileTest, SkewIsOptionalAndNoNewlineIsFine) {
  put("-3.5");
  const auto r = read_drift_file(path_);
  ASSERT_TRUE(r.ok()) << r.error().message();
  ASSERT_TRUE(r->has_value());
  EXPECT_EQ((*r)->frequency_ppm, 3.5);
  EXPECT_FALSE((*r)->skew_ppm.has_value());
}

TEST_F(DriftFileTest, TheLimitsThemselvesAreAccepted) {
  put("500 0\n");
  auto r = read_drift_file(path_);
  ASSERT_TRUE(r.ok()) << r.error().message();
  EXPECT_EQ((*r)->frequency_ppm, -500);
  put("+0 1000000\n");
  r = read_drift_file(path_);
  ASSERT_TRUE(r.ok()) << r.error().message();
  EXPECT_EQ((*r)->frequency_ppm, 0);
  EXPECT_FALSE(std::signbit((*r)->frequency_ppm));
  EXPECT_EQ(*(*r)->skew_ppm, 1e6);
}

TEST_F(DriftFileTest, MissingFileIsNoDriftFileYetNotAnError) {
  const auto r = read_drift_file(path_);
  ASSERT_TRUE(r.ok()) << r.error().message();
  EXPECT_FALSE(r->has_value());
  const auto in_missing_dir = read_drift_file(dir_ + "/no/such/dir/drift");
  ASSERT_TRUE(in_missing_dir.ok());
  EXPECT_FALSE(in_missing_dir->has_value());
}

TEST_F(DriftFileTest, CorruptFieldsAreNamed) {
  EXPECT_EQ(read_error("abc 0.1\n"), path_ + ":1: frequency: not a number");
  EXPECT_EQ(read_error("12.5x 0.1\n"), path_ + ":1: frequency: not a number");
  EXPECT_EQ(read_error("nan 0.1\n"), path_ + ":1: frequency: not a number");
  EXPECT_EQ(read_error("0x10 0.1\n"), path_ + ":1: frequency: not a number");
  EXPECT_EQ(read_error("1.0 fast\n"), path_ + ":1: skew: not a number");
  EXPECT_EQ(read_error("\n\n  abc\n"), path_ + ":3: frequency: not a number");
}

TEST_F(DriftFileTest, OutOfRange) {
  EXPECT_EQ(read_error("812 0.1\n"), path_ + ":1: frequency: 812 ppm is out of range ±500 ppm");
  EXPECT_EQ(read_error("-500.5\n"), path_ + ":1: frequency: -500.5 ppm is out of range ±500 ppm");
  EXPECT_EQ(read_error("inf\n"), path_ + ":1: frequency: inf ppm is out of range ±500 ppm");
  EXPECT_EQ(read_error("1 -0.5\n"), path_ + ":1: skew: -0.5 ppm is out of range 0..1000000 ppm");
  EXPECT_EQ(read_error("1 2e6\n"), path_ + ":1: skew: 2000000 ppm is out of range 0..1000000 ppm");
}

TEST_F(DriftFileTest, TrailingGarbage) {
  EXPECT_EQ(read_error("1.0 0.1 extra\n"), path_ + ":1: trailing garbage: 'extra'");
  EXPECT_EQ(read_error("1.0 0.1\n2.0 0.2\n"), path_ + ":2: trailing garbage: '2.0'");
  // The skew must be on the frequency's line: on the next one it is garbage.
  EXPECT_EQ(read_error("1.0\n0.1\n"), path_ + ":2: trailing garbage: '0.1'");
}

TEST_F(DriftFileTest, EmptyFile) {
  EXPECT_EQ(read_error(""), path_ + ":1: empty file");
  EXPECT_EQ(read_error("\n  \n\t\n"), path_ + ":1: empty file");
}

TEST_F(DriftFileTest, HugeFileIsRefusedUnread) {
  EXPECT_EQ(read_error(std::string(5000, ' ') + "1.0\n"),
            path_ + ": over 4096 bytes, not a drift file");
}

TEST_F(DriftFileTest, RoundTripInChronysExactLayout) {
  ASSERT_TRUE(write_drift_file(path_, -12.345678, 0.25).ok());
  EXPECT_EQ(contents(), "           12.345678             0.250000\n");
  const auto r = read_drift_file(path_);
  ASSERT_TRUE(r.ok()) << r.error().message();
  EXPECT_DOUBLE_EQ((*r)->frequency_ppm, -12.345678);
  EXPECT_DOUBLE_EQ(*(*r)->skew_ppm, 0.25);

  ASSERT_TRUE(write_drift_file(path_, 0.0, 0.0).ok());
  EXPECT_EQ(contents(), "            0.000000             0.000000\n");  // never "-0.000000"
  ASSERT_TRUE(write_drift_file(path_, 499.9999994, 3).ok());
  EXPECT_EQ(contents(), "         -499.999999             3.000000\n");
  EXPECT_EQ(entries(), std::vector<std::string>{"drift"});  // no temporary file left
}

TEST_F(DriftFileTest, ReplacingKeepsTheOldPermissionsAndANewFileIs0644) {
  ASSERT_TRUE(write_drift_file(path_, 1, 1).ok());
  struct stat st {};
  ASSERT_EQ(::stat(path_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0644u);
  ASSERT_EQ(::chmod(path_.c_str(), 0640), 0);
  ASSERT_TRUE(write_drift_file(path_, 2, 1).ok());
  ASSERT_EQ(::stat(path_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0640u);
}

TEST_F(DriftFileTest, RefusesToWriteWhatItCouldNotReadBack) {
  put("old\n");
  auto w = write_drift_file(path_, 812, 1);
  ASSERT_FALSE(w.ok());
  EXPECT_EQ(w.error().message(),
            path_ + ": frequency 812 ppm is out of range ±500 ppm, not written");
  w = write_drift_file(path_, 1, -1);
  ASSERT_FALSE(w.ok());
  EXPECT_EQ(w.error().message(),
            path_ + ": skew -1 ppm is out of range 0..1000000 ppm, not written");
  EXPECT_EQ(contents(), "old\n");
}

// Root writes into a read-only directory anyway (CAP_DAC_OVERRIDE): while this lives, the
// thread's effective set lacks the capabilities that bypass file permissions; it restores them.
class WithoutFilePermissionOverride {
 public:
  WithoutFilePermissionOverride() {
    if (syscall(SYS_capget, &header_, saved_) != 0) return;
    __user_cap_data_struct lowered[_LINUX_CAPABILITY_U32S_3];
    std::copy(std::begin(saved_), std::end(saved_), std::begin(lowered));
    lowered[0].effective &=
        ~((1u << CAP_DAC_OVERRIDE) | (1u << CAP_DAC_READ_SEARCH) | (1u << CAP_FOWNER));
    ok_ = syscall(SYS_capset, &header_, lowered) == 0;
  }
  ~WithoutFilePermissionOverride() {
    if (ok_) syscall(SYS_capset, &header_, saved_);
  }
  bool ok() const { return ok_; }

 private:
  __user_cap_header_struct header_{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct saved_[_LINUX_CAPABILITY_U32S_3]{};
  bool ok_ = false;
};

TEST_F(DriftFileTest, FailedWriteInAReadOnlyDirectoryLeavesTheOldFile) {
  ASSERT_TRUE(write_drift_file(path_, -7, 0.5).ok());
  const std::string before = contents();
  ASSERT_EQ(::chmod(dir_.c_str(), 0555), 0);
  Result<void> w;
  {
    WithoutFilePermissionOverride guard;
    ASSERT_TRUE(guard.ok());
    w = write_drift_file(path_, 42, 1);
  }
  ASSERT_EQ(::chmod(dir_.c_str(), 0755), 0);
  ASSERT_FALSE(w.ok());
  EXPECT_EQ(w.error().message(),
            path_ + ": create a temporary file in " + dir_ + ": Permission denied");
  EXPECT_EQ(contents(), before);
  EXPECT_EQ(entries(), std::vector<std::string>{"drift"});
}

TEST_F(DriftFileTest, FailedRenameRemovesTheTemporaryFile) {
  // The path is a non-empty directory: the temporary file is written, the rename fails.
  ASSERT_TRUE(fs::create_directory(path_));
  { std::ofstream(path_ + "/keep") << "x"; }
  const auto w = write_drift_file(path_, 1, 1);
  ASSERT_FALSE(w.ok());
  EXPECT_EQ(w.error().message().rfind(path_ + ": rename " + dir_ + "/.drift.", 0), 0u)
      << w.error().message();
  EXPECT_NE(w.error().message().find(" over it: Is a directory"), std::string::npos)
      << w.error().message();
  EXPECT_EQ(entries(), std::vector<std::string>{"drift"});
  EXPECT_TRUE(fs::exists(path_ + "/keep"));
}

// The periodic write, through a running engine: it disciplines (through the null driver, which
// never reaches the kernel) to a second engine serving `local stratum 10` on a loopback port,
// with the interval cut from an hour to 2 s; the file appears while the engine runs, holds the
// frequency the core has, and nothing was written to this machine's clock.
TEST_F(DriftFileTest, RunningEngineWritesItAtTheInterval) {
  // A free UDP port on loopback (bound and released; the server binds it next).
  uint16_t port = 0;
  {
    const int fd = ::socket(AF_INET, SOCK_DGRAM, 0);
    ASSERT_GE(fd, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    socklen_t len = sizeof addr;
    ASSERT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len), 0);
    port = ntohs(addr.sin_port);
    ::close(fd);
  }
  const std::string p = std::to_string(port);
  const Config server_config =
      parse_config("port " + p + "\nbindaddress 127.0.0.1\nallow 127.0.0.1\nlocal stratum 10\n" +
                       "timestamping user\n",
                   "drift-server.conf");
  Config config = parse_config("server 127.0.0.1 port " + p + " iburst minpoll -4 maxpoll -4\n" +
                                   "timestamping user\ndriftfile " + path_ + "\n",
                               "drift-client.conf");
  config.drift_write_interval = std::chrono::seconds(2);
  clock::NullClockDriver driver;
  boost::asio::io_context io;
  bool written_while_running = false;
  uint64_t updates = 0;
  {
    clock::NullClockDriver server_driver;
    Engine server(io, server_config, server_driver, "-x");
    server.start();
    Engine engine(io, config, driver, std::nullopt);
    engine.start();
    std::thread runner([&io] { io.run(); });
    for (int i = 0; i < 200 && !written_while_running; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      written_while_running = fs::exists(path_);
    }
    io.stop();
    runner.join();
    updates = engine.query("tracking")["updates"].get<uint64_t>();
  }
  EXPECT_TRUE(written_while_running) << "no drift file within 10 s";
  EXPECT_GT(updates, 0U);
  auto read = read_drift_file(path_);
  ASSERT_TRUE(read.ok()) << read.error().message();
  ASSERT_TRUE(read.value().has_value());
  // Disciplined against itself through a driver that changes nothing: a frequency near zero.
  EXPECT_LT(std::abs(read.value()->frequency_ppm), 50);
  EXPECT_GT(driver.suppressed_writes(), 0U);  // the core did steer; the kernel never saw it
}

}  // namespace
}  // namespace taid::daemon
