// Per-packet cost of the sans-IO core: codec, one full client exchange, the clock filter, the
// delay envelope.
#include <benchmark/benchmark.h>

#include "ntp/exchange.hpp"

namespace {

using namespace taid;

const UtcTime t0 = UtcTime::from_unix_ns(1700000000LL * 1000000000);

ntp::Packet server_reply(NtpTimestamp origin, UtcTime t) {
  ntp::Packet r;
  r.mode = ntp::Mode::server;
  r.stratum = 2;
  r.precision = -24;
  r.origin_time = origin;
  r.receive_time = NtpTimestamp::from_utc(t);
  r.transmit_time = NtpTimestamp::from_utc(t + Duration::from_us(5));
  return r;
}

void BM_Decode(benchmark::State& state) {
  const auto bytes = ntp::encode(server_reply(NtpTimestamp::from_raw(42), t0));
  for (auto _ : state) benchmark::DoNotOptimize(ntp::decode(bytes));
}
BENCHMARK(BM_Decode);

void BM_Encode(benchmark::State& state) {
  const ntp::Packet p = server_reply(NtpTimestamp::from_raw(42), t0);
  for (auto _ : state) benchmark::DoNotOptimize(ntp::encode(p));
}
BENCHMARK(BM_Encode);

// One poll: request, reply, sanity tests, sample, filter and poll control.
void BM_ExchangeRoundTrip(benchmark::State& state) {
  uint64_t cookie = 1;
  ntp::Exchange ex({"bench", 4, 6, false}, [&cookie] { return ++cookie; });
  UtcTime now = t0;
  for (auto _ : state) {
    const auto actions = ex.on_timer({now, ntp::TimestampSource::kernel, -24});
    const auto& request = std::get<ntp::SendRequest>(actions.front());
    const auto decoded = ntp::decode(request.bytes);
    const auto reply = ntp::encode(server_reply(decoded->transmit_time, now));
    benchmark::DoNotOptimize(
        ex.on_packet(reply, {now + Duration::from_us(40), ntp::TimestampSource::kernel, -24}));
    now = now + Duration::from_s(16);
  }
}
BENCHMARK(BM_ExchangeRoundTrip);

void BM_ClockFilterAdd(benchmark::State& state) {
  filter::ClockFilter f;
  UtcTime now = t0;
  int64_t i = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(f.add(Duration::from_ns(i % 1000), Duration::from_us(30 + i % 7),
                                   Duration::from_ns(50), now));
    now = now + Duration::from_s(16);
    ++i;
  }
}
BENCHMARK(BM_ClockFilterAdd);

// One sample into a full window (Arg samples, the largest at the fastest polls): the fit runs
// over the hulls' corners only, so its cost grows with the window's copy, not the search.
void BM_DelayEnvelopeAdd(benchmark::State& state) {
  filter::DelayEnvelope e;
  UtcTime now = t0;
  const Duration step = filter::DelayEnvelope::kMaxSpan / (state.range(0) + 1);
  uint64_t x = 88172645463325252ULL;  // xorshift: queueing-like scatter without <random>
  const auto next_us = [&x] {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return static_cast<int64_t>(x % 400);
  };
  const Duration trip = Duration::from_us(2000);  // T4 − T1
  for (int64_t i = 0; i < state.range(0); ++i, now = now + step)
    e.add(Duration::from_us(next_us() - 200), Duration::from_us(2000 + next_us()), now - trip, now);
  for (auto _ : state) {
    benchmark::DoNotOptimize(e.add(Duration::from_us(next_us() - 200),
                                   Duration::from_us(2000 + next_us()), now - trip, now));
    now = now + step;
  }
}
BENCHMARK(BM_DelayEnvelopeAdd)->Arg(16)->Arg(64)->Arg(1024);

}  // namespace
