"""One injected random source per world, so that ``--seed`` replays a run: identities, tokens, keys.

Without a seed every value comes from the operating system (``secrets``), as secrets must. With a
seed, each value is derived from ``(seed, label)``, where the label names *what* the value is for
(``"portal:server:mdmsim:consumer_key"``, ``"device:F2LX…:push-token"``). Deriving by name rather
than drawing from one shared stream keeps a seeded run reproducible even though parties serve
requests on many threads in no fixed order: a value does not depend on what was drawn before it.

Parties take a :class:`Randomness` (or make ``Randomness(None)``) and never call ``uuid.uuid4``,
``os.urandom`` or ``secrets`` themselves for anything a seeded run should reproduce.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import os
import random
import uuid
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, rsa

__all__ = ["Randomness", "derived_bytes"]

_P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
_P384_ORDER = int(
    "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFC7634D81F4372DDF581A0DB248B0A77AECEC196ACCC52973", 16
)


def derived_bytes(seed: int, label: str, n: int) -> bytes:
    """``n`` bytes that depend only on ``(seed, label)`` (SHAKE-256, an extendable-output hash)."""
    return hashlib.shake_256(f"mdmsim:{seed}:{label}".encode()).digest(n)


def _sha256(seed: int, label: str) -> bytes:
    """The derivation mdmsim has used for seeded UUIDs and EC keys since its first release (kept, so
    a seed gives the same UUIDs and keys as before)."""
    return hashlib.sha256(f"mdmsim:{seed}:{label}".encode()).digest()


class _CounterStream:
    """A byte stream for key generation: SHA-256 in counter mode over ``(seed, label)``."""

    def __init__(self, seed: int, label: str) -> None:
        self._key = derived_bytes(seed, label, 32)
        self._counter = 0

    def __call__(self, n: int) -> bytes:
        out = bytearray()
        while len(out) < n:
            self._counter += 1
            out += hashlib.sha256(self._key + self._counter.to_bytes(8, "big")).digest()
        return bytes(out[:n])


@functools.lru_cache(maxsize=256)
def _derived_rsa_key(seed: int, label: str, bits: int) -> rsa.RSAPrivateKey:
    """An RSA key that depends only on ``(seed, label, bits)``.

    ``cryptography`` cannot take a random source, so the primes come from pycryptodome's generator
    fed with a derived stream (~0.6 s for 2048 bits, against ~0.1 s unseeded); the result is
    cached per process, and a seeded world has only a few RSA keys.
    """
    from Crypto.PublicKey import RSA  # pycryptodome; imported only by seeded worlds

    key = RSA.generate(bits, randfunc=_CounterStream(seed, f"rsa:{bits}:{label}"))
    numbers = rsa.RSAPrivateNumbers(
        p=key.p, q=key.q, d=key.d,
        dmp1=key.d % (key.p - 1), dmq1=key.d % (key.q - 1), iqmp=pow(key.q, -1, key.p),
        public_numbers=rsa.RSAPublicNumbers(key.e, key.n),
    )
    return numbers.private_key()


class Randomness:
    """The world's random source: OS randomness, or values derived from a seed and a label."""

    __slots__ = ("seed",)

    def __init__(self, seed: int | None = None) -> None:
        if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
            raise TypeError("a seed is an integer")
        self.seed = seed

    @property
    def seeded(self) -> bool:
        return self.seed is not None

    def __repr__(self) -> str:
        return f"Randomness(seed={self.seed!r})"

    def bytes(self, n: int, label: str) -> bytes:
        return os.urandom(n) if self.seed is None else derived_bytes(self.seed, label, n)

    def hex(self, n: int, label: str) -> str:
        """``2 n`` hex digits (``n`` bytes), as ``secrets.token_hex(n)``."""
        return self.bytes(n, label).hex()

    def urlsafe(self, n: int, label: str) -> str:
        """URL-safe base64 of ``n`` bytes without padding, as ``secrets.token_urlsafe(n)``."""
        return base64.urlsafe_b64encode(self.bytes(n, label)).rstrip(b"=").decode("ascii")

    def uuid(self, label: str) -> str:
        """A version-4 UUID in canonical (lower-case) form."""
        if self.seed is None:
            return str(uuid.uuid4())
        return str(uuid.UUID(bytes=_sha256(self.seed, label)[:16], version=4))

    def below(self, n: int, label: str) -> int:
        """An integer in ``[0, n)``."""
        if self.seed is None:
            return random.SystemRandom().randrange(n)
        return int.from_bytes(derived_bytes(self.seed, label, 16), "big") % n

    def stream(self, label: str) -> random.Random:
        """A ``random.Random`` for libraries that take one (Faker): seeded by ``(seed, label)``, or
        from the OS. Use it from one thread at a time; its draws depend on their order."""
        if self.seed is None:
            return random.Random(os.urandom(32))
        return random.Random(derived_bytes(self.seed, label, 32))

    def ec_key(self, label: str, curve: ec.EllipticCurve | None = None) -> ec.EllipticCurvePrivateKey:
        """A P-256 key, or P-384 with ``curve=ec.SECP384R1()`` (Apple's attestation CAs); cheap to
        derive: a scalar from the seed. P-256 keeps the derivation seeded worlds have always used."""
        curve = curve if curve is not None else ec.SECP256R1()
        if self.seed is None:
            return ec.generate_private_key(curve)
        if isinstance(curve, ec.SECP384R1):
            scalar = int.from_bytes(derived_bytes(self.seed, f"p384:{label}", 64), "big") % (_P384_ORDER - 1) + 1
            return ec.derive_private_key(scalar, curve)
        if not isinstance(curve, ec.SECP256R1):
            raise ValueError("seeded EC keys are P-256 or P-384")
        scalar = int.from_bytes(_sha256(self.seed, label), "big") % (_P256_ORDER - 1) + 1
        return ec.derive_private_key(scalar, curve)

    def rsa_key(self, label: str, bits: int = 2048) -> rsa.RSAPrivateKey:
        """An RSA key (public exponent 65537); derived and cached per process when seeded."""
        if self.seed is None:
            return rsa.generate_private_key(public_exponent=65537, key_size=bits)
        return _derived_rsa_key(self.seed, label, bits)

    def child_seed(self, label: str) -> int | None:
        """A seed for a component that takes an integer seed (``None`` stays ``None``)."""
        if self.seed is None:
            return None
        return int.from_bytes(derived_bytes(self.seed, f"seed:{label}", 8), "big")

    def __reduce__(self) -> tuple[Any, ...]:
        return (Randomness, (self.seed,))
