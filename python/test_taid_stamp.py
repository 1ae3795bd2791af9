"""Tests of taid_stamp.py against tokens the C++ code made (tests/data/stamp/vectors.json)."""

import hashlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import unittest

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import taid_stamp

VECTORS = os.environ.get(
    "TAID_STAMP_VECTORS",
    os.path.join(os.path.dirname(__file__), "..", "tests", "data", "stamp", "vectors.json"))


class VectorsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        with open(VECTORS) as f:
            cls.v = json.load(f)
        cls.key = taid_stamp.load_public_key(cls.v["public_key_pem"])

    def each(self):
        for t in self.v["tokens"]:
            yield t, bytes.fromhex(t["token_hex"]), bytes.fromhex(t["digest_hex"])

    def test_key_forms_agree(self):
        self.assertEqual(taid_stamp.raw_public_key(self.key).hex(), self.v["public_key_hex"])
        self.assertEqual(
            taid_stamp.raw_public_key(taid_stamp.load_public_key(self.v["public_key_hex"])),
            taid_stamp.raw_public_key(self.key))
        self.assertEqual(taid_stamp.key_id(self.key).hex(), self.v["key_id_hex"])
        # The key is RFC 8032's TEST 1: its seed gives this public key.
        seed = bytes.fromhex(self.v["seed_hex"])
        self.assertEqual(
            taid_stamp.raw_public_key(Ed25519PrivateKey.from_private_bytes(seed).public_key()),
            bytes.fromhex(self.v["public_key_hex"]))

    def test_cxx_tokens_verify_with_their_fields(self):
        self.assertEqual(len(self.v["tokens"]), 4)
        for t, token, digest in self.each():
            self.assertEqual(getattr(hashlib, t["algorithm"])(t["content"].encode()).digest(),
                             digest)
            got = taid_stamp.verify(token, digest, self.key)
            self.assertEqual(got.serial, t["serial"])
            self.assertEqual(got.tai_ns, t["tai_ns"])
            self.assertEqual(got.bound_ns, t["bound_ns"])
            self.assertEqual(got.leap, t["leap"])
            self.assertEqual(got.status, t["status"])
            self.assertEqual(got.leaf_index, t["leaf_index"])
            self.assertEqual(got.leaf_count, t["leaf_count"])
            self.assertEqual(got.nonce.hex(), t["nonce_hex"])
            self.assertEqual(got.algorithm, t["algorithm"])
            self.assertEqual(got.key_id.hex(), self.v["key_id_hex"])

    def test_batch_shares_root_and_signature(self):
        batch = [taid_stamp.parse(tok) for t, tok, _ in self.each() if t["leaf_count"] == 3]
        self.assertEqual(len(batch), 3)
        self.assertEqual(len({b.signature for b in batch}), 1)
        self.assertEqual(len({b.root for b in batch}), 1)
        self.assertEqual([len(b.path) for b in batch], [2, 2, 1])
        self.assertTrue(taid_stamp.consistent(batch[0], batch[2]))

    def test_every_flipped_bit_is_rejected(self):
        for t, token, digest in self.each():
            stages = {}
            for bit in range(len(token) * 8):
                bad = bytearray(token)
                bad[bit // 8] ^= 1 << (bit % 8)
                with self.assertRaises(taid_stamp.VerifyError, msg=f"bit {bit}") as cm:
                    taid_stamp.verify(bytes(bad), digest, self.key)
                stages[cm.exception.stage] = stages.get(cm.exception.stage, 0) + 1
            self.assertEqual(stages.get("key"), 64)
            for stage in ("malformed", "merkle", "signature"):
                self.assertGreater(stages.get(stage, 0), 0, stage)

    def test_flipped_digest_or_key_bit_is_rejected(self):
        t, token, digest = next(self.each())
        for bit in range(len(digest) * 8):
            bad = bytearray(digest)
            bad[bit // 8] ^= 1 << (bit % 8)
            with self.assertRaises(taid_stamp.VerifyError) as cm:
                taid_stamp.verify(token, bytes(bad), self.key)
            self.assertEqual(cm.exception.stage, "digest")
        raw = taid_stamp.raw_public_key(self.key)
        for bit in range(256):
            bad = bytearray(raw)
            bad[bit // 8] ^= 1 << (bit % 8)
            try:
                key = taid_stamp.load_public_key(bytes(bad).hex())
            except ValueError:
                continue  # not a point on the curve: refused before any token is read
            with self.assertRaises(taid_stamp.VerifyError) as cm:
                taid_stamp.verify(token, digest, key)
            self.assertEqual(cm.exception.stage, "key")

    def test_wrong_algorithm_or_length_is_rejected(self):
        t, token, digest = next(self.each())
        with self.assertRaises(taid_stamp.VerifyError) as cm:
            taid_stamp.verify(token, digest + digest, self.key)
        self.assertEqual(cm.exception.stage, "algorithm")
        with self.assertRaises(taid_stamp.VerifyError) as cm:
            taid_stamp.verify(token, digest[:20], self.key)
        self.assertEqual(cm.exception.stage, "algorithm")
        bad = bytearray(token)
        self.assertEqual(bad[95], 1)
        bad[95] = 2  # says sha512, carries 32 bytes
        with self.assertRaises(taid_stamp.VerifyError) as cm:
            taid_stamp.verify(bytes(bad), digest, self.key, algorithm="sha256")
        self.assertEqual(str(cm.exception),
                         "malformed: digest length: 32 for sha512, which is 64")

    def test_truncated_and_extended_tokens_are_malformed(self):
        t, token, digest = next(self.each())
        for n in range(len(token)):
            with self.assertRaises(taid_stamp.VerifyError) as cm:
                taid_stamp.parse(token[:n])
            self.assertEqual(cm.exception.stage, "malformed")
        with self.assertRaises(taid_stamp.VerifyError):
            taid_stamp.parse(token + b"\x00")

    def test_another_key_is_refused(self):
        t, token, digest = next(self.each())
        other = Ed25519PrivateKey.generate().public_key()
        with self.assertRaises(taid_stamp.VerifyError) as cm:
            taid_stamp.verify(token, digest, other)
        self.assertEqual(cm.exception.stage, "key")


class ClientTest(unittest.TestCase):
    """The client's frames are the C++ codec's (vectors.json "wire"), over a real Unix socket."""

    @classmethod
    def setUpClass(cls):
        with open(VECTORS) as f:
            cls.v = json.load(f)
        cls.key = taid_stamp.load_public_key(cls.v["public_key_hex"])
        cls.t = next(t for t in cls.v["tokens"] if t["serial"] == cls.v["wire"]["token_serial"])

    def test_request_bytes_match_cxx(self):
        got = taid_stamp.encode_request(bytes.fromhex(self.t["digest_hex"]),
                                        bytes.fromhex(self.t["nonce_hex"]))
        self.assertEqual(got.hex(), self.v["wire"]["request_frame_hex"])
        with self.assertRaises(ValueError):
            taid_stamp.encode_request(b"\0" * 20)
        with self.assertRaises(ValueError):
            taid_stamp.encode_request(b"\0" * 32, b"\0" * 65)

    def serve_once(self, reply_hex):
        """A one-shot server on a Unix socket; returns its path and what it received."""
        tmp = tempfile.mkdtemp()
        path = os.path.join(tmp, "sign.sock")
        srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        srv.bind(path)
        srv.listen(1)
        received = []

        def run():
            conn, _ = srv.accept()
            with conn:
                data = b""
                while len(data) < 4 or len(data) < 4 + int.from_bytes(data[:4], "big"):
                    data += conn.recv(4096)
                received.append(data)
                conn.sendall(bytes.fromhex(reply_hex))
            srv.close()

        thread = threading.Thread(target=run)
        thread.start()
        self.addCleanup(lambda: (thread.join(5), os.unlink(path), os.rmdir(tmp)))
        return path, received

    def test_sign_gets_a_token_that_verifies(self):
        path, received = self.serve_once(self.v["wire"]["reply_frame_hex"])
        digest = bytes.fromhex(self.t["digest_hex"])
        token = taid_stamp.sign(path, digest, bytes.fromhex(self.t["nonce_hex"]))
        self.assertEqual(received[0].hex(), self.v["wire"]["request_frame_hex"])
        self.assertEqual(token.hex(), self.t["token_hex"])
        self.assertEqual(taid_stamp.verify(token, digest, self.key).serial, 2)

    def test_refusal_carries_code_and_text(self):
        path, _ = self.serve_once(self.v["wire"]["error_reply_frame_hex"])
        with self.assertRaises(taid_stamp.SignError) as cm:
            taid_stamp.sign(path, b"\1" * 32)
        self.assertEqual((cm.exception.code, cm.exception.name, cm.exception.text),
                         (3, "unsynchronized", "not synchronized"))


class CommandLineTest(unittest.TestCase):
    def test_verify_prints_fields_or_refuses(self):
        with open(VECTORS) as f:
            v = json.load(f)
        t = v["tokens"][0]
        with tempfile.TemporaryDirectory() as tmp:
            paths = {name: os.path.join(tmp, name) for name in ("content", "token", "key")}
            with open(paths["content"], "w") as f:
                f.write(t["content"])
            with open(paths["token"], "wb") as f:
                f.write(bytes.fromhex(t["token_hex"]))
            with open(paths["key"], "w") as f:
                f.write(v["public_key_pem"])
            script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "taid_stamp.py")
            cmd = [sys.executable, script, "verify", paths["content"], paths["token"],
                   "--pubkey", paths["key"], "--raw"]
            out = subprocess.run(cmd, capture_output=True, text=True)
            self.assertEqual(out.returncode, 0, out.stderr)
            fields = json.loads(out.stdout)
            self.assertEqual((fields["serial"], fields["tai_ns"], fields["bound_ns"]),
                             (1, t["tai_ns"], t["bound_ns"]))
            self.assertEqual(fields["earliest_tai_ns"], t["tai_ns"] - t["bound_ns"])
            with open(paths["content"], "a") as f:
                f.write("!")
            out = subprocess.run(cmd, capture_output=True, text=True)
            self.assertEqual(out.returncode, 1)
            self.assertIn("digest: the token is for another digest", out.stderr)


class ContentDigestTest(unittest.TestCase):
    # docs/TOKEN.md's vector (taistamp's encoding; daemon_sign_server_test checks it through
    # taistamp).
    def test_documented_vector(self):
        data = b"not really a jpeg\n"
        self.assertEqual(
            taid_stamp.content_digest(data, {"gps": "1,2", "camera": "X100"}).hex(),
            "3e2392b28b23c6a35e94d9a9330c0d6650fb755b27b6fc0ff7fbb92452b14eef")
        self.assertEqual(
            taid_stamp.content_digest(data).hex(),
            "274d6690e971059fc57499a8a2973edaadd670196a798a8216abe9b6cfea8bb2")
        with self.assertRaises(ValueError):
            taid_stamp.content_digest(data, {"a=b": "c"})


class MerkleTest(unittest.TestCase):
    def mth(self, leaves):
        if len(leaves) == 1:
            return leaves[0]
        k = 1 << ((len(leaves) - 1).bit_length() - 1)
        return taid_stamp.node_hash(self.mth(leaves[:k]), self.mth(leaves[k:]))

    def test_paths_of_rfc9162_trees_verify(self):
        # Paths built here from the recursive definition, checked by the verifier's loop.
        def path(leaves, i):
            if len(leaves) == 1:
                return []
            k = 1 << ((len(leaves) - 1).bit_length() - 1)
            if i < k:
                return path(leaves[:k], i) + [self.mth(leaves[k:])]
            return path(leaves[k:], i - k) + [self.mth(leaves[:k])]

        for n in range(1, 20):
            leaves = [taid_stamp.leaf_hash(bytes([i])) for i in range(n)]
            root = self.mth(leaves)
            for i in range(n):
                self.assertEqual(taid_stamp.root_from_path(leaves[i], i, n, path(leaves, i)),
                                 root, (n, i))


if __name__ == "__main__":
    unittest.main()
