"""Verifier for taid timestamp tokens (v1): parse, check, and describe them.

Standard library plus the `cryptography` package (Ed25519PublicKey). docs/TOKEN.md is the
normative description of the format; this module follows it step by step.

    from taid_stamp import verify, load_public_key
    token = verify(open("photo.jpg.tst", "rb").read(),
                   hashlib.sha256(data).digest(),
                   load_public_key(open("taid.pub").read()))
    print(token.tai_ns, token.bound_ns, token.serial)

verify() returns the decoded Token or raises VerifyError, whose .stage names what failed:
"malformed", "key", "merkle", "signature", "algorithm" or "digest".

sign(socket_path, digest) asks a running taid for a token over its signing socket (the framing
of docs/TOKEN.md, "Signing socket") and raises SignError with taid's code and text on refusal.

content_digest(data, meta) is taistamp's digest of a file and its metadata (docs/TOKEN.md,
"taistamp"), so tokens made by either tool verify with the other:

    digest = content_digest(open("photo.jpg", "rb").read(), {"camera": "X100"})
    token = sign("/run/taid/sign.sock", digest)
"""

from __future__ import annotations

import hashlib
import socket
import struct
from dataclasses import dataclass, field
from typing import List, Optional, Union

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

DOMAIN = b"taid timestamp token v1\x00"
VERSION = 1
SIGNED_BYTES = len(DOMAIN) + 63
MAX_NONCE = 64
MAX_PATH = 32
ALGORITHMS = {1: ("sha256", 32), 2: ("sha512", 64)}
ALGORITHM_IDS = {name: ident for ident, (name, _) in ALGORITHMS.items()}
LEAPS = {0: "none", 1: "insert", 2: "delete"}
STATUSES = {1: "synchronized", 2: "measured", 3: "holdover"}


class VerifyError(Exception):
    """A token that is not good; .stage says which check refused it."""

    def __init__(self, stage: str, detail: str):
        super().__init__(f"{stage}: {detail}")
        self.stage = stage
        self.detail = detail


@dataclass
class Token:
    version: int
    key_id: bytes
    tai_ns: int
    bound_ns: int
    leap: str
    status: str
    leaf_count: int
    root: bytes
    serial: int
    algorithm: str
    digest: bytes
    nonce: bytes
    leaf_index: int
    path: List[bytes] = field(default_factory=list)
    signature: bytes = b""
    signed_part: bytes = b""
    leaf_bytes: bytes = b""

    @property
    def earliest_tai_ns(self) -> int:
        return self.tai_ns - self.bound_ns

    @property
    def latest_tai_ns(self) -> int:
        return self.tai_ns + self.bound_ns


class _Reader:
    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0

    def take(self, n: int, name: str) -> bytes:
        if len(self.data) - self.pos < n:
            raise VerifyError("malformed", f"{name}: token ends early")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def uint(self, n: int, name: str) -> int:
        return int.from_bytes(self.take(n, name), "big")


