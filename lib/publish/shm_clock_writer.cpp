// ShmClockWriter: create or take over the record file, map it, publish under the seqlock.
#include "publish/shm_clock_writer.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstddef>
#include <cstdlib>
#include <utility>
#include <vector>

#include "core/fd.hpp"

namespace taid::publish {
namespace {

constexpr size_t kRecordSize = sizeof(taid_clock_record);
static_assert(kRecordSize == 96, "the record's layout is part of the format");
static_assert(offsetof(taid_clock_record, seq) == 16);
static_assert(offsetof(taid_clock_record, boot_id) == 64);
static_assert(std::atomic_ref<uint64_t>::is_always_lock_free &&
                  std::atomic_ref<int64_t>::is_always_lock_free &&
                  std::atomic_ref<uint32_t>::is_always_lock_free,
              "readers in other processes need lock-free atomics");

struct Opened {
  Fd fd;  // held open for its lock
  taid_clock_record* record = nullptr;
};

template <typename T>
void store_relaxed(T& field, T value) {
  std::atomic_ref<T>(field).store(value, std::memory_order_relaxed);
}

Error path_error(const std::string& path, const char* step) {
  return Error::from_errno("shm clock record " + path + ": " + step);
}

taid_clock_record* map_record(int fd) {
  void* p = ::mmap(nullptr, kRecordSize, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  return p == MAP_FAILED ? nullptr : static_cast<taid_clock_record*>(p);
}

// Locks the record for this writer: one writer per file, or the seqlock breaks.
bool lock_exclusive(int fd) { return ::flock(fd, LOCK_EX | LOCK_NB) == 0; }

// The file already on the path, locked and mapped, when it is ours and of this format; a null
// record when it is not (the caller replaces it); an error when another writer holds it.
Result<Opened> take_over(const std::string& path) {
  Opened o{Fd(::open(path.c_str(), O_RDWR | O_NOFOLLOW | O_CLOEXEC)), nullptr};
  if (!o.fd) return Opened{};
  struct stat st {};
  if (::fstat(o.fd.get(), &st) != 0 || !S_ISREG(st.st_mode) || st.st_uid != ::geteuid() ||
      (st.st_mode & (S_IWGRP | S_IWOTH)) != 0 || st.st_size != static_cast<off_t>(kRecordSize)) {
    return Opened{};
  }
  taid_clock_record* r = map_record(o.fd.get());
  if (r == nullptr) return Opened{};
  if (std::atomic_ref<uint64_t>(r->magic).load(std::memory_order_relaxed) != TAID_CLOCK_MAGIC ||
      std::atomic_ref<uint16_t>(r->version).load(std::memory_order_relaxed) != TAID_CLOCK_VERSION) {
    ::munmap(r, kRecordSize);
    return Opened{};
  }
  if (!lock_exclusive(o.fd.get())) {
    Error e = path_error(path, "locked by another writer (is another taid running?)");
    ::munmap(r, kRecordSize);
    return e;
  }
  o.record = r;
  return o;
}

// A fresh, initialized file renamed onto the path (readers never see it half made).
Result<Opened> create_fresh(const std::string& path) {
  std::string tmp = path + ".XXXXXX";
  std::vector<char> name(tmp.begin(), tmp.end());
  name.push_back('\0');
  Fd fd(::mkostemp(name.data(), O_CLOEXEC));
  if (!fd) return path_error(path, "create a temporary file beside it");
  auto fail = [&](const char* step) {
    Error e = path_error(path, step);
    ::unlink(name.data());
    return e;
  };
  // 0644 whatever the umask: readers of any user map it read-only.
  if (::fchmod(fd.get(), 0644) != 0) return fail("chmod 0644");
  if (::ftruncate(fd.get(), static_cast<off_t>(kRecordSize)) != 0) return fail("set its size");
  if (!lock_exclusive(fd.get())) return fail("lock");
  taid_clock_record* r = map_record(fd.get());
  if (r == nullptr) return fail("mmap");
  r->magic = TAID_CLOCK_MAGIC;  // zero-filled otherwise; seq 0 reads as "never published"
  r->size = static_cast<uint32_t>(kRecordSize);
  r->version = static_cast<uint16_t>(TAID_CLOCK_VERSION);
  if (::rename(name.data(), path.c_str()) != 0) {
    Error e = fail("rename the new file onto it");
    ::munmap(r, kRecordSize);
    return e;
  }
  return Opened{std::move(fd), r};
}

}  // namespace

uint32_t max_drift_ppb(double max_clock_error_ppm, double skew_ppb) {
  constexpr uint32_t kCap = TAID_CLOCK_MAX_DRIFT_PPB - 1;
  const double ppb = max_clock_error_ppm * 1000.0 + std::max(skew_ppb, 0.0);
  if (!(ppb < static_cast<double>(kCap))) return kCap;  // also NaN
  if (ppb <= 0) return 0;
  return static_cast<uint32_t>(std::ceil(ppb));
}

Result<ShmClockWriter> ShmClockWriter::open(const std::string& path) {
  if (path.empty()) return Error::plain("shm clock record: empty path");
  auto taken = take_over(path);
  if (!taken) return taken.error();
  Opened o = std::move(*taken);
  if (o.record == nullptr) {
    auto fresh = create_fresh(path);
    if (!fresh) return fresh.error();
    o = std::move(*fresh);
  }
  ShmClockWriter w(path, std::move(o.fd), o.record);
  w.publish(ClockRecordValues{});  // status unknown until the daemon knows better
  return w;
}

ShmClockWriter::ShmClockWriter(std::string path, Fd fd, taid_clock_record* record)
    : path_(std::move(path)), fd_(std::move(fd)), record_(record) {
  (void)taid_clock_read_boot_id(boot_id_);  // zeros if /proc does not say: readers skip the check
}

ShmClockWriter::ShmClockWriter(ShmClockWriter&& other) noexcept
    : path_(std::move(other.path_)),
      fd_(std::move(other.fd_)),
      record_(std::exchange(other.record_, nullptr)),
      publications_(other.publications_),
      boot_id_{other.boot_id_[0], other.boot_id_[1]} {}

ShmClockWriter& ShmClockWriter::operator=(ShmClockWriter&& other) noexcept {
  if (this != &other) {
    close();
    path_ = std::move(other.path_);
    fd_ = std::move(other.fd_);
    record_ = std::exchange(other.record_, nullptr);
    publications_ = other.publications_;
    boot_id_[0] = other.boot_id_[0];
    boot_id_[1] = other.boot_id_[1];
  }
  return *this;
}

ShmClockWriter::~ShmClockWriter() { close(); }

void ShmClockWriter::close() {
  if (record_ == nullptr) return;
  publish(ClockRecordValues{});  // unknown, void_after 0: readers stop trusting it at once
  ::munmap(record_, kRecordSize);
  record_ = nullptr;
  fd_.reset();  // releases the lock, after the last publication
}

uint64_t ShmClockWriter::sequence() const {
  if (record_ == nullptr) return 0;
  return std::atomic_ref<uint64_t>(record_->seq).load(std::memory_order_relaxed);
}

void ShmClockWriter::publish(const ClockRecordValues& v) {
  if (record_ == nullptr) return;
  taid_clock_record& r = *record_;
  std::atomic_ref<uint64_t> seq(r.seq);
  // One writer: its own load needs no ordering. A seq left odd by a writer that died
  // mid-publish goes up by two, so it stays odd until this publication ends.
  const uint64_t old = seq.load(std::memory_order_relaxed);
  const uint64_t begin = (old & 1u) != 0 ? old + 2 : old + 1;
  seq.store(begin, std::memory_order_relaxed);
  // Orders the odd seq before every field store: a reader that sees a new field sees seq odd
  // (or changed) when it checks again after its acquire fence.
  std::atomic_thread_fence(std::memory_order_release);

  store_relaxed(r.magic, TAID_CLOCK_MAGIC);
  store_relaxed(r.size, static_cast<uint32_t>(kRecordSize));
  store_relaxed(r.version, static_cast<uint16_t>(TAID_CLOCK_VERSION));
  store_relaxed(r.as_of_mono_ns, v.as_of_mono_ns);
  store_relaxed(r.bound_ns, v.bound_ns);
  store_relaxed(r.void_after_mono_ns, v.void_after_mono_ns);
  store_relaxed(r.max_drift_ppb, v.max_drift_ppb);
  store_relaxed(r.tai_offset_s, v.tai_offset_s);
  store_relaxed(r.status, static_cast<uint32_t>(v.status));
  store_relaxed(r.flags, v.tai_vouched ? TAID_CLOCK_FLAG_TAI_VOUCHED : 0u);
  store_relaxed(r.boot_id[0], boot_id_[0]);
  store_relaxed(r.boot_id[1], boot_id_[1]);
  store_relaxed(r.writer_pid, static_cast<uint32_t>(::getpid()));
  store_relaxed(r.publications, ++publications_);

  seq.store(begin + 1, std::memory_order_release);
}

}  // namespace taid::publish
