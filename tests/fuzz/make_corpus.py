#!/usr/bin/env python3
"""Regenerates the fuzz seed corpora from real chronyd 4.3 replies.

tests/fuzz/corpus/exchange_fuzz: replies framed as exchange_fuzz.cpp reads them;
tests/fuzz/corpus/packet_fuzz: the same replies as bare datagrams.

Rerun (as root, after scripts/setup unpacked chronyd into build/peers/root):
    python3 tests/fuzz/make_corpus.py
It starts chronyd -x (no clock control, and without CAP_SYS_TIME as a second guard) as a server
on 127.0.0.1 at a free unprivileged port, with all its state in a temporary directory, sends it
NTP client requests in basic and interleaved mode from this script, and writes the replies in
the input format exchange_fuzz.cpp describes. chronyd is stopped and the directory removed at
the end, also on failure. The replies carry today's times, so each run writes different bytes.

The requests carry random cookies; the fuzz target writes its own cookie into each reply's
origin field (origin mode 1 or 2 in the record's control byte), so the files need not predict
the target's cookies. Files whose names start with "derived-" are real replies changed by this
script where chronyd sends nothing of the kind: kiss-o'-death (no KoD to an allowed client
without rate limiting), and an RFC 7822 extension field or a MAC trailer appended (chronyd 4.3
adds neither to a plain request).
"""
import os
import pathlib
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
CHRONYD = ROOT / "build/peers/root/usr/sbin/chronyd"
CORPUS = ROOT / "tests/fuzz/corpus"

# exchange_fuzz input: flags byte, then records of (control, length, bytes).
XLEAVE, IBURST = 1, 2
ORIGIN_AS_GIVEN, ORIGIN_COOKIE, ORIGIN_XLEAVE_COOKIE = 0, 1, 2
SAME_REQUEST, TX_STAMP = 4, 8
MINPOLL_6 = 1 << 2  # flags bits 2-3: minpoll 4, 6, 0, -4


def delays(out, back):
    """Control bits for the delay out and back, (1 + n) x 100 us each, n in 0..3."""
    return (out << 4) | (back << 6)


def record(control, reply):
    assert len(reply) <= 255
    return bytes([control, len(reply)]) + reply


def request(version=4, origin=0, receive=0, transmit=None, extra=b""):
    """A client request: LI 3 (unsynchronized), mode 3, poll 4, precision -20."""
    transmit = transmit if transmit is not None else int.from_bytes(secrets.token_bytes(8), "big")
    first = (3 << 6) | (version << 3) | 3
    header = struct.pack("!BBbbIII", first, 0, 4, -20, 0, 0, 0)
    return header + struct.pack("!QQQQ", 0, origin, receive, transmit) + extra, transmit


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Chronyd:
    def __init__(self):
        self.tmp = pathlib.Path(tempfile.mkdtemp(prefix="taid-corpus-"))
        self.port = free_port()
        conf = self.tmp / "chrony.conf"
        (self.tmp / "log").mkdir()
        sock_dir = self.tmp / "run"
        sock_dir.mkdir(mode=0o750)
        conf.write_text(
            "local stratum 10\n"
            "allow 127.0.0.1\n"
            "bindaddress 127.0.0.1\n"
            f"port {self.port}\n"
            f"driftfile {self.tmp}/drift\n"
            f"pidfile {self.tmp}/chronyd.pid\n"
            f"bindcmdaddress {sock_dir}/chronyd.sock\n"
            "cmdport 0\n"
            f"logdir {self.tmp}/log\n"
        )
        # -x: never touch the clock; capsh drops CAP_SYS_TIME so a write would fail anyway.
        self.proc = subprocess.Popen(
            ["capsh", "--drop=cap_sys_time", "--", "-c",
             f"exec {CHRONYD} -x -u root -d -f {conf}"],
            stdout=subprocess.DEVNULL, stderr=open(self.tmp / "chronyd.err", "w"))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.tmp, ignore_errors=True)


def exchange(sock, addr, packet):
    sock.sendto(packet, addr)
    data, _ = sock.recvfrom(1024)
    return data


def field(reply, offset):
    return struct.unpack("!Q", reply[offset:offset + 8])[0]


