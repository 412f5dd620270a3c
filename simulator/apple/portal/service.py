"""The rules of Apple's business portal: the organisation, its devices and orders, MDM servers and tokens.

Every change a server should hear about becomes an event in Apple's store (``added`` for the server a
device is assigned to, ``deleted`` for the one it left, ``modified`` for an edit), stamped with world
time; the DEP web service's sync reports them. Errors are :class:`PortalError` with a message a person
can act on; the HTTP layer renders them as ``{"error": ...}``.

Bulk adds are one transaction of ``executemany`` with ids numbered in Python, so a world of 100,000
devices is built in about a second.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from mdm.platform.clock import Clock
from mdm.platform.storage import Store
from mdm.protocol.cms import smime_envelope, text_part
from mdm.protocol.isotime import iso_from_timestamp

from .. import store as apple_store

__all__ = ["PortalError", "PortalService", "SERIAL_PATTERN", "plausible_device"]

SERIAL_PATTERN = re.compile(r"^[A-Z0-9]{4,32}$")
TOKEN_LIFETIME = timedelta(days=365)
MAX_FIELD = 256
MAX_GENERATE = 100_000

OS_NAMES = ("iOS", "iPadOS", "OSX", "tvOS", "visionOS")
FAMILIES = {
    "iPad": "iPadOS",
    "iPhone": "iOS",
    "iPod": "iOS",
    "Mac": "OSX",
    "AppleTV": "tvOS",
    "Vision": "visionOS",
}

# A few models with their colours and capacities, enough to make a serial-only import look real.
_CATALOG: tuple[tuple[str, str, tuple[str, ...], tuple[int, ...]], ...] = (
    ("iPhone 15", "iPhone", ("BLACK", "BLUE", "GREEN", "PINK"), (128, 256)),
    ("iPhone 15 Pro", "iPhone", ("NATURAL TITANIUM", "BLUE TITANIUM", "BLACK TITANIUM"), (128, 256, 512)),
    ("iPhone 14", "iPhone", ("MIDNIGHT", "STARLIGHT", "PURPLE"), (128, 256)),
    ("iPhone SE (3rd generation)", "iPhone", ("MIDNIGHT", "STARLIGHT", "RED"), (64, 128)),
    ("iPad (10th generation)", "iPad", ("BLUE", "SILVER", "PINK"), (64, 256)),
    ("iPad Air (5th generation)", "iPad", ("SPACE GRAY", "BLUE", "STARLIGHT"), (64, 256)),
    ("iPad Pro (12.9-inch) (6th generation)", "iPad", ("SPACE GRAY", "SILVER"), (128, 512)),
)


class PortalError(Exception):
    """A portal request that cannot be done: ``status`` 400 or 404 and a message for a person."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message



def plausible_device(serial: str) -> dict[str, str]:
    """A device record for a bare serial number, picked deterministically from a small catalog."""
    digest = hashlib.sha256(serial.encode()).digest()
    model, family, colors, capacities = _CATALOG[digest[0] % len(_CATALOG)]
    color = colors[digest[1] % len(colors)]
    capacity = capacities[digest[2] % len(capacities)]
    return {
        "serial_number": serial,
        "model": model,
        "description": f"{model.upper()} {color} {capacity}GB",
        "color": color,
        "os": FAMILIES[family],
        "device_family": family,
    }


def _random_serial() -> str:
    alphabet = "0123456789CDFGHJKLMNPQRTVWXY"
    return "".join(secrets.choice(alphabet) for _ in range(12))


def _default_generate(count: int) -> list[dict[str, Any]]:
    return [plausible_device(_random_serial()) for _ in range(count)]


def _text(record: Mapping[str, Any], key: str, default: str) -> str:
    value = record.get(key)
    if value is None:
        return default
    if not isinstance(value, str) or len(value) > MAX_FIELD:
        raise PortalError(400, f"{key} must be a string of at most {MAX_FIELD} characters")
    return value


