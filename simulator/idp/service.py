"""The rules of the customer's identity provider: who exists, how a password is checked, what a token says.

The IdP stands in for the customer's ADFS in the legacy "authenticate with Setup Assistant" flow:
the MDM server collects a user's name and password on the device and trades them at the WS-Trust
1.3 UsernameMixed endpoint for a SAML token naming the user (user affinity). Per FACTS.md §4 MFA is
not applied during that enrollment, so a user with ``mfa_required`` still gets a token here; the flag
is kept so the MDM side and the demo can show which users will be challenged afterwards.

Passwords are hashed with scrypt at deliberately tiny cost parameters. This is a simulator: the hash
exists so sign-in follows the path a real directory follows (salted hash, constant-time compare,
unknown users hashed too, so timing tells nothing), not to protect anything; a thousand seeded users
must take well under half a second. The clear password is stored as well, on purpose: see
:mod:`simulator.idp.store`.

Every random value (Faker's names and passwords, salts, object GUIDs, assertion IDs) comes from the
world's :class:`~mdm.protocol.randomness.Randomness`, under a label naming what it is for, so a seeded
directory and its tokens are the same in every run and every process.

The wire format (RST in, RSTR or fault out) is :mod:`mdm.protocol.wstrust`; this module only decides
what a token says.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import re
import sqlite3
import threading
import unicodedata
import uuid
from datetime import timedelta
from typing import Any

from faker import Faker

from mdm.platform.clock import Clock
from mdm.platform.storage import Store
from mdm.protocol.randomness import Randomness
from mdm.protocol.wstrust import SamlToken

from . import store as idp_store

__all__ = ["DEPARTMENTS", "TOKEN_LIFETIME", "IdentityProvider", "UserError", "UserExists"]

TOKEN_LIFETIME = timedelta(hours=1)
MFA_SHARE = 0.3
DEPARTMENTS = (
    "Sales", "Marketing", "Research & Development", "Clinical Operations", "Manufacturing",
    "Quality Assurance", "Finance", "Human Resources", "Legal", "IT", "Supply Chain", "Customer Support",
)

# scrypt at toy strength (see the module docstring): ~40 µs a hash.
_SCRYPT = {"n": 16, "r": 8, "p": 1, "dklen": 32}
# What an unknown user's password is checked against, so a miss costs what a wrong password costs.
_DUMMY_SALT = b"\x00" * 16
_DUMMY_HASH = b"\x00" * 32

_UPN = re.compile(r"^[^@\s]+@[^@\s.]+(?:\.[^@\s.]+)+$")
_CONTROL = re.compile("[\x00-\x1f\x7f\ufffe\uffff]")
_MAX_TEXT = 256


class UserError(ValueError):
    """A user that cannot be added as given; the message says why (the HTTP layer answers 400)."""


_FAKER_LOCK = threading.Lock()


@functools.lru_cache(maxsize=1)
def _faker() -> Faker:
    """One Faker per process: building one loads every provider (tens of ms), and each batch reseeds
    it; :data:`_FAKER_LOCK` keeps two worlds in one process from reseeding it under each other."""
    return Faker("en_US")


class UserExists(UserError):
    """The UPN is already in the directory (the HTTP layer answers 409)."""


class IdentityProvider:
    """An ADFS-like directory of users that can check passwords and issue SAML 1.1 tokens."""

    def __init__(self, store: Store, clock: Clock, *, domain: str = "contoso.com", seed: int | None = None,
                 issuer: str | None = None) -> None:
        domain = domain.strip().lower()
        if not _UPN.match(f"x@{domain}"):
            raise ValueError(f"not a DNS domain: {domain!r}")
        self._store = store
        self.clock = clock
        self.domain = domain
        self.seed = seed
        self._random = Randomness(seed)
        # ADFS's default federation service identifier, on the conventional sts.<domain> host.
        self.issuer = issuer or f"http://sts.{domain}/adfs/services/trust"
        self.netbios_name = domain.split(".")[0].upper()[:15]

    # -- the directory ----------------------------------------------------------------------------
    def seed_users(self, n: int) -> list[dict[str, Any]]:
        """Add ``n`` Faker users and return them.

        With a seed the batch is a function of (seed, domain, users already present), not of this
        object's history, so every process and every rebuilt world seeds the same directory.
        """
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise ValueError("n must be a non-negative number of users")
        with self._store.transaction() as db:
            start = idp_store.count_users(db)
            taken = idp_store.upns(db)
            rng = self._random.stream(f"idp:{self.domain}:users-from:{start}")
            with _FAKER_LOCK:
                fake = _faker()
                fake.seed_instance(rng.getrandbits(128))
                now = self.clock.timestamp()
                rows = []
                for _ in range(n):
                    first, last = fake.first_name(), fake.last_name()
                    upn = self._unique_upn(first, last, taken)
                    password = fake.password(length=12)
                    salt = rng.randbytes(16)
                    rows.append((
                        upn, f"{first} {last}", password, salt, _hash_password(password, salt),
                        int(rng.random() < MFA_SHARE), rng.choice(DEPARTMENTS),
                        str(uuid.UUID(int=rng.getrandbits(128), version=4)), now,
                    ))
            idp_store.insert_users(db, rows)
        return [_public(dict(zip(idp_store.USER_COLUMNS, row, strict=True))) for row in rows]

    def add_user(self, upn: str, password: str, display_name: str | None = None, mfa_required: bool = False,
                 department: str | None = None) -> dict[str, Any]:
        """Add one user; raises :class:`UserError` for bad input and :class:`UserExists` for a taken UPN."""
        if not isinstance(upn, str) or len(upn) > _MAX_TEXT or not _UPN.match(upn) or _CONTROL.search(upn):
            raise UserError("upn must be a user principal name such as first.last@contoso.com")
        if not isinstance(password, str) or not password or len(password) > _MAX_TEXT or _CONTROL.search(
            password.replace("\t", "")
        ):
            raise UserError(f"password must be 1 to {_MAX_TEXT} printable characters")
        if display_name is None:
            words = re.split(r"[._-]+", upn.split("@")[0])
            display_name = " ".join(word.capitalize() for word in words if word)
        if not isinstance(display_name, str) or not display_name.strip() or len(display_name) > _MAX_TEXT \
                or _CONTROL.search(display_name):
            raise UserError(f"display_name must be 1 to {_MAX_TEXT} printable characters")
        if not isinstance(mfa_required, bool):
            raise UserError("mfa_required must be true or false")
        if department is not None and (not isinstance(department, str) or len(department) > _MAX_TEXT
                                       or _CONTROL.search(department)):
            raise UserError(f"department must be text of at most {_MAX_TEXT} characters")
        label = f"idp:{self.domain}:user:{upn.lower()}"
        salt = self._random.bytes(16, f"{label}:salt")
        row = (upn, display_name.strip(), password, salt, _hash_password(password, salt), int(mfa_required),
               department, self._random.uuid(f"{label}:object-guid"), self.clock.timestamp())
        try:
            with self._store.transaction() as db:
                idp_store.insert_users(db, [row])
        except sqlite3.IntegrityError:
            raise UserExists(f"{upn} already exists") from None
        return _public(dict(zip(idp_store.USER_COLUMNS, row, strict=True)))

    def users(self, limit: int | None = None) -> list[dict[str, Any]]:
        """The directory, oldest first, with each clear password (so simulated users can sign in)."""
        if limit is not None and (not isinstance(limit, int) or limit < 0):
            raise ValueError("limit must be a non-negative integer")
        with self._store.read() as db:
            return [_public(dict(row)) for row in idp_store.list_users(db, limit)]

    def user(self, upn: str) -> dict[str, Any] | None:
        with self._store.read() as db:
            row = idp_store.find_user(db, upn)
        return _public(dict(row)) if row is not None else None

    # -- sign-in ------------------------------------------------------------------------------------
    def authenticate(self, username: str, password: str) -> dict[str, Any] | None:
        """The user if the password is right, else None.

        An unknown user and a wrong password take the same path, hash included, and the hashes are
        compared in constant time: the answer and its timing are the same for both. ``username`` is
        a UPN or ``NETBIOS\\name`` (which ADFS also accepts), matched without case.
        """
        upn = self._upn_for(username)
        row = None
        if upn is not None:
            with self._store.read() as db:
                row = idp_store.find_user(db, upn)
        salt = row["salt"] if row is not None else _DUMMY_SALT
        expected = row["password_hash"] if row is not None else _DUMMY_HASH
        given = password if isinstance(password, str) else ""
        matches = hmac.compare_digest(_hash_password(given, salt), expected)
        if row is None or not matches or not isinstance(password, str):
            return None
        return _public(dict(row))

    def issue(self, username: str, password: str, applies_to: str) -> SamlToken | None:
        """A SAML 1.1 bearer token for ``applies_to`` valid one hour from world time, or None.

        MFA is deliberately not demanded (FACTS.md §4: the legacy Setup Assistant flow cannot). A seeded
        assertion ID is named by the user's n-th token (counted in the store), so seeded runs repeat it
        and two tokens issued in one instant still differ; unseeded, it is random and nothing is counted
        (sign-in stays a read).
        """
        user = self.authenticate(username, password)
        if user is None:
            return None
        number = 0
        if self._random.seeded:
            with self._store.transaction() as db:
                number = idp_store.next_assertion_number(db, user["upn"])
        now = self.clock.now()
        return SamlToken(
            upn=user["upn"],
            immutable_id=user["immutable_id"],
            issuer=self.issuer,
            audience=applies_to,
            assertion_id="_" + self._random.uuid(f"idp:{self.domain}:user:{user['upn'].lower()}:assertion:{number}"),
            issue_instant=now,
            not_on_or_after=now + TOKEN_LIFETIME,
        )

    # -- helpers ------------------------------------------------------------------------------------
    def _upn_for(self, username: object) -> str | None:
        if not isinstance(username, str) or len(username) > _MAX_TEXT:
            return None
        name = username.strip()
        if "\\" in name:
            netbios, _, account = name.partition("\\")
            if netbios.upper() not in (self.netbios_name, self.domain.upper()) or not account:
                return None
            name = f"{account}@{self.domain}"
        return name if "@" in name else None

    def _unique_upn(self, first: str, last: str, taken: set[str]) -> str:
        base = f"{_ascii_word(first)}.{_ascii_word(last)}"
        candidate, number = f"{base}@{self.domain}", 1
        while candidate in taken:
            number += 1
            candidate = f"{base}{number}@{self.domain}"
        taken.add(candidate)
        return candidate


def _hash_password(password: str, salt: bytes) -> bytes:
    return hashlib.scrypt(password.encode("utf-8", "surrogatepass"), salt=salt, **_SCRYPT)


def _ascii_word(name: str) -> str:
    """``Zoë O'Brien-Smith`` → ``zoe``/``obrien-smith``: what a directory admin would type."""
    text = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode().lower()
    return re.sub(r"[^a-z0-9-]", "", text) or "user"


def _public(row: dict[str, Any]) -> dict[str, Any]:
    """A user as the simulator shows it: no salt or hash, but the clear password (on purpose)."""
    guid = row["object_guid"]
    return {
        "upn": row["upn"],
        "display_name": row["display_name"],
        "password": row["password"],
        "mfa_required": bool(row["mfa_required"]),
        "department": row["department"],
        "object_guid": guid,
        # Azure AD Connect's sourceAnchor: base64 of objectGUID in .NET's (little-endian) byte order.
        "immutable_id": base64.b64encode(uuid.UUID(guid).bytes_le).decode(),
    }
