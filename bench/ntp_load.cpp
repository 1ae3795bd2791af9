// ntp_load: an NTP server load generator (mode-3 requests from many ports, stepped paced rates).
//
// `ntp_load ADDR:PORT [--rates 5k,10k,...] [--seconds S] [--sockets N] [--batch B]
//  [--drain-ms D] [--warmup-s W] [--server-pid PID] [--csv FILE]` sends NTPv4 client requests
// (48 bytes, origin and receive zero, a transmit cookie of sequence<<32 | 32 random bits) from N
// connected UDP sockets (N source ports, so per-port spreading on the server side is exercised),
// one sendmmsg batch per socket in turn, paced by CLOCK_MONOTONIC. Each rate is held S seconds,
// then nothing is sent for D ms so that the step's late replies are counted to it. A reply counts
// when its mode is 4, its stratum is not 0 (a kiss-o'-death is counted apart) and its origin is a
// cookie we sent and have not yet seen answered. Per step: offered/s, sent/s, replies/s, loss (1 -
// replies/sent), reply latency p50/p99 (send call to receive return, 1 us buckets; 100000 means 100
// ms or more), and what tells a limit of the generator from the server's: requests it could not
// send in time (`skipped`), send errors, replies its own sockets dropped (the client netns' UDP
// RcvbufErrors), and its CPU. With --server-pid the server's VmRSS/VmHWM (read under load, at the
// end of the sending phase), CPU (summed with any further PIDs given: --server-pid PID,KTHREAD...)
// and its netns' UDP InDatagrams/RcvbufErrors are added. A first,
// unreported warm-up step (W s, default 1) runs at the first rate. CPU figures include the kernel's
// work done in each process's context (on veth the receive side's softirq often runs in the
// sender's), so they are indications, not an attribution.
//
// `ntp_load --reflect ADDR:PORT [--for S]` is the simplest possible server instead (recvmmsg,
// turn every request into a mode-4 reply in place, sendmmsg; one thread): run against it, the
// generator shows its own round-trip ceiling on this machine. Both modes stop by themselves.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "ntp/packet.hpp"

namespace {

using taid::ntp::kHeaderSize;

constexpr std::size_t kOriginOffset = 24;    // RFC 5905 §7.3: origin timestamp
constexpr std::size_t kTransmitOffset = 40;  // transmit timestamp
constexpr std::size_t kMaxBatch = 64;
constexpr std::size_t kRingBits = 21;          // 2M requests in flight: 5 s at 400k/s
constexpr std::size_t kHistBuckets = 100'000;  // 1 us buckets up to 100 ms, then one overflow

int64_t mono_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

void sleep_until_ns(int64_t t_ns) {
  timespec ts{static_cast<time_t>(t_ns / 1'000'000'000), static_cast<long>(t_ns % 1'000'000'000)};
  while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, nullptr) == EINTR) {
  }
}

uint64_t load_be64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | p[i];
  return v;
}

void store_be64(uint8_t* p, uint64_t v) {
  for (int i = 7; i >= 0; --i, v >>= 8) p[i] = static_cast<uint8_t>(v);
}

// xorshift64*: the nonces need to be unguessable by nothing but chance, not by an adversary.
struct Rng {
  uint64_t s;
  uint32_t next() {
    s ^= s >> 12;
    s ^= s << 25;
    s ^= s >> 27;
    return static_cast<uint32_t>((s * 0x2545F4914F6CDD1DULL) >> 32);
  }
};

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "ntp_load: %s\n", what.c_str());
  std::exit(2);
}

sockaddr_in parse_endpoint(const std::string& text) {
  const auto colon = text.rfind(':');
  if (colon == std::string::npos) die("expected ADDR:PORT, got " + text);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  if (inet_pton(AF_INET, text.substr(0, colon).c_str(), &sa.sin_addr) != 1)
    die("not an IPv4 address: " + text.substr(0, colon));
  sa.sin_port = htons(static_cast<uint16_t>(std::stoi(text.substr(colon + 1))));
  return sa;
}