def _normalize(record: Any, order_number: str | None) -> tuple[Any, ...]:
    """``(serial, model, description, color, asset_tag, os, family, order)`` for one device record."""
    if not isinstance(record, Mapping):
        raise PortalError(400, "each device must be an object with a serial_number")
    serial = record.get("serial_number")
    if not isinstance(serial, str) or not SERIAL_PATTERN.match(serial):
        raise PortalError(400, f"not a serial number (4-32 capital letters and digits): {serial!r}"[:300])
    model = _text(record, "model", "")
    family = record.get("device_family")
    if family not in FAMILIES:
        lowered = model.lower()
        family = next((f for f in FAMILIES if lowered.startswith(f.lower())), "iPhone")
    os_name = record.get("os")
    if os_name not in OS_NAMES:
        os_name = FAMILIES[family]
    if family == "iPad" and os_name == "iOS":
        os_name = "iPadOS"  # stored modern; protocol versions before 7 are shown "iOS"
    if not model:
        model = plausible_device(serial)["model"] if family in ("iPhone", "iPad") else family
    description = _text(record, "description", model.upper())
    color = _text(record, "color", "")
    asset_tag = _text(record, "asset_tag", "") or None
    order = record.get("order_number", order_number)
    if order is not None and (not isinstance(order, str) or len(order) > MAX_FIELD):
        raise PortalError(400, "order_number must be a string")
    return serial, model, description, color, asset_tag, os_name, family, order


