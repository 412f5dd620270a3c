"""The world's one random source: a seed reproduces every derived value, by name and in any order."""

from __future__ import annotations

import threading

from cryptography.hazmat.primitives import serialization

from mdm.protocol.randomness import Randomness


def _pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def test_a_seed_reproduces_every_kind_of_value_and_labels_keep_them_apart() -> None:
    a, b = Randomness(7), Randomness(7)
    assert a.uuid("server") == b.uuid("server") != a.uuid("other")
    assert a.hex(16, "push-magic") == b.hex(16, "push-magic") and len(a.hex(16, "push-magic")) == 32
    assert a.urlsafe(24, "t") == b.urlsafe(24, "t") and "=" not in a.urlsafe(24, "t")
    assert a.bytes(100, "long") == b.bytes(100, "long") and a.bytes(100, "long")[:32] != a.bytes(32, "short")
    assert _pem(a.ec_key("mdm-ca")) == _pem(b.ec_key("mdm-ca")) != _pem(a.ec_key("apple-ca"))
    assert a.stream("faker").random() == b.stream("faker").random()
    assert Randomness(8).uuid("server") != a.uuid("server")
    assert 0 <= a.below(10, "n") < 10 and a.child_seed("x") == b.child_seed("x")


def test_seeded_rsa_keys_are_the_same_in_another_process() -> None:
    import subprocess
    import sys

    here = Randomness(3).rsa_key("push-csr", 2048)
    code = (
        "from mdm.protocol.randomness import Randomness;"
        "print(Randomness(3).rsa_key('push-csr', 2048).public_key().public_numbers().n)"
    )
    there = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert int(there) == here.public_key().public_numbers().n
    assert here.key_size == 2048 and here.public_key().public_numbers().e == 65537
    # the key works: sign and verify
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    signature = here.sign(b"m", padding.PKCS1v15(), hashes.SHA256())
    here.public_key().verify(signature, b"m", padding.PKCS1v15(), hashes.SHA256())


def test_values_do_not_depend_on_the_order_threads_ask_in() -> None:
    seeded = Randomness(11)
    labels = [f"device:{i}:push-token" for i in range(200)]
    expected = {label: Randomness(11).hex(32, label) for label in labels}
    got: dict[str, str] = {}

    def work(part: list[str]) -> None:
        for label in reversed(part):
            got[label] = seeded.hex(32, label)

    threads = [threading.Thread(target=work, args=(labels[i::4],)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert got == expected


def test_without_a_seed_values_are_fresh() -> None:
    r = Randomness(None)
    assert r.uuid("x") != r.uuid("x") and r.hex(16, "x") != r.hex(16, "x")
    assert _pem(r.ec_key("k")) != _pem(r.ec_key("k")) and r.child_seed("x") is None