def parse(data: bytes) -> Token:
    """Decodes a token's structure (lengths, ranges, known values); checks no cryptography."""
    data = bytes(data)
    r = _Reader(data)
    if r.take(len(DOMAIN), "domain") != DOMAIN:
        raise VerifyError("malformed", 'domain: not "taid timestamp token v1\\0"')
    version = r.uint(1, "version")
    if version != VERSION:
        raise VerifyError("malformed", f"version: {version} is not 1")
    key_id = r.take(8, "key id")
    tai_ns = struct.unpack(">q", r.take(8, "tai_ns"))[0]
    bound_ns = r.uint(8, "bound_ns")
    if not 0 < bound_ns < 2**63:
        raise VerifyError("malformed", "bound_ns: must be 1 .. 2^63-1")
    leap = r.uint(1, "leap")
    if leap not in LEAPS:
        raise VerifyError("malformed", f"leap: unknown value {leap}")
    status = r.uint(1, "status")
    if status not in STATUSES:
        raise VerifyError("malformed", f"status: unknown value {status}")
    leaf_count = r.uint(4, "leaf_count")
    if leaf_count == 0:
        raise VerifyError("malformed", "leaf_count: 0")
    root = r.take(32, "root")
    leaf_start = r.pos
    serial = r.uint(8, "serial")
    alg = r.uint(1, "algorithm")
    if alg not in ALGORITHMS:
        raise VerifyError("malformed", f"algorithm: unknown value {alg}")
    alg_name, want = ALGORITHMS[alg]
    digest_len = r.uint(1, "digest length")
    if digest_len != want:
        raise VerifyError("malformed",
                          f"digest length: {digest_len} for {alg_name}, which is {want}")
    digest = r.take(want, "digest")
    nonce_len = r.uint(1, "nonce length")
    if nonce_len > MAX_NONCE:
        raise VerifyError("malformed", f"nonce length: {nonce_len} > {MAX_NONCE}")
    nonce = r.take(nonce_len, "nonce")
    leaf_bytes = data[leaf_start:r.pos]
    leaf_index = r.uint(4, "leaf_index")
    if leaf_index >= leaf_count:
        raise VerifyError("malformed",
                          f"leaf_index: {leaf_index} not below leaf_count {leaf_count}")
    path_len = r.uint(1, "path length")
    if path_len > MAX_PATH:
        raise VerifyError("malformed", f"path length: {path_len} > {MAX_PATH}")
    path = [r.take(32, "path") for _ in range(path_len)]
    signature = r.take(64, "signature")
    if r.pos != len(data):
        raise VerifyError("malformed", f"{len(data) - r.pos} bytes after the signature")
    return Token(version, key_id, tai_ns, bound_ns, LEAPS[leap], STATUSES[status], leaf_count,
                 root, serial, alg_name, digest, nonce, leaf_index, path, signature,
                 data[:SIGNED_BYTES], leaf_bytes)


def leaf_hash(leaf_bytes: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + leaf_bytes).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def root_from_path(leaf: bytes, index: int, count: int, path: List[bytes]) -> Optional[bytes]:
    """RFC 9162 section 2.1.3.2: the root the path leads to, or None if it cannot fit."""
    if count == 0 or index >= count:
        return None
    fn, sn, r = index, count - 1, leaf
    for p in path:
        if sn == 0:
            return None
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return r if sn == 0 else None


def key_id(public_key: Ed25519PublicKey) -> bytes:
    return hashlib.sha256(raw_public_key(public_key)).digest()[:8]


