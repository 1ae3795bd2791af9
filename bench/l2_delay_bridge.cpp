// l2_delay_bridge: forwards Ethernet frames between two interfaces, holding each one for
// delay ± jitter (uniform) and dropping a fraction — netem's job, for kernels without sch_netem.
//
// Runs in a namespace between two veth pairs (PEERS.md). AF_PACKET sockets read every frame that
// arrives on either interface; frames this program sent itself come back as PACKET_OUTGOING and
// are skipped. A frame's release time is fixed on arrival, so jitter can reorder frames, as it
// does on real paths. The loop ends by itself after --seconds, or on SIGINT/SIGTERM.
//
// The hold is counted from the kernel's receive stamp of the frame (SO_TIMESTAMPNS on the packet
// socket), not from when this process got round to reading it, so the time the bridge takes to
// wake up is not added to one direction more than the other. At exit it prints, per direction,
// how late it read frames (wake-up: user-space read minus kernel stamp) and how late it sent
// them (send minus release time): the bridge's own contribution to each direction's delay. The
// last --spin-us before a release are spent polling, not sleeping, so the send is on time.
#include <arpa/inet.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <algorithm>
#include <queue>
#include <random>
#include <string>
#include <vector>

namespace {

volatile sig_atomic_t g_stop = 0;
void on_signal(int) { g_stop = 1; }

int64_t clock_ns(clockid_t id) {
  timespec ts{};
  clock_gettime(id, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}
int64_t monotonic_ns() { return clock_ns(CLOCK_MONOTONIC); }

// Lateness samples of one direction, bounded.
struct Lateness {
  std::vector<int64_t> wake_ns, send_ns;
  void add(std::vector<int64_t>& v, int64_t x) {
    if (v.size() < 1000000) v.push_back(x);
  }
  static double pct_us(std::vector<int64_t> v, double p) {
    if (v.empty()) return 0;
    std::sort(v.begin(), v.end());
    return static_cast<double>(
               v[std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())))]) /
           1e3;
  }
};

struct Frame {
  int64_t release_ns;
  int out;  // index of the socket to send on; the frame goes from side 1 - out to side out
  std::vector<unsigned char> bytes;
  bool operator>(const Frame& o) const { return release_ns > o.release_ns; }
};

