// Key and serial stores on a real file system: modes, reloads, restarts, and kill -9 mid-batch.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "stamp/key_store.hpp"
#include "stamp/serial_store.hpp"

namespace taid::stamp {
namespace {

class StampStore : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/taid-stamp-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string path(const char* name) const { return dir_ + "/" + name; }
  static std::string read(const std::string& p) {
    std::ifstream in(p);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }
  std::string dir_;
};

TEST_F(StampStore, KeyIsCreatedWithMode0600AndLoadedAgain) {
  const mode_t old_umask = ::umask(0);  // the most permissive umask: 0600 must still hold
  auto created = load_or_create_signing_key(path("key.pem"));
  ::umask(old_umask);
  ASSERT_TRUE(created) << created.error().message();
  EXPECT_TRUE(created->created);
  struct stat st {};
  ASSERT_EQ(::stat(path("key.pem").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  EXPECT_TRUE(read(path("key.pem")).starts_with("-----BEGIN PRIVATE KEY-----\n"));
  auto again = load_or_create_signing_key(path("key.pem"));
  ASSERT_TRUE(again) << again.error().message();
  EXPECT_FALSE(again->created);
  EXPECT_EQ(again->key.public_key(), created->key.public_key());
  // Nothing else was left in the directory (the temporary name is gone).
  int entries = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(dir_)) ++entries;
  EXPECT_EQ(entries, 1);
}

TEST_F(StampStore, KeyWithLooserModeOrWrongContentIsRefused) {
  ASSERT_TRUE(load_or_create_signing_key(path("key.pem")));
  for (const mode_t mode : {0640, 0604, 0620, 0602, 0644}) {
    ASSERT_EQ(::chmod(path("key.pem").c_str(), mode), 0);
    const auto r = load_or_create_signing_key(path("key.pem"));
    ASSERT_FALSE(r) << std::oct << mode;
    EXPECT_NE(r.error().context.find("lets others read or write it"), std::string::npos);
  }
  ASSERT_EQ(::chmod(path("key.pem").c_str(), 0400), 0);  // read-only for the owner is fine
  EXPECT_TRUE(load_signing_key(path("key.pem")));

  std::ofstream(path("bad.pem")) << "not a key\n";
  ASSERT_EQ(::chmod(path("bad.pem").c_str(), 0600), 0);
  const auto bad = load_or_create_signing_key(path("bad.pem"));
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().context.find("not an unencrypted PEM private key"), std::string::npos);
  EXPECT_FALSE(load_or_create_signing_key(dir_));  // a directory
  EXPECT_FALSE(load_or_create_signing_key(path("missing/key.pem")));
}

TEST_F(StampStore, SerialsIncreaseAcrossRestartsAndTheCeilingIsOnDisk) {
  std::uint64_t last = 0;
  {
    auto s = SerialStore::open(path("serial"), 10);
    ASSERT_TRUE(s);
    EXPECT_EQ(*s->reserve(1), 1u);  // a fresh store starts at 1
    EXPECT_EQ(read(path("serial")), "taid serial ceiling 12\n");
    EXPECT_EQ(*s->reserve(3), 2u);
    EXPECT_EQ(*s->reserve(7), 5u);  // 5..11, still below 12: no write
    EXPECT_EQ(read(path("serial")), "taid serial ceiling 12\n");
    last = *s->reserve(1);  // 12 crosses: ceiling 12 + 1 + 10
    EXPECT_EQ(last, 12u);
    EXPECT_EQ(read(path("serial")), "taid serial ceiling 23\n");
  }
  auto s = SerialStore::open(path("serial"), 10);
  ASSERT_TRUE(s);
  EXPECT_EQ(*s->reserve(1), 23u);  // continues from the ceiling: 13..22 are skipped, not reused
  EXPECT_FALSE(std::filesystem::exists(path("serial.tmp")));
}

TEST_F(StampStore, CorruptSerialFileIsRefusedNotRestarted) {
  for (const char* text : {"", "taid serial ceiling \n", "taid serial ceiling 12", "12\n",
                           "taid serial ceiling 0\n", "taid serial ceiling 1x\n"}) {
    std::ofstream(path("serial"), std::ios::trunc) << text;
    const auto r = SerialStore::open(path("serial"));
    ASSERT_FALSE(r) << '"' << text << '"';
    EXPECT_NE(r.error().context.find("refusing to start over"), std::string::npos);
  }
}

// A child issues serials in batches and reports each one over a pipe as it hands it out; the
// parent SIGKILLs it at a random moment (mid-batch, mid-write of the ceiling, anywhere), then
// reopens the store, as a restarted daemon would. Five rounds, each on the previous one's file.
TEST_F(StampStore, SerialsIncreaseAcrossKillNineMidBatch) {
  std::uint64_t highest = 0;
  std::srand(12345);
  for (int round = 0; round < 5; ++round) {
    int fds[2];
    ASSERT_EQ(::pipe(fds), 0);
    const pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
      ::close(fds[0]);
      auto s = SerialStore::open(path("serial"), 16);
      if (!s) ::_exit(2);
      for (std::uint64_t batch = 1;; ++batch) {
        const std::uint64_t count = 1 + batch % 7;
        auto first = s->reserve(count);
        if (!first) ::_exit(3);
        for (std::uint64_t i = 0; i < count; ++i) {
          const std::uint64_t serial = *first + i;
          if (::write(fds[1], &serial, sizeof serial) != sizeof serial) ::_exit(4);
        }
      }
    }
    ::close(fds[1]);
    // Let it issue a few hundred serials (and many ceiling writes), then kill it.
    const int wanted = 200 + std::rand() % 400;
    std::uint64_t previous = highest;
    int seen = 0;
    std::uint64_t serial = 0;
    while (seen < wanted && ::read(fds[0], &serial, sizeof serial) == sizeof serial) {
      ASSERT_GT(serial, previous) << "round " << round;
      previous = serial;
      ++seen;
    }
    ASSERT_EQ(::kill(child, SIGKILL), 0);
    int status = 0;
    ASSERT_EQ(::waitpid(child, &status, 0), child);
    ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << "child ended otherwise";
    // Everything it wrote before dying counts as handed out.
    while (::read(fds[0], &serial, sizeof serial) == sizeof serial) {
      ASSERT_GT(serial, previous);
      previous = serial;
      ++seen;
    }
    ::close(fds[0]);
    ASSERT_GE(seen, wanted);
    highest = previous;
    auto s = SerialStore::open(path("serial"), 16);
    ASSERT_TRUE(s) << s.error().message();
    const std::uint64_t next = s->next();
    EXPECT_GT(next, highest) << "round " << round;
    // The loss is bounded: at most one block (+ one batch) of numbers skipped.
    EXPECT_LE(next, highest + 1 + 16 + 7) << "round " << round;
  }
}

}  // namespace
}  // namespace taid::stamp