// "5k" -> 5000, "1.5M" -> 1500000.
double parse_rate(const std::string& text) {
  std::size_t used = 0;
  double v = std::stod(text, &used);
  const std::string suffix = text.substr(used);
  if (suffix == "k" || suffix == "K")
    v *= 1e3;
  else if (suffix == "m" || suffix == "M")
    v *= 1e6;
  else if (!suffix.empty())
    die("bad rate " + text);
  if (v <= 0) die("rate must be > 0: " + text);
  return v;
}

// One field of /proc/.../net/snmp's "Udp:" table (a header line then a value line).
int64_t udp_counter(const std::string& snmp_path, const std::string& name) {
  std::ifstream f(snmp_path);
  std::string header, values;
  while (std::getline(f, header)) {
    if (header.rfind("Udp:", 0) != 0) continue;
    std::getline(f, values);
    std::istringstream h(header), v(values);
    std::string key, val;
    while (h >> key && v >> val)
      if (key == name) return std::stoll(val);
    return -1;
  }
  return -1;
}

// "VmRSS:	  1234 kB" -> 1234.
int64_t status_kb(pid_t pid, const std::string& key) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind(key + ":", 0) == 0) return std::atoll(line.c_str() + key.size() + 1);
  return -1;
}

// utime + stime of a process, ns (all its threads).
int64_t process_cpu_ns(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
  std::string all((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  const auto close = all.rfind(')');  // comm may contain spaces
  if (close == std::string::npos) return -1;
  std::istringstream rest(all.substr(close + 2));
  std::string field;
  int64_t utime = 0, stime = 0;
  for (int i = 3; rest >> field; ++i) {
    if (i == 14) utime = std::stoll(field);
    if (i == 15) {
      stime = std::stoll(field);
      break;
    }
  }
  return (utime + stime) * (1'000'000'000 / sysconf(_SC_CLK_TCK));
}

int64_t self_cpu_ns() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return (int64_t{ru.ru_utime.tv_sec} + ru.ru_stime.tv_sec) * 1'000'000'000 +
         (int64_t{ru.ru_utime.tv_usec} + ru.ru_stime.tv_usec) * 1000;
}

// A request in flight: written by the sender before the send call, claimed once by the receiver
// with a compare-exchange of the cookie to 0 (a duplicate reply finds 0 and is not counted).
struct Slot {
  std::atomic<uint64_t> cookie{0};
  std::atomic<int64_t> sent_ns{0};
  std::atomic<uint32_t> step{0};
};

struct StepCounters {
  std::atomic<uint64_t> replies{0};
  std::atomic<uint64_t> kod{0};
  std::vector<std::atomic<uint32_t>> hist_us;
  StepCounters() : hist_us(kHistBuckets + 1) {}
};

struct Shared {
  std::vector<int> fds;
  std::unique_ptr<Slot[]> ring{new Slot[std::size_t{1} << kRingBits]};
  std::vector<std::unique_ptr<StepCounters>> steps;
  std::atomic<uint64_t> unmatched{0};  // mode 4 but not a cookie in flight (late, dup, foreign)
  std::atomic<bool> stop{false};
};

void receiver(Shared& sh) {
  const int ep = epoll_create1(0);
  for (std::size_t i = 0; i < sh.fds.size(); ++i) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u32 = static_cast<uint32_t>(i);
    epoll_ctl(ep, EPOLL_CTL_ADD, sh.fds[i], &ev);
  }
  std::vector<uint8_t> buf(kMaxBatch * 128);
  mmsghdr msgs[kMaxBatch]{};
  iovec iov[kMaxBatch]{};
  for (std::size_t i = 0; i < kMaxBatch; ++i) {
    iov[i] = {buf.data() + i * 128, 128};
    msgs[i].msg_hdr.msg_iov = &iov[i];
    msgs[i].msg_hdr.msg_iovlen = 1;
  }
  const uint64_t mask = (uint64_t{1} << kRingBits) - 1;
  epoll_event events[256];
  while (!sh.stop.load(std::memory_order_relaxed)) {
    const int n = epoll_wait(ep, events, 256, 50);
    for (int e = 0; e < n; ++e) {
      const int fd = sh.fds[events[e].data.u32];
      for (;;) {
        const int got = recvmmsg(fd, msgs, kMaxBatch, MSG_DONTWAIT, nullptr);
        if (got <= 0) break;  // EAGAIN, or ECONNREFUSED from an ICMP error: nothing to count
        const int64_t rx_ns = mono_ns();
        for (int m = 0; m < got; ++m) {
          const uint8_t* p = buf.data() + m * 128;
          if (msgs[m].msg_len < kHeaderSize || (p[0] & 7) != 4) continue;
          const uint64_t origin = load_be64(p + kOriginOffset);
          Slot& slot = sh.ring[(origin >> 32) & mask];
          uint64_t expected = origin;
          if (origin == 0 ||
              !slot.cookie.compare_exchange_strong(expected, 0, std::memory_order_acq_rel)) {
            sh.unmatched.fetch_add(1, std::memory_order_relaxed);
            continue;
          }
          StepCounters& c = *sh.steps[slot.step.load(std::memory_order_relaxed)];
          if (p[1] == 0) {  // stratum 0: kiss-o'-death (RATE, DENY...), not a time reply
            c.kod.fetch_add(1, std::memory_order_relaxed);
            continue;
          }
          c.replies.fetch_add(1, std::memory_order_relaxed);
          const int64_t us = (rx_ns - slot.sent_ns.load(std::memory_order_relaxed)) / 1000;
          c.hist_us[static_cast<std::size_t>(std::clamp<int64_t>(us, 0, kHistBuckets))].fetch_add(
              1, std::memory_order_relaxed);
        }
        if (static_cast<std::size_t>(got) < kMaxBatch) break;
      }
    }
  }
  close(ep);
}

double hist_percentile_us(const StepCounters& c, uint64_t total, double q) {
  if (total == 0) return NAN;
  const auto rank = static_cast<uint64_t>(std::ceil(q * static_cast<double>(total)));
  uint64_t seen = 0;
  for (std::size_t i = 0; i <= kHistBuckets; ++i) {
    seen += c.hist_us[i].load(std::memory_order_relaxed);
    if (seen >= rank) return static_cast<double>(i);
  }
  return static_cast<double>(kHistBuckets);
}

struct Options {
  sockaddr_in server{};
  std::vector<double> rates{5e3, 10e3, 20e3, 50e3, 100e3, 200e3, 400e3};
  double seconds = 3;
  double warmup_s = 1;
  int sockets = 256;
  std::size_t batch = 32;
  int drain_ms = 300;
  pid_t server_pid = 0;
  std::vector<pid_t> extra_cpu_pids;  // e.g. a NAPI kthread doing an XDP server's work
  std::string csv;
  bool reflect = false;
  double reflect_for_s = 600;
};

int64_t server_cpu_ns(const Options& o) {
  int64_t sum = process_cpu_ns(o.server_pid);
  for (const pid_t pid : o.extra_cpu_pids) sum += std::max<int64_t>(0, process_cpu_ns(pid));
  return sum;
}

int run_load(const Options& o) {
  prctl(PR_SET_TIMERSLACK, 1UL);  // the pacing sleeps are tens of microseconds
  Shared sh;
  for (int i = 0; i < o.sockets; ++i) {
    const int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) die(std::string("socket: ") + std::strerror(errno));
    // Replies this socket cannot hold would read as the server's loss; root may force the size.
    const int rcvbuf = 4 << 20;
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof rcvbuf) != 0)
      setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    if (connect(fd, reinterpret_cast<const sockaddr*>(&o.server), sizeof o.server) != 0)
      die(std::string("connect: ") + std::strerror(errno));
    sh.fds.push_back(fd);
  }
  // Step 0 is an unreported warm-up at the first rate: ARP, the server's first-packet work and
  // page faults on either side would otherwise count against the first step.
  std::vector<double> rates{o.rates.front()};
  rates.insert(rates.end(), o.rates.begin(), o.rates.end());
  for (std::size_t i = 0; i < rates.size(); ++i)
    sh.steps.push_back(std::make_unique<StepCounters>());

  // The request through the codec once; the sender then only patches the transmit cookie.
  taid::ntp::Packet request;
  request.mode = taid::ntp::Mode::client;
  request.leap = taid::ntp::Leap::unsynchronized;
  request.transmit_time = taid::NtpTimestamp::from_raw(0x0123456789abcdefULL);
  const std::vector<uint8_t> tmpl = taid::ntp::encode(request);
  if (tmpl.size() != kHeaderSize ||
      load_be64(tmpl.data() + kTransmitOffset) != 0x0123456789abcdefULL)
    die("codec layout is not the one this generator patches");

  std::thread rx([&sh] { receiver(sh); });
  // Under SCHED_FIFO (bench/server runs us with chrt) the receiver gets one priority above the
  // sender: it only wakes for replies, and a reply it cannot read while the sender and the server
  // hold both cores would show the generator's delay as the server's latency.
  int policy = 0;
  sched_param sp{};
  if (pthread_getschedparam(pthread_self(), &policy, &sp) == 0 &&
      (policy == SCHED_FIFO || policy == SCHED_RR)) {
    sp.sched_priority = std::min(sp.sched_priority + 1, sched_get_priority_max(policy));
    pthread_setschedparam(rx.native_handle(), policy, &sp);
  }

  uint64_t seed = 0;
  if (getrandom(&seed, sizeof seed, 0) != sizeof seed) seed = static_cast<uint64_t>(mono_ns());
  Rng rng{seed | 1};
  std::vector<uint8_t> buf(kMaxBatch * kHeaderSize);
  for (std::size_t i = 0; i < kMaxBatch; ++i)
    std::copy(tmpl.begin(), tmpl.end(), buf.begin() + static_cast<std::ptrdiff_t>(i * kHeaderSize));
  mmsghdr msgs[kMaxBatch]{};
  iovec iov[kMaxBatch]{};
  for (std::size_t i = 0; i < kMaxBatch; ++i) {
    iov[i] = {buf.data() + i * kHeaderSize, kHeaderSize};
    msgs[i].msg_hdr.msg_iov = &iov[i];
    msgs[i].msg_hdr.msg_iovlen = 1;
  }
  const uint64_t mask = (uint64_t{1} << kRingBits) - 1;
  uint32_t seq = 0;
  std::size_t next_fd = 0;
  const std::size_t batch = std::clamp<std::size_t>(o.batch, 1, kMaxBatch);

  FILE* csv = o.csv.empty() ? nullptr : std::fopen(o.csv.c_str(), "w");
  const char* header =
      "offered_per_s,sent_per_s,replies_per_s,loss_pct,p50_us,p99_us,skipped,send_errors,"
      "gen_rx_drops,kod,unmatched,gen_cpu_pct,srv_cpu_pct,srv_rss_kb,srv_hwm_kb,srv_udp_in,"
      "srv_rcvbuf_errors,gen_limited";
  if (csv) std::fprintf(csv, "%s\n", header);
  std::printf("%9s %9s %9s %7s %8s %8s %6s %6s %5s %5s %8s %8s  %s\n", "offered/s", "sent/s",
              "replies/s", "loss%", "p50_us", "p99_us", "genCPU", "srvCPU", "RSS_M", "HWM_M",
              "skipped", "gen_drop", "notes");
  const std::string srv_snmp =
      o.server_pid ? "/proc/" + std::to_string(o.server_pid) + "/net/snmp" : "";
  for (std::size_t step = 0; step < rates.size(); ++step) {
    const double rate = rates[step];
    const double seconds = step == 0 ? o.warmup_s : o.seconds;
    const int64_t gen_drops0 = udp_counter("/proc/self/net/snmp", "RcvbufErrors");
    const int64_t gen_cpu0 = self_cpu_ns();
    const int64_t srv_cpu0 = o.server_pid ? server_cpu_ns(o) : 0;
    const int64_t srv_in0 = o.server_pid ? udp_counter(srv_snmp, "InDatagrams") : 0;
    const int64_t srv_err0 = o.server_pid ? udp_counter(srv_snmp, "RcvbufErrors") : 0;
    const uint64_t unmatched0 = sh.unmatched.load();
    uint64_t due_done = 0, sent = 0, skipped = 0, send_errors = 0;
    // Never more than 5 ms of requests at once: a generator that fell behind reports it
    // (skipped) rather than offering a burst the step did not ask for.
    const auto max_backlog = std::max<uint64_t>(batch, static_cast<uint64_t>(rate * 0.005));
    const int64_t start_ns = mono_ns();
    const int64_t end_ns = start_ns + static_cast<int64_t>(seconds * 1e9);
    for (int64_t now = start_ns; now < end_ns; now = mono_ns()) {
      const auto due = static_cast<uint64_t>(rate * static_cast<double>(now - start_ns) * 1e-9);
      if (due <= due_done) {
        sleep_until_ns(start_ns +
                       static_cast<int64_t>(static_cast<double>(due_done + 1) * 1e9 / rate));
        continue;
      }
      uint64_t backlog = due - due_done;
      if (backlog > max_backlog) {
        skipped += backlog - max_backlog;
        due_done += backlog - max_backlog;
        backlog = max_backlog;
      }
      const auto n = static_cast<unsigned>(std::min<uint64_t>(backlog, batch));
      for (unsigned i = 0; i < n; ++i) {
        ++seq;
        if (seq == 0) ++seq;
        uint32_t nonce = rng.next();
        if (nonce == 0) nonce = 1;
        const uint64_t cookie = (uint64_t{seq} << 32) | nonce;
        Slot& slot = sh.ring[seq & mask];
        slot.sent_ns.store(now, std::memory_order_relaxed);
        slot.step.store(static_cast<uint32_t>(step), std::memory_order_relaxed);
        slot.cookie.store(cookie, std::memory_order_release);
        store_be64(buf.data() + i * kHeaderSize + kTransmitOffset, cookie);
      }
      const int fd = sh.fds[next_fd];
      next_fd = (next_fd + 1) % sh.fds.size();
      unsigned done = 0;
      while (done < n) {
        const int r = sendmmsg(fd, msgs + done, n - done, 0);
        if (r > 0) {
          done += static_cast<unsigned>(r);
          continue;
        }
        // ECONNREFUSED reports an earlier ICMP port-unreachable, the message itself was not
        // sent; count one and go on with the rest.
        ++send_errors;
        ++done;
      }
      sent += n;
      due_done += n;
    }
    sent -= send_errors;
    const int64_t sent_end_ns = mono_ns();
    const int64_t srv_rss = o.server_pid ? status_kb(o.server_pid, "VmRSS") : -1;
    const int64_t srv_hwm = o.server_pid ? status_kb(o.server_pid, "VmHWM") : -1;
    const int64_t srv_cpu1 = o.server_pid ? server_cpu_ns(o) : 0;
    const int64_t gen_cpu1 = self_cpu_ns();
    sleep_until_ns(sent_end_ns + int64_t{o.drain_ms} * 1'000'000);
    const double span_s = static_cast<double>(sent_end_ns - start_ns) * 1e-9;
    const StepCounters& c = *sh.steps[step];
    const uint64_t replies = c.replies.load();
    const int64_t gen_drops = udp_counter("/proc/self/net/snmp", "RcvbufErrors") - gen_drops0;
    const double loss_pct =
        sent ? 100.0 * (1.0 - static_cast<double>(replies) / static_cast<double>(sent)) : NAN;
    const double gen_cpu_pct = 100.0 * static_cast<double>(gen_cpu1 - gen_cpu0) * 1e-9 / span_s;
    const double srv_cpu_pct =
        o.server_pid ? 100.0 * static_cast<double>(srv_cpu1 - srv_cpu0) * 1e-9 / span_s : NAN;
    const int64_t srv_in = o.server_pid ? udp_counter(srv_snmp, "InDatagrams") - srv_in0 : -1;
    const int64_t srv_err = o.server_pid ? udp_counter(srv_snmp, "RcvbufErrors") - srv_err0 : -1;
    const double sent_per_s = static_cast<double>(sent) / span_s;
    // The generator's own limit: it could not send the offered rate, or its sockets dropped
    // replies (then the loss is not the server's).
    const bool gen_limited = sent_per_s < 0.98 * rate || gen_drops > 0 || send_errors > 0;
    std::string notes;
    if (sent_per_s < 0.98 * rate) notes += "GENERATOR-LIMITED(send) ";
    if (gen_drops > 0) notes += "GENERATOR-LIMITED(rx drops) ";
    if (send_errors > 0) notes += "send-errors=" + std::to_string(send_errors) + " ";
    if (c.kod.load() > 0) notes += "kod=" + std::to_string(c.kod.load()) + " ";
    if (srv_err > 0) notes += "srv-rcvbuf-drops=" + std::to_string(srv_err) + " ";
    const double p50 = hist_percentile_us(c, replies, 0.5);
    const double p99 = hist_percentile_us(c, replies, 0.99);
    if (step == 0) continue;
    std::printf("%9.0f %9.0f %9.0f %7.2f %8.0f %8.0f %5.0f%% %5.0f%% %5.1f %5.1f %8llu %8lld  %s\n",
                rate, sent_per_s, static_cast<double>(replies) / span_s, loss_pct, p50, p99,
                gen_cpu_pct, srv_cpu_pct, static_cast<double>(srv_rss) / 1024.0,
                static_cast<double>(srv_hwm) / 1024.0, static_cast<unsigned long long>(skipped),
                static_cast<long long>(gen_drops), notes.c_str());
    std::fflush(stdout);
    if (csv) {
      std::fprintf(
          csv,
          "%.0f,%.0f,%.0f,%.3f,%.0f,%.0f,%llu,%llu,%lld,%llu,%llu,%.1f,%.1f,%lld,"
          "%lld,%lld,%lld,%d\n",
          rate, sent_per_s, static_cast<double>(replies) / span_s, loss_pct, p50, p99,
          static_cast<unsigned long long>(skipped), static_cast<unsigned long long>(send_errors),
          static_cast<long long>(gen_drops), static_cast<unsigned long long>(c.kod.load()),
          static_cast<unsigned long long>(sh.unmatched.load() - unmatched0), gen_cpu_pct,
          srv_cpu_pct, static_cast<long long>(srv_rss), static_cast<long long>(srv_hwm),
          static_cast<long long>(srv_in), static_cast<long long>(srv_err), gen_limited ? 1 : 0);
      std::fflush(csv);
    }
  }
  sh.stop = true;
  rx.join();
  if (csv) std::fclose(csv);
  for (const int fd : sh.fds) close(fd);
  return 0;
}