class PortalService:
    """Apple Business Manager for one organisation: what an admin does by hand, as an API."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        generate_devices: Callable[[int], list[dict[str, Any]]] | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.generate_devices = generate_devices or _default_generate

    # -- organisation ------------------------------------------------------------------------------
    def ensure_organization(
        self,
        name: str | None = None,
        *,
        email: str | None = None,
        phone: str | None = None,
        address: str | None = None,
        admin_id: str | None = None,
        org_id: str | None = None,
        org_type: str | None = None,
        org_version: str | None = None,
        **_: Any,
    ) -> dict[str, Any]:
        """Create the world's one organisation, or update the fields given; returns it.

        Idempotent, so every process of a world (and every restart on a kept store) may call it.
        """
        if org_type not in (None, "edu", "org"):
            raise PortalError(400, "org_type is edu or org")
        if org_version not in (None, "v1", "v2"):
            raise PortalError(400, "org_version is v1 or v2")
        domain = re.sub(r"[^a-z0-9]+", "", (name or "example").lower()) or "example"
        with self.store.transaction() as db:
            current = apple_store.organization(db)
            if current is None:
                db.execute(
                    "INSERT INTO organization (id, name, email, phone, address, org_id, org_type, "
                    "org_version, admin_id) VALUES (1, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        name or "Example Organization",
                        email or f"it@{domain}.example.com",
                        phone or "+1 408 555 0100",
                        address or "1 Infinite Loop, Cupertino, CA 95014, US",
                        org_id or str(secrets.randbelow(9_000_000) + 1_000_000),
                        org_type or "org",
                        org_version or "v1",
                        admin_id or f"admin@{domain}.example.com",
                    ),
                )
            else:
                changes = {
                    "name": name,
                    "email": email,
                    "phone": phone,
                    "address": address,
                    "admin_id": admin_id,
                    "org_id": org_id,
                    "org_type": org_type,
                    "org_version": org_version,
                }
                for column, value in changes.items():
                    if value is not None:
                        db.execute(f"UPDATE organization SET {column} = ? WHERE id = 1", (value,))
            return dict(apple_store.organization(db) or {})

    def organization(self) -> dict[str, Any]:
        with self.store.read() as db:
            org = apple_store.organization(db)
        if org is None:
            return self.ensure_organization()
        return dict(org)

    def set_terms_required(self, required: bool) -> dict[str, bool]:
        """New terms the admin has not accepted: while set, the DEP service answers 403 T_C_NOT_SIGNED."""
        self.organization()
        with self.store.transaction() as db:
            db.execute("UPDATE organization SET require_terms = ? WHERE id = 1", (1 if required else 0,))
        return {"require_acceptance": bool(required)}

    # -- MDM servers -------------------------------------------------------------------------------
    def create_server(self, server_name: str, credentials: Mapping[str, str] | None = None) -> dict[str, Any]:
        """Add an MDM server; with ``credentials`` (depsim's well-known keys) an existing one is returned."""
        if not isinstance(server_name, str) or not server_name.strip() or len(server_name) > 200:
            raise PortalError(400, "server_name must be a non-empty string of at most 200 characters")
        self.organization()
        keys = dict(credentials or {})
        for name, prefix in (
            ("consumer_key", "CK_"),
            ("consumer_secret", "CS_"),
            ("access_token", "AT_"),
            ("access_secret", "AS_"),
        ):
            value = keys.get(name)
            if value is None:
                keys[name] = prefix + secrets.token_hex(64)
            elif not isinstance(value, str) or not value:
                raise PortalError(400, f"{name} must be a non-empty string")
        now = self.clock.timestamp()
        with self.store.transaction() as db:
            if credentials:
                row = db.execute(
                    "SELECT server_uuid FROM servers WHERE consumer_key = ? OR access_token = ?",
                    (keys["consumer_key"], keys["access_token"]),
                ).fetchone()
                if row is not None:
                    return self._server(db, row[0], with_credentials=True)
            taken = db.execute("SELECT 1 FROM servers WHERE server_name = ?", (server_name.strip(),)).fetchone()
            if taken is not None:  # ABM names MDM servers uniquely: the name is how admins pick one
                raise PortalError(400, f"an MDM server named {server_name.strip()!r} already exists")
            server_uuid = str(uuid.uuid4()).upper()
            db.execute(
                "INSERT INTO servers (server_uuid, server_name, consumer_key, consumer_secret, access_token, "
                "access_secret, token_issued_at, access_token_expiry, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    server_uuid,
                    server_name.strip(),
                    keys["consumer_key"],
                    keys["consumer_secret"],
                    keys["access_token"],
                    keys["access_secret"],
                    now,
                    now + TOKEN_LIFETIME.total_seconds(),
                    now,
                ),
            )
            return self._server(db, server_uuid, with_credentials=True)

    def _server(self, db: Any, server_uuid: str, *, with_credentials: bool = False) -> dict[str, Any]:
        row = db.execute(
            "SELECT s.*, (SELECT count(*) FROM devices d WHERE d.server_id = s.id) AS device_count "
            "FROM servers s WHERE s.server_uuid = ?",
            (server_uuid,),
        ).fetchone()
        if row is None:
            raise PortalError(404, f"no MDM server {server_uuid}")
        out: dict[str, Any] = {
            "server_uuid": row["server_uuid"],
            "server_name": row["server_name"],
            "device_count": row["device_count"],
            "has_public_key": row["public_key_pem"] is not None,
            "access_token_expiry": iso_from_timestamp(row["access_token_expiry"]),
        }
        if with_credentials:
            for key in ("consumer_key", "consumer_secret", "access_token", "access_secret"):
                out[key] = row[key]
        return out

    def server(self, server_uuid: str) -> dict[str, Any]:
        with self.store.read() as db:
            return self._server(db, server_uuid)

    def servers(self) -> list[dict[str, Any]]:
        """``[{server_uuid, server_name, device_count}]`` in creation order."""
        with self.store.read() as db:
            rows = db.execute(
                "SELECT s.server_uuid, s.server_name, "
                "(SELECT count(*) FROM devices d WHERE d.server_id = s.id) AS device_count "
                "FROM servers s ORDER BY s.id"
            ).fetchall()
        return [dict(r) for r in rows]

    def set_public_key(self, server_uuid: str, pem: str | bytes) -> dict[str, Any]:
        """Store the MDM vendor's certificate; the server token will be encrypted to it."""
        data = pem.encode() if isinstance(pem, str) else bytes(pem)
        try:
            cert = x509.load_pem_x509_certificate(data.strip() + b"\n")
        except ValueError:
            raise PortalError(
                400, "not a PEM certificate: upload the -----BEGIN CERTIFICATE----- file of your MDM server"
            ) from None
        if not isinstance(cert.public_key(), rsa.RSAPublicKey):
            raise PortalError(400, "the certificate must hold an RSA public key (the token is RSA-encrypted)")
        text = cert.public_bytes(serialization.Encoding.PEM).decode()
        with self.store.transaction() as db:
            cur = db.execute(
                "UPDATE servers SET public_key_pem = ? WHERE server_uuid = ?", (text, server_uuid)
            )
            if cur.rowcount == 0:
                raise PortalError(404, f"no MDM server {server_uuid}")
            return self._server(db, server_uuid)

    def server_token(self, server_uuid: str) -> dict[str, str]:
        """The token's JSON in clear (depsim's ``GET /token``)."""
        with self.store.read() as db:
            row = apple_store.server_credentials(db, server_uuid)
        if row is None:
            raise PortalError(404, f"no MDM server {server_uuid}")
        return {**row, "access_token_expiry": iso_from_timestamp(row["access_token_expiry"])}

    def server_token_p7m(self, server_uuid: str) -> bytes:
        """The ``…_smime.p7m`` file: the token JSON in a text/plain part, enveloped to the uploaded cert."""
        token = self.server_token(server_uuid)
        with self.store.read() as db:
            row = db.execute(
                "SELECT public_key_pem FROM servers WHERE server_uuid = ?", (server_uuid,)
            ).fetchone()
        if row is None or row[0] is None:
            raise PortalError(
                400, "upload the MDM server's public key (PEM certificate) before downloading a token"
            )
        cert = x509.load_pem_x509_certificate(row[0].encode())
        return smime_envelope(text_part(json.dumps(token, separators=(",", ":"))), cert)

    def token_filename(self, server_uuid: str) -> str:
        """``<server name>_Token_<date>_smime.p7m``, as the portal names the download."""
        name = re.sub(r"[^A-Za-z0-9._-]+", "_", self.server(server_uuid)["server_name"]) or "server"
        stamp = self.clock.now().strftime("%Y-%m-%dT%H-%M-%SZ")
        return f"{name}_Token_{stamp}_smime.p7m"

    def _server_id(self, db: Any, server_uuid: str | None) -> int | None:
        if server_uuid is None:
            return None
        if not isinstance(server_uuid, str):
            raise PortalError(400, "server_uuid must be a string")
        row = db.execute("SELECT id FROM servers WHERE server_uuid = ?", (server_uuid,)).fetchone()
        if row is None:
            raise PortalError(404, f"no MDM server {server_uuid}")
        return int(row[0])

    # -- devices -----------------------------------------------------------------------------------
    def add_devices(
        self,
        records: Sequence[Mapping[str, Any]],
        server_uuid: str | None = None,
        order_number: str | None = None,
    ) -> dict[str, Any]:
        """Devices bought by the organisation (an order), optionally assigned to a server at once.

        Serials already in the organisation are left as they are and listed in ``existing``; a serial
        released earlier comes back as a new purchase.
        """
        if order_number is not None and (not isinstance(order_number, str) or len(order_number) > MAX_FIELD):
            raise PortalError(400, "order_number must be a string")
        unique: dict[str, tuple[Any, ...]] = {}
        for record in records:
            row = _normalize(record, order_number)
            unique.setdefault(row[0], row)
        org = self.organization()
        now = self.clock.timestamp()
        stamp = iso_from_timestamp(now)
        with self.store.transaction() as db:
            server_id = self._server_id(db, server_uuid)
            known: dict[str, tuple[int, int]] = {}
            for part in apple_store.chunked(list(unique)):
                marks = ",".join("?" * len(part))
                for r in db.execute(
                    f"SELECT serial, id, released FROM devices WHERE serial IN ({marks})", part
                ):
                    known[r[0]] = (r[1], r[2])
            next_id = int(db.execute("SELECT coalesce(max(id), 0) + 1 FROM devices").fetchone()[0])
            first_event = apple_store.next_event_id(db)
            assigned_date = stamp if server_id is not None else None
            assigned_by = org["admin_id"] if server_id is not None else None
            inserts: list[tuple[Any, ...]] = []
            revivals: list[tuple[Any, ...]] = []
            events: list[tuple[int, int, str, str, None]] = []
            added: list[str] = []
            existing: list[str] = []
            for serial, (_, model, description, color, asset_tag, os_name, family, order) in unique.items():
                prior = known.get(serial)
                if prior is not None and not prior[1]:
                    existing.append(serial)
                    continue
                device_id = prior[0] if prior is not None else next_id
                if prior is None:
                    next_id += 1
                seq = None
                if server_id is not None:
                    seq = first_event + len(events)
                    events.append((server_id, device_id, "added", stamp, None))
                doc = apple_store.render_doc(
                    serial,
                    model,
                    description,
                    color,
                    asset_tag,
                    "empty",
                    None,
                    None,
                    None,
                    assigned_date,
                    assigned_by,
                )
                values = (
                    model,
                    description,
                    color,
                    asset_tag,
                    os_name,
                    family,
                    order,
                    server_id,
                    seq,
                    assigned_date,
                    assigned_by,
                    doc,
                )
                if prior is None:
                    inserts.append((device_id, serial, *values))
                else:
                    revivals.append((*values, device_id))
                added.append(serial)
            db.executemany(
                "INSERT INTO devices (id, serial, model, description, color, asset_tag, os, device_family, "
                "order_number, server_id, seq, assigned_date, assigned_by, doc) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                inserts,
            )
            db.executemany(
                "UPDATE devices SET model = ?, description = ?, color = ?, asset_tag = ?, os = ?, "
                "device_family = ?, order_number = ?, server_id = ?, seq = ?, assigned_date = ?, "
                "assigned_by = ?, doc = ?, released = 0, profile_id = NULL, profile_uuid = NULL, "
                "profile_status = 'empty', profile_assign_time = NULL, profile_push_time = NULL WHERE id = ?",
                revivals,
            )
            if events:
                apple_store.add_events(db, events, first=first_event)
        return {"added": len(added), "serial_numbers": added, "existing": existing}

    def generate(
        self, count: int, server_uuid: str | None = None, order_number: str | None = None
    ) -> dict[str, Any]:
        """``count`` new devices from the world's device generator (Faker-backed in the world)."""
        if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= MAX_GENERATE:
            raise PortalError(400, f"count must be an integer from 1 to {MAX_GENERATE}")
        return self.add_devices(self.generate_devices(count), server_uuid, order_number)

    def add_serials(
        self, serials: Sequence[str], server_uuid: str | None = None, order_number: str | None = None
    ) -> dict[str, Any]:
        """Devices known only by serial number get plausible model data."""
        for serial in serials:
            if not isinstance(serial, str) or not SERIAL_PATTERN.match(serial):
                raise PortalError(
                    400, f"not a serial number (4-32 capital letters and digits): {serial!r}"[:300]
                )
        return self.add_devices([plausible_device(s) for s in serials], server_uuid, order_number)

    def edit_device(self, serial: str, changes: Mapping[str, Any]) -> dict[str, Any]:
        """Edit ``asset_tag``, ``description`` or ``color``; the device's server sees ``modified``."""
        allowed = {"asset_tag", "description", "color"}
        if not isinstance(changes, Mapping) or not changes:
            raise PortalError(400, "send an object with asset_tag, description and/or color")
        unknown = set(changes) - allowed
        if unknown:
            raise PortalError(
                400, f"only asset_tag, description and color can be edited, not {sorted(unknown)}"
            )
        for key, value in changes.items():
            if value is not None and (not isinstance(value, str) or len(value) > MAX_FIELD):
                raise PortalError(400, f"{key} must be a string of at most {MAX_FIELD} characters")
        stamp = iso_from_timestamp(self.clock.timestamp())
        with self.store.transaction() as db:
            row = db.execute(
                "SELECT id, server_id FROM devices WHERE serial = ? AND released = 0", (serial,)
            ).fetchone()
            if row is None:
                raise PortalError(404, f"no device {serial} in the organization")
            for key, value in changes.items():
                if key == "asset_tag":
                    value = value or None
                elif value is None:
                    value = ""
                db.execute(f"UPDATE devices SET {key} = ? WHERE id = ?", (value, row["id"]))
            apple_store.refresh_docs(db, [row["id"]])
            if row["server_id"] is not None:
                apple_store.add_events(db, [(row["server_id"], row["id"], "modified", stamp, None)])
        return self.device(serial)

    def device(self, serial: str) -> dict[str, Any]:
        with self.store.read() as db:
            row = db.execute(
                _DEVICE_LIST_SQL + " WHERE d.serial = ? AND d.released = 0", (serial,)
            ).fetchone()
        if row is None:
            raise PortalError(404, f"no device {serial} in the organization")
        return _device_dict(row)

    def serials(self, server_uuid: str | None = None) -> list[str]:
        """Serial numbers in the organisation (or assigned to one server), in the order they were added."""
        with self.store.read() as db:
            if server_uuid is None:
                rows = db.execute("SELECT serial FROM devices WHERE released = 0 ORDER BY id").fetchall()
            else:
                rows = db.execute(
                    "SELECT serial FROM devices WHERE released = 0 AND server_id = ? ORDER BY id",
                    (self._server_id(db, server_uuid),),
                ).fetchall()
        return [r[0] for r in rows]

    def devices(self, server_uuid: str | None = None, limit: int = 100, offset: int = 0) -> dict[str, Any]:
        """A page of the organisation's devices (all, or one server's), oldest first."""
        where, params = " WHERE d.released = 0", []
        with self.store.read() as db:
            if server_uuid:
                where += " AND d.server_id = ?"
                params.append(self._server_id(db, server_uuid))
            total = db.execute(f"SELECT count(*) FROM devices d{where}", params).fetchone()[0]
            rows = db.execute(
                _DEVICE_LIST_SQL + where + " ORDER BY d.id LIMIT ? OFFSET ?", (*params, limit, offset)
            ).fetchall()
        return {"total": total, "limit": limit, "offset": offset, "devices": [_device_dict(r) for r in rows]}

    def _select(
        self, db: Any, serials: Iterable[str] | None, order_number: str | None
    ) -> tuple[list[Any], list[str]]:
        """Active devices named by serials or by order number, and the serials not found."""
        if serials is not None:
            wanted = list(dict.fromkeys(serials))
            if not wanted:
                raise PortalError(400, "serial_numbers is empty")
            found: dict[str, Any] = {}
            for part in apple_store.chunked(wanted):
                marks = ",".join("?" * len(part))
                for r in db.execute(
                    "SELECT id, serial, server_id, doc FROM devices "
                    f"WHERE released = 0 AND serial IN ({marks})",
                    part,
                ):
                    found[r["serial"]] = r
            return [found[s] for s in wanted if s in found], [s for s in wanted if s not in found]
        if order_number is not None:
            rows = db.execute(
                "SELECT id, serial, server_id, doc FROM devices "
                "WHERE released = 0 AND order_number = ? ORDER BY id",
                (order_number,),
            ).fetchall()
            if not rows:
                raise PortalError(404, f"no devices in order {order_number}")
            return rows, []
        raise PortalError(400, "name the devices: serial_numbers or order_number")

    def assign(
        self, server_uuid: str, serials: Iterable[str] | None = None, order_number: str | None = None
    ) -> dict[str, Any]:
        """ "Assign to Server": ``added`` for the new server, ``deleted`` for the one the device leaves."""
        org = self.organization()
        stamp = iso_from_timestamp(self.clock.timestamp())
        with self.store.transaction() as db:
            server_id = self._server_id(db, server_uuid)
            if server_id is None:
                raise PortalError(400, "server_uuid is required")
            rows, missing = self._select(db, serials, order_number)
            first = apple_store.next_event_id(db)
            events: list[tuple[int, int, str, str, str | None]] = []
            updates: list[tuple[Any, ...]] = []
            for r in rows:
                if r["server_id"] == server_id:
                    continue
                if r["server_id"] is not None:
                    events.append((r["server_id"], r["id"], "deleted", stamp, r["doc"]))
                seq = first + len(events)
                events.append((server_id, r["id"], "added", stamp, None))
                updates.append((server_id, seq, stamp, org["admin_id"], r["id"]))
            db.executemany(
                "UPDATE devices SET server_id = ?, seq = ?, assigned_date = ?, assigned_by = ?, "
                "profile_id = NULL, profile_uuid = NULL, profile_status = 'empty', "
                "profile_assign_time = NULL, profile_push_time = NULL WHERE id = ?",
                updates,
            )
            apple_store.refresh_docs(db, [u[-1] for u in updates])
            if events:
                apple_store.add_events(db, events, first=first)
        return {"assigned": len(updates), "unchanged": len(rows) - len(updates), "not_found": missing}

    def unassign(
        self,
        serials: Iterable[str] | None = None,
        order_number: str | None = None,
        server_uuid: str | None = None,
    ) -> dict[str, Any]:
        """Unassign (from ``server_uuid`` only, when given): the server sees ``deleted``."""
        stamp = iso_from_timestamp(self.clock.timestamp())
        with self.store.transaction() as db:
            only = self._server_id(db, server_uuid)
            rows, missing = self._select(db, serials, order_number)
            leaving = [
                r for r in rows if r["server_id"] is not None and (only is None or r["server_id"] == only)
            ]
            self._detach(db, leaving, stamp, release=False)
        return {"unassigned": len(leaving), "unchanged": len(rows) - len(leaving), "not_found": missing}

    def release(self, serials: Iterable[str]) -> dict[str, Any]:
        """Release devices from the organisation: gone for good; their server sees ``deleted``."""
        serials = list(serials)
        if not serials:
            return {"released": 0, "not_found": []}
        stamp = iso_from_timestamp(self.clock.timestamp())
        with self.store.transaction() as db:
            rows, missing = self._select(db, serials, None)
            self._detach(db, rows, stamp, release=True)
        return {"released": len(rows), "not_found": missing}

    def _detach(self, db: Any, rows: Sequence[Any], stamp: str, *, release: bool) -> None:
        events = [
            (r["server_id"], r["id"], "deleted", stamp, r["doc"]) for r in rows if r["server_id"] is not None
        ]
        db.executemany(
            "UPDATE devices SET released = ?, server_id = NULL, seq = NULL, assigned_date = NULL, "
            "assigned_by = NULL, profile_id = NULL, profile_uuid = NULL, profile_status = 'empty', "
            "profile_assign_time = NULL, profile_push_time = NULL WHERE id = ?",
            [(1 if release else 0, r["id"]) for r in rows],
        )
        apple_store.refresh_docs(db, [r["id"] for r in rows])
        if events:
            apple_store.add_events(db, events)


_DEVICE_LIST_SQL = (
    "SELECT d.serial, d.model, d.description, d.color, d.asset_tag, d.os, d.device_family, d.order_number, "
    "s.server_uuid, d.assigned_date, d.profile_status, d.profile_uuid FROM devices d "
    "LEFT JOIN servers s ON s.id = d.server_id"
)


def _device_dict(row: Any) -> dict[str, Any]:
    return {
        "serial_number": row["serial"],
        "model": row["model"],
        "description": row["description"],
        "color": row["color"],
        "asset_tag": row["asset_tag"],
        "os": row["os"],
        "device_family": row["device_family"],
        "order_number": row["order_number"],
        "server_uuid": row["server_uuid"],
        "device_assigned_date": row["assigned_date"],
        "profile_status": row["profile_status"],
        "profile_uuid": row["profile_uuid"],
    }