def raw_public_key(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def load_public_key(text: Union[str, bytes]) -> Ed25519PublicKey:
    """A public key as taid exports it: PEM (SubjectPublicKeyInfo) or 64 hex digits."""
    if isinstance(text, bytes):
        text = text.decode("ascii")
    text = text.strip()
    if text.startswith("-----BEGIN"):
        key = serialization.load_pem_public_key(text.encode("ascii"))
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError("not an Ed25519 public key")
        return key
    raw = bytes.fromhex(text)
    if len(raw) != 32:
        raise ValueError("an Ed25519 public key is 32 bytes")
    return Ed25519PublicKey.from_public_bytes(raw)


def verify(token_bytes: bytes, digest: bytes, public_key: Ed25519PublicKey,
           algorithm: Optional[str] = None) -> Token:
    """Checks a token against the digest the caller computed and taid's public key.

    algorithm ("sha256" | "sha512"): the hash the caller used; by default the one whose length
    matches the digest. Returns the Token; raises VerifyError naming the first failed check.
    """
    if algorithm is None:
        algorithm = {32: "sha256", 64: "sha512"}.get(len(digest))
        if algorithm is None:
            raise VerifyError("algorithm", f"no algorithm has a {len(digest)}-byte digest")
    t = parse(token_bytes)
    if t.key_id != key_id(public_key):
        raise VerifyError("key", f"token names key {t.key_id.hex()}, "
                          f"this key is {key_id(public_key).hex()}")
    root = root_from_path(leaf_hash(t.leaf_bytes), t.leaf_index, t.leaf_count, t.path)
    if root is None:
        raise VerifyError("merkle", f"a path of {len(t.path)} does not fit leaf "
                          f"{t.leaf_index} of {t.leaf_count}")
    if root != t.root:
        raise VerifyError("merkle", "the path does not lead to the root")
    try:
        public_key.verify(t.signature, t.signed_part)
    except InvalidSignature:
        raise VerifyError("signature",
                          "Ed25519 signature does not verify with this key") from None
    if t.algorithm != algorithm:
        raise VerifyError("algorithm", f"token is {t.algorithm}, expected {algorithm}")
    if t.digest != bytes(digest):
        raise VerifyError("digest", "the token is for another digest")
    return t


def consistent(earlier: Token, later: Token) -> bool:
    """Roughtime's order rule: earlier.time - bound <= later.time + bound."""
    return earlier.tai_ns - earlier.bound_ns <= later.tai_ns + later.bound_ns


# --- signing socket client --------------------------------------------------------------------

WIRE_VERSION = 1
MAX_REPLY_BODY = 2048
REPLY_CODES = {0: "ok", 1: "malformed", 2: "bad-digest", 3: "unsynchronized", 4: "tai-unvouched",
               5: "bound-too-large", 6: "not-allowed", 7: "busy", 8: "internal"}


class SignError(Exception):
    """taid refused to sign (.code, .name, .text), or the reply was not understood (code None)."""

    def __init__(self, code: Optional[int], text: str):
        self.code = code
        self.name = REPLY_CODES.get(code, "protocol") if code is not None else "protocol"
        self.text = text
        super().__init__(f"{self.name}: {text}")


def _algorithm_for(digest: bytes, algorithm: Optional[str]) -> str:
    if algorithm is None:
        algorithm = {32: "sha256", 64: "sha512"}.get(len(digest))
        if algorithm is None:
            raise ValueError(f"no algorithm has a {len(digest)}-byte digest")
    if algorithm not in ALGORITHM_IDS:
        raise ValueError(f"unknown algorithm {algorithm!r} (sha256 or sha512)")
    return algorithm


def encode_request(digest: bytes, nonce: bytes = b"", algorithm: Optional[str] = None) -> bytes:
    """The framed request: u32 length | version 1 | algorithm | digest_len | digest | nonce."""
    algorithm = _algorithm_for(digest, algorithm)
    if len(nonce) > MAX_NONCE:
        raise ValueError(f"nonce longer than {MAX_NONCE} bytes")
    body = (bytes([WIRE_VERSION, ALGORITHM_IDS[algorithm], len(digest)]) + bytes(digest)
            + bytes([len(nonce)]) + bytes(nonce))
    return struct.pack(">I", len(body)) + body


def decode_reply(frame: bytes) -> bytes:
    """The token from a framed reply, or SignError with taid's code and text."""
    if len(frame) < 5 or struct.unpack(">I", frame[:4])[0] != len(frame) - 4:
        raise SignError(None, "reply frame is not u32 length + body")
    code, payload = frame[4], frame[5:]
    if code != 0:
        raise SignError(code, payload.decode("utf-8", "replace"))
    return payload


def _read_exact(sock: socket.socket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        if not chunk:
            raise SignError(None, "taid closed the connection")
        out += chunk
    return out


def sign(socket_path: str, digest: bytes, nonce: bytes = b"", algorithm: Optional[str] = None,
         timeout: float = 5.0) -> bytes:
    """Asks taid for a token over its signing socket; returns the token bytes."""
    request = encode_request(digest, nonce, algorithm)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(socket_path)
        sock.sendall(request)
        header = _read_exact(sock, 4)
        length = struct.unpack(">I", header)[0]
        if length == 0 or length > MAX_REPLY_BODY:
            raise SignError(None, f"reply of {length} bytes")
        return decode_reply(header + _read_exact(sock, length))


CONTENT_DOMAIN = b"taistamp content v1\x00"


def content_digest(data: bytes, meta: Optional[dict] = None) -> bytes:
    """SHA-256 of taistamp's encoding: the domain string, u64 length and the file's bytes, u32
    pair count and the pairs sorted by key (bytewise UTF-8), each u32 length + bytes."""
    pairs = sorted((k.encode(), v.encode()) for k, v in (meta or {}).items())
    h = hashlib.sha256()
    h.update(CONTENT_DOMAIN)
    h.update(struct.pack(">Q", len(data)))
    h.update(data)
    h.update(struct.pack(">I", len(pairs)))
    for k, v in pairs:
        if not k or b"=" in k:
            raise ValueError(f"metadata key {k!r}: empty or contains '='")
        h.update(struct.pack(">I", len(k)) + k + struct.pack(">I", len(v)) + v)
    return h.digest()


def _meta(pairs: List[str]) -> dict:
    meta = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"taid_stamp: --meta {pair!r}: expected KEY=VALUE")
        if key in meta:
            raise SystemExit(f"taid_stamp: --meta {key!r} given twice")
        meta[key] = value
    return meta


# --- command line -----------------------------------------------------------------------------

def main(argv: Optional[List[str]] = None) -> int:
    """python3 taid_stamp.py verify FILE TOKEN --pubkey KEY [--meta K=V ...] [--raw [--algorithm A]]
       python3 taid_stamp.py sign FILE [--meta K=V ...] [-s SOCKET] [-o TOKEN]

    verify: hashes FILE as taistamp does (content_digest; --raw: the file's plain hash),
    verifies TOKEN against it offline, prints the token's fields as JSON. Exit status 0 when it
    verifies, 1 with the reason on stderr when it does not.
    sign: asks taid for a token of FILE's content digest and writes it (default FILE.taitoken).
    Exit status 0, or 4 with taid's refusal on stderr.
    """
    import argparse
    import json
    import sys

    parser = argparse.ArgumentParser(prog="taid_stamp.py")
    sub = parser.add_subparsers(dest="command", required=True)
    v = sub.add_parser("verify", help="verify a token against a file, offline")
    v.add_argument("file")
    v.add_argument("token")
    v.add_argument("--pubkey", required=True, help="taid's public key: a PEM or hex file")
    v.add_argument("--meta", action="append", default=[], help="KEY=VALUE, as given to sign")
    v.add_argument("--raw", action="store_true", help="the file's plain hash, no metadata")
    v.add_argument("--algorithm", default="sha256", choices=sorted(ALGORITHM_IDS))
    s = sub.add_parser("sign", help="ask taid for a token of a file and its metadata")
    s.add_argument("file")
    s.add_argument("--meta", action="append", default=[])
    s.add_argument("-s", "--socket", default="/run/taid/sign.sock")
    s.add_argument("-o", "--output")
    args = parser.parse_args(argv)

    if args.command == "sign":
        with open(args.file, "rb") as f:
            digest = content_digest(f.read(), _meta(args.meta))
        try:
            token_bytes = sign(args.socket, digest)
        except SignError as e:
            print(f"taid_stamp: taid refused: {e}", file=sys.stderr)
            return 4
        output = args.output or args.file + ".taitoken"
        with open(output, "wb") as f:
            f.write(token_bytes)
        print(output)
        return 0

    with open(args.file, "rb") as f:
        data = f.read()
    if args.raw:
        digest = hashlib.new(args.algorithm, data).digest()
    else:
        args.algorithm = "sha256"
        digest = content_digest(data, _meta(args.meta))
    with open(args.token, "rb") as f:
        token_bytes = f.read()
    with open(args.pubkey) as f:
        key = load_public_key(f.read())
    try:
        t = verify(token_bytes, digest, key, args.algorithm)
    except VerifyError as e:
        print(f"taid_stamp: {args.token}: {e}", file=sys.stderr)
        return 1
    print(json.dumps({"serial": t.serial, "tai_ns": t.tai_ns, "bound_ns": t.bound_ns,
                      "earliest_tai_ns": t.earliest_tai_ns, "latest_tai_ns": t.latest_tai_ns,
                      "leap": t.leap, "status": t.status, "algorithm": t.algorithm,
                      "digest": t.digest.hex(), "nonce": t.nonce.hex(),
                      "key_id": t.key_id.hex(), "leaf_index": t.leaf_index,
                      "leaf_count": t.leaf_count}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