// The ceiling reference: answers every request in place (mode 4, stratum 8, origin = the
// request's transmit, receive = transmit = a fixed stamp); no clock reads, no state.
int run_reflector(const Options& o) {
  const int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  const int one = 1, rcvbuf = 4 << 20;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof rcvbuf);
  if (bind(fd, reinterpret_cast<const sockaddr*>(&o.server), sizeof o.server) != 0)
    die(std::string("bind: ") + std::strerror(errno));
  timeval tv{0, 100'000};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  std::vector<uint8_t> buf(kMaxBatch * 128);
  mmsghdr msgs[kMaxBatch]{};
  iovec iov[kMaxBatch]{};
  sockaddr_in from[kMaxBatch]{};
  const int64_t end_ns = mono_ns() + static_cast<int64_t>(o.reflect_for_s * 1e9);
  while (mono_ns() < end_ns) {
    for (std::size_t i = 0; i < kMaxBatch; ++i) {
      iov[i] = {buf.data() + i * 128, 128};
      msgs[i].msg_hdr = {};
      msgs[i].msg_hdr.msg_iov = &iov[i];
      msgs[i].msg_hdr.msg_iovlen = 1;
      msgs[i].msg_hdr.msg_name = &from[i];
      msgs[i].msg_hdr.msg_namelen = sizeof from[i];
    }
    const int got = recvmmsg(fd, msgs, kMaxBatch, MSG_WAITFORONE, nullptr);
    if (got <= 0) continue;
    int out = 0;
    for (int m = 0; m < got; ++m) {
      uint8_t* p = buf.data() + m * 128;
      if (msgs[m].msg_len < kHeaderSize || (p[0] & 7) != 3) continue;
      const uint64_t xmt = load_be64(p + kTransmitOffset);
      p[0] = static_cast<uint8_t>((p[0] & 0x38) | 4);  // LI 0, request's version, mode 4
      p[1] = 8;
      store_be64(p + kOriginOffset, xmt);
      store_be64(p + 32, 0xe000000000000000ULL);
      store_be64(p + kTransmitOffset, 0xe000000000000000ULL);
      iov[m].iov_len = kHeaderSize;
      if (out != m) msgs[out] = msgs[m];
      ++out;
    }
    for (int done = 0; done < out;) {
      const int r = sendmmsg(fd, msgs + done, static_cast<unsigned>(out - done), 0);
      done += r > 0 ? r : 1;
    }
  }
  close(fd);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  std::string endpoint;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) die(a + " needs a value");
      return argv[++i];
    };
    if (a == "--rates") {
      o.rates.clear();
      std::istringstream in(value());
      for (std::string r; std::getline(in, r, ',');) o.rates.push_back(parse_rate(r));
    } else if (a == "--seconds") {
      o.seconds = std::stod(value());
    } else if (a == "--warmup-s") {
      o.warmup_s = std::stod(value());
    } else if (a == "--sockets") {
      o.sockets = std::clamp(std::stoi(value()), 1, 4096);
    } else if (a == "--batch") {
      o.batch = static_cast<std::size_t>(std::stoi(value()));
    } else if (a == "--drain-ms") {
      o.drain_ms = std::stoi(value());
    } else if (a == "--server-pid") {
      // PID[,PID...]: the first is the server (RSS, its netns' UDP counters); CPU is summed.
      std::istringstream in(value());
      for (std::string pid; std::getline(in, pid, ',');) {
        if (o.server_pid == 0)
          o.server_pid = static_cast<pid_t>(std::stoi(pid));
        else
          o.extra_cpu_pids.push_back(static_cast<pid_t>(std::stoi(pid)));
      }
    } else if (a == "--csv") {
      o.csv = value();
    } else if (a == "--reflect") {
      o.reflect = true;
    } else if (a == "--for") {
      o.reflect_for_s = std::stod(value());
    } else if (a == "-h" || a == "--help") {
      std::printf(
          "usage: ntp_load ADDR:PORT [--rates 5k,10k,...] [--seconds S] [--warmup-s W]\n"
          "         [--sockets N] [--batch B] [--drain-ms D] [--server-pid PID[,PID]]\n"
          "         [--csv FILE]\n"
          "       ntp_load --reflect ADDR:PORT [--for S]\n");
      return 0;
    } else if (!a.empty() && a[0] != '-' && endpoint.empty()) {
      endpoint = a;
    } else {
      die("unknown argument " + a);
    }
  }
  if (endpoint.empty()) die("missing ADDR:PORT (see --help)");
  if (o.rates.empty()) die("--rates: no rate given");
  o.server = parse_endpoint(endpoint);
  return o.reflect ? run_reflector(o) : run_load(o);
}