int open_packet_socket(const char* iface) {
  const unsigned index = if_nametoindex(iface);
  if (index == 0) {
    std::fprintf(stderr, "l2_delay_bridge: %s: no such interface\n", iface);
    return -1;
  }
  const int fd = socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, htons(ETH_P_ALL));
  if (fd < 0) {
    std::fprintf(stderr, "l2_delay_bridge: socket(AF_PACKET): %s\n", std::strerror(errno));
    return -1;
  }
  sockaddr_ll addr{};
  addr.sll_family = AF_PACKET;
  addr.sll_protocol = htons(ETH_P_ALL);
  addr.sll_ifindex = static_cast<int>(index);
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    std::fprintf(stderr, "l2_delay_bridge: bind %s: %s\n", iface, std::strerror(errno));
    close(fd);
    return -1;
  }
  const int one = 1;
  if (setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof one) != 0)
    std::fprintf(stderr, "l2_delay_bridge: SO_TIMESTAMPNS %s: %s (holds from user space)\n", iface,
                 std::strerror(errno));
  return fd;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr,
                 "usage: l2_delay_bridge IFACE_A IFACE_B [--delay-us N] [--jitter-us N]"
                 " [--loss P] [--seconds N] [--hold-from kernel|user] [--spin-us N]\n");
    return 2;
  }
  double delay_us = 1000, jitter_us = 200, loss = 0, seconds = 600;
  bool hold_from_kernel = true;  // --hold-from user: from the user-space read, as before
  // The last stretch before a release is polled without sleeping: a timer wake-up on a busy
  // machine is late by 100-150 µs, and later for one direction than the other (measured).
  double spin_us = 300;
  for (int i = 3; i + 1 < argc; i += 2) {
    const std::string opt = argv[i];
    const double v = std::atof(argv[i + 1]);
    if (opt == "--hold-from") {
      const std::string from = argv[i + 1];
      if (from != "kernel" && from != "user") {
        std::fprintf(stderr, "l2_delay_bridge: --hold-from: %s is not kernel or user\n",
                     from.c_str());
        return 2;
      }
      hold_from_kernel = from == "kernel";
    } else if (opt == "--delay-us")
      delay_us = v;
    else if (opt == "--jitter-us")
      jitter_us = v;
    else if (opt == "--loss")
      loss = v;
    else if (opt == "--seconds")
      seconds = v;
    else if (opt == "--spin-us")
      spin_us = v;
    else {
      std::fprintf(stderr, "l2_delay_bridge: unknown option %s\n", opt.c_str());
      return 2;
    }
  }
  const int fds[2] = {open_packet_socket(argv[1]), open_packet_socket(argv[2])};
  if (fds[0] < 0 || fds[1] < 0) return 1;
  signal(SIGINT, on_signal);
  signal(SIGTERM, on_signal);

  std::mt19937_64 rng(std::random_device{}());
  std::uniform_real_distribution<double> spread(-jitter_us, jitter_us);
  std::uniform_real_distribution<double> unit(0, 1);
  std::priority_queue<Frame, std::vector<Frame>, std::greater<>> held;
  const int64_t end_ns = monotonic_ns() + static_cast<int64_t>(seconds * 1e9);
  uint64_t forwarded = 0, dropped = 0;
  Lateness late[2];  // by the side the frame is sent out of

  while (!g_stop && monotonic_ns() < end_ns) {
    const int64_t now = monotonic_ns();
    while (!held.empty() && held.top().release_ns <= now) {
      const Frame& f = held.top();
      // Lateness before send(): the call itself delivers the frame through the peer's stack
      // (softirq in our context), which is the path's time, not the bridge's.
      late[f.out].add(late[f.out].send_ns, monotonic_ns() - f.release_ns);
      if (send(fds[f.out], f.bytes.data(), f.bytes.size(), 0) < 0 && errno != ENOBUFS)
        std::fprintf(stderr, "l2_delay_bridge: send: %s\n", std::strerror(errno));
      ++forwarded;
      held.pop();
    }
    int64_t wait_ns = held.empty() ? 100000000 : held.top().release_ns - monotonic_ns();
    const auto spin_ns = static_cast<int64_t>(spin_us * 1000);
    wait_ns = wait_ns <= spin_ns ? 0 : wait_ns - spin_ns;  // spin: poll without sleeping
    wait_ns = std::max<int64_t>(0, std::min<int64_t>(wait_ns, end_ns - monotonic_ns()));
    pollfd pfds[2] = {{fds[0], POLLIN, 0}, {fds[1], POLLIN, 0}};
    const timespec timeout{static_cast<time_t>(wait_ns / 1000000000),
                           static_cast<long>(wait_ns % 1000000000)};
    if (ppoll(pfds, 2, &timeout, nullptr) < 0 && errno != EINTR) break;
    for (int side = 0; side < 2; ++side) {
      if (!(pfds[side].revents & POLLIN)) continue;
      for (;;) {
        unsigned char buf[65536];
        alignas(cmsghdr) char control[256];
        sockaddr_ll from{};
        iovec iov{buf, sizeof buf};
        msghdr msg{};
        msg.msg_name = &from;
        msg.msg_namelen = sizeof from;
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control;
        msg.msg_controllen = sizeof control;
        const ssize_t n = recvmsg(fds[side], &msg, 0);
        if (n < 0) break;
        // Arrival on the monotonic clock: the kernel stamp (CLOCK_REALTIME) moved across by the
        // two clocks' difference now; the user-space read if there is no stamp.
        const int64_t mono_now = monotonic_ns();
        int64_t arrival = mono_now;
        for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
          if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPNS) {
            timespec ts{};
            std::memcpy(&ts, CMSG_DATA(c), sizeof ts);
            const int64_t stamp = static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
            arrival = mono_now - (clock_ns(CLOCK_REALTIME) - stamp);
          }
        }
        if (from.sll_pkttype == PACKET_OUTGOING) continue;  // our own forwarded frame
        if (loss > 0 && unit(rng) < loss) {
          ++dropped;
          continue;
        }
        const double hold_us = std::max(0.0, delay_us + spread(rng));
        late[1 - side].add(late[1 - side].wake_ns, mono_now - arrival);
        held.push(
            Frame{(hold_from_kernel ? arrival : mono_now) + static_cast<int64_t>(hold_us * 1000),
                  1 - side, std::vector<unsigned char>(buf, buf + n)});
      }
    }
  }
  std::fprintf(stderr, "l2_delay_bridge: forwarded %llu, dropped %llu\n",
               static_cast<unsigned long long>(forwarded),
               static_cast<unsigned long long>(dropped));
  for (int out = 0; out < 2; ++out) {
    const Lateness& l = late[out];
    std::fprintf(stderr,
                 "l2_delay_bridge: %s -> %s: %zu frames, read after the kernel stamp p50 %.1f us "
                 "p99 %.1f us, sent after the release time p50 %.1f us p99 %.1f us\n",
                 argv[2 - out], argv[1 + out], l.send_ns.size(), Lateness::pct_us(l.wake_ns, 0.5),
                 Lateness::pct_us(l.wake_ns, 0.99), Lateness::pct_us(l.send_ns, 0.5),
                 Lateness::pct_us(l.send_ns, 0.99));
  }
  close(fds[0]);
  close(fds[1]);
  return 0;
}
