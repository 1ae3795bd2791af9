// l2_delay_bridge: forwards Ethernet frames between two interfaces, holding each one for
// delay ± jitter (uniform) and dropping a fraction — netem's job, for kernels without sch_netem.
//
// Runs in a namespace between two veth pairs (PEERS.md). AF_PACKET sockets read every frame that
// arrives on either interface; frames this program sent itself come back as PACKET_OUTGOING and
// are skipped. A frame's release time is fixed on arrival, so jitter can reorder frames, as it
// does on real paths. The loop ends by itself after --seconds, or on SIGINT/SIGTERM.
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
#include <queue>
#include <random>
#include <string>
#include <vector>

namespace {

volatile sig_atomic_t g_stop = 0;
void on_signal(int) { g_stop = 1; }

int64_t monotonic_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

struct Frame {
  int64_t release_ns;
  int out;  // index of the socket to send on
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
  return fd;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr,
                 "usage: l2_delay_bridge IFACE_A IFACE_B [--delay-us N] [--jitter-us N]"
                 " [--loss P] [--seconds N]\n");
    return 2;
  }
  double delay_us = 1000, jitter_us = 200, loss = 0, seconds = 600;
  for (int i = 3; i + 1 < argc; i += 2) {
    const std::string opt = argv[i];
    const double v = std::atof(argv[i + 1]);
    if (opt == "--delay-us")
      delay_us = v;
    else if (opt == "--jitter-us")
      jitter_us = v;
    else if (opt == "--loss")
      loss = v;
    else if (opt == "--seconds")
      seconds = v;
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

  while (!g_stop && monotonic_ns() < end_ns) {
    const int64_t now = monotonic_ns();
    while (!held.empty() && held.top().release_ns <= now) {
      const Frame& f = held.top();
      if (send(fds[f.out], f.bytes.data(), f.bytes.size(), 0) < 0 && errno != ENOBUFS)
        std::fprintf(stderr, "l2_delay_bridge: send: %s\n", std::strerror(errno));
      ++forwarded;
      held.pop();
    }
    int64_t wait_ns = held.empty() ? 100000000 : held.top().release_ns - monotonic_ns();
    wait_ns = std::max<int64_t>(0, std::min<int64_t>(wait_ns, end_ns - monotonic_ns()));
    pollfd pfds[2] = {{fds[0], POLLIN, 0}, {fds[1], POLLIN, 0}};
    const timespec timeout{static_cast<time_t>(wait_ns / 1000000000),
                           static_cast<long>(wait_ns % 1000000000)};
    if (ppoll(pfds, 2, &timeout, nullptr) < 0 && errno != EINTR) break;
    for (int side = 0; side < 2; ++side) {
      if (!(pfds[side].revents & POLLIN)) continue;
      for (;;) {
        unsigned char buf[65536];
        sockaddr_ll from{};
        socklen_t from_len = sizeof from;
        const ssize_t n =
            recvfrom(fds[side], buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&from), &from_len);
        if (n < 0) break;
        if (from.sll_pkttype == PACKET_OUTGOING) continue;  // our own forwarded frame
        if (loss > 0 && unit(rng) < loss) {
          ++dropped;
          continue;
        }
        const double hold_us = std::max(0.0, delay_us + spread(rng));
        held.push(Frame{monotonic_ns() + static_cast<int64_t>(hold_us * 1000), 1 - side,
                        std::vector<unsigned char>(buf, buf + n)});
      }
    }
  }
  std::fprintf(stderr, "l2_delay_bridge: forwarded %llu, dropped %llu\n",
               static_cast<unsigned long long>(forwarded),
               static_cast<unsigned long long>(dropped));
  close(fds[0]);
  close(fds[1]);
  return 0;
}