def main():
    if not CHRONYD.exists():
        sys.exit(f"{CHRONYD} missing: run scripts/setup first")
    server = Chronyd()
    files = {}  # exchange_fuzz inputs
    raw = {}  # packet_fuzz inputs
    try:
        addr = ("127.0.0.1", server.port)
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.settimeout(1.0)
        # chronyd needs a moment to bind, and answers LI 3 until its local reference is selected.
        for _ in range(100):
            try:
                reply = exchange(sock, addr, request()[0])
                if reply[0] >> 6 != 3:
                    break
            except socket.timeout:
                pass
            if server.proc.poll() is not None:
                sys.exit("chronyd exited: " + (server.tmp / "chronyd.err").read_text())
            time.sleep(0.2)
        else:
            sys.exit("chronyd never answered synchronized")

        # Basic mode: one reply, and eight in a row as iburst sees them.
        packet, cookie = request()
        reply = exchange(sock, addr, packet)
        assert field(reply, 24) == cookie, "chronyd did not echo the cookie"
        files["basic"] = bytes([0]) + record(ORIGIN_COOKIE, reply)
        raw["basic"] = reply
        files["basic-origin-as-sent"] = bytes([0]) + record(ORIGIN_AS_GIVEN, reply)
        burst = bytes([IBURST])
        # The same replies with round trips that shrink every time, so each sample is the
        # filter's new best and is released: enough releases for the poll to climb from 6.
        shrinking = bytes([IBURST | MINPOLL_6])
        for i in range(8):
            reply = exchange(sock, addr, request()[0])
            burst += record(ORIGIN_COOKIE | (TX_STAMP if i % 2 else 0), reply)
            shrinking += record(ORIGIN_COOKIE | delays(3 - i // 2, 3 - (i + 1) // 2 if i < 7 else 0), reply)
            time.sleep(0.05)
        files["iburst-8"] = burst
        files["iburst-8-minpoll6-shrinking-delay"] = shrinking

        # Interleaved: a basic exchange, then requests naming it (origin = its receive stamp,
        # a second cookie in the receive field); chronyd echoes that cookie and sends the real
        # transmit stamp of its previous reply.
        seq = bytes([XLEAVE])
        packet, cookie = request()
        reply = exchange(sock, addr, packet)
        seq += record(ORIGIN_COOKIE, reply)
        interleaved = 0
        for i in range(6):
            second = int.from_bytes(secrets.token_bytes(8), "big")
            packet, cookie = request(origin=field(reply, 32), receive=second)
            time.sleep(0.1)
            reply = exchange(sock, addr, packet)
            is_xleave = field(reply, 24) == second
            interleaved += is_xleave
            seq += record(ORIGIN_XLEAVE_COOKIE if is_xleave else ORIGIN_COOKIE, reply)
            if is_xleave:
                raw["interleaved"] = reply
            if i == 1:  # chronyd answers the first request naming an exchange in basic mode
                files["xleave-3"] = seq
        files["xleave-7"] = seq
        if interleaved == 0:
            sys.exit("chronyd never answered in interleaved mode")

        # NTPv3, and a request with an RFC 7822 extension field (chronyd 4.3 answers without
        # it, or with its own experimental field).
        raw["ntpv3"] = exchange(sock, addr, request(version=3)[0])
        files["ntpv3"] = bytes([0]) + record(ORIGIN_COOKIE, raw["ntpv3"])
        ef = struct.pack("!HH", 0xF323, 28) + bytes(24)
        raw["request-with-ef"] = exchange(sock, addr, request(extra=ef)[0])
        files["request-with-ef"] = bytes([0]) + record(ORIGIN_COOKIE, raw["request-with-ef"])

        # Kiss-o'-death, derived from a real reply: stratum 0 and the kiss code.
        base = exchange(sock, addr, request()[0])
        for code in (b"RATE", b"DENY", b"RSTR"):
            kod = bytearray(base)
            kod[1] = 0
            kod[12:16] = code
            files["derived-kod-" + code.decode().lower()] = bytes([IBURST]) + record(ORIGIN_COOKIE, bytes(kod))
        with_ef = base + struct.pack("!HH", 0x0104, 28) + bytes(range(24))
        with_mac = base + struct.pack("!I", 42) + bytes(range(20))
        for name, data in (("derived-extension-field", with_ef), ("derived-mac", with_mac)):
            raw[name] = data
            files[name] = bytes([0]) + record(ORIGIN_COOKIE, data)
    finally:
        server.stop()

    for target, inputs in (("exchange_fuzz", files), ("packet_fuzz", raw)):
        out = CORPUS / target
        if out.exists():
            shutil.rmtree(out)
        out.mkdir(parents=True)
        for name, data in sorted(inputs.items()):
            (out / name).write_bytes(data)
            print(f"{out.relative_to(ROOT)}/{name}: {len(data)} bytes")
    print(f"interleaved replies: {interleaved} of 6")


if __name__ == "__main__":
    main()
