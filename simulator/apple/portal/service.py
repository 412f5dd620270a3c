"""The rules of Apple's business portal: the organisation, its devices and orders, MDM servers and tokens.

Every change a server should hear about becomes an event in Apple's store (``added`` for the server a
device is assigned to, ``deleted`` for the one it left, ``modified`` for an edit), stamped with world
time; the DEP web service's sync reports them. The device writes themselves, and the events they
append, are :mod:`simulator.apple.devices`'s, shared with DEP and activation; the portal's own tables
are :mod:`.store`'s. Errors are :class:`PortalError` with a message a person can act on; the HTTP
layer renders them as ``{"error": ...}``.

With a ``seed``, the organisation id, each server's UUID and OAuth keys, and the serials of the
default device generator are derived from labels naming the server (``portal:server:<name>:…``), so
two ``mdmsim serve --seed 3`` starts hand out the same server token.

Server tokens are renewed as Apple Business Manager renews them ("Link to an external device
management service", https://support.apple.com/guide/apple-business-manager/axm1c1be359d/web): a
token expires one year after it is generated, and generating a new one for the same MDM server
replaces the active token, which the MDM server must then install. :meth:`PortalService.renew_server_token`
makes the new token (new access token and secret, a year from now; the consumer key stays, it names
the server) and the previous one stops working at once: ``GET /session`` with it answers 401, and the
sessions it opened end with it.
"""

from __future__ import annotations

import json
import re
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
from mdm.protocol.randomness import Randomness

from .. import devices
from ..devices import DeviceRecord
from . import store as portal_store
from .api_accounts import APIAccounts
from .catalog import (
    FAMILIES,
    MAX_FIELD,
    OS_NAMES,
    SERIAL_ALPHABET,
    SERIAL_PATTERN,
    check_serial,
    normalize_device,
    plausible_device,
)
from .errors import PortalError

__all__ = ["PortalError", "PortalService", "SERIAL_PATTERN", "plausible_device", "FAMILIES", "OS_NAMES", "BETA_OS"]

TOKEN_LIFETIME = timedelta(days=365)
#: The platforms of a beta program (Apple's SeedBuildToken ``os``).
BETA_OS = ("homePodOS", "iOS", "OSX", "tvOS", "visionOS", "watchOS")
_ISO_DATETIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})")
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
MAX_GENERATE = 100_000
SERIAL_LENGTH = 12
_KEY_PREFIXES = (
    ("consumer_key", "CK_"),
    ("consumer_secret", "CS_"),
    ("access_token", "AT_"),
    ("access_secret", "AS_"),
)


class PortalService:
    """Apple Business Manager for one organisation: what an admin does by hand, as an API."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        generate_devices: Callable[[int], list[dict[str, Any]]] | None = None,
        *,
        seed: int | None = None,
        describe_serial: Callable[[str], dict[str, Any]] | None = None,
        settle: Callable[[], None] | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.random = Randomness(seed)
        self.generate_devices = generate_devices or self._random_devices
        # A device known only by its serial: the world gives it the identity its maker gave it (so DEP's
        # record and the powered-on device agree); without a world, plausible model data.
        self.describe_serial = describe_serial or plausible_device
        self.api_accounts = APIAccounts(store, clock, self.random)
        # Work other parties scheduled on the world clock and that is due now (the Business API's device
        # activities), run before the portal reads or moves devices, so it shows what the world is.
        self.settle: Callable[[], None] = settle or (lambda: None)

    def _random_devices(self, count: int) -> list[dict[str, Any]]:
        """Plausible devices with Apple-style serials, for a portal without the world's Faker generator.

        Seeded, the serials of one call derive from the organisation's device count when it was made."""
        with self.store.read() as db:
            start = devices.last_device_id(db)
        rng = self.random.stream(f"portal:generated-devices:{start}")
        return [
            plausible_device("".join(rng.choice(SERIAL_ALPHABET) for _ in range(SERIAL_LENGTH))) for _ in range(count)
        ]

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
        given = {
            "name": name,
            "email": email,
            "phone": phone,
            "address": address,
            "org_id": org_id,
            "org_type": org_type,
            "org_version": org_version,
            "admin_id": admin_id,
        }
        with self.store.transaction() as db:
            if portal_store.organization(db) is None:
                defaults = {
                    "name": "Example Organization",
                    "email": f"it@{domain}.example.com",
                    "phone": "+1 408 555 0100",
                    "address": "1 Infinite Loop, Cupertino, CA 95014, US",
                    "org_id": str(self.random.below(9_000_000, "portal:organization:org_id") + 1_000_000),
                    "org_type": "org",
                    "org_version": "v1",
                    "admin_id": f"admin@{domain}.example.com",
                }
                portal_store.insert_organization(db, {k: v or defaults[k] for k, v in given.items()})
            else:
                portal_store.update_organization(db, {k: v for k, v in given.items() if v is not None})
            return dict(portal_store.organization(db) or {})

    def organization(self) -> dict[str, Any]:
        with self.store.read() as db:
            org = portal_store.organization(db)
        if org is None:
            return self.ensure_organization()
        return org

    def set_terms_required(self, required: bool) -> dict[str, bool]:
        """New terms the admin has not accepted: while set, the DEP service answers 403 T_C_NOT_SIGNED."""
        self.organization()
        with self.store.transaction() as db:
            portal_store.set_terms_required(db, required)
        return {"require_acceptance": bool(required)}

    def set_organization_settings(self, changes: Mapping[str, Any]) -> dict[str, Any]:
        """Turn the organisation's switches: ``apple_seed_for_it`` (off: the DEP service answers
        ``APPLE_SEED_FOR_IT_TURNED_OFF`` for beta tokens) and ``account_driven_enrollment`` (off:
        ``ORG_NOT_SUPPORTED`` for the service discovery profile)."""
        if not isinstance(changes, Mapping) or not changes:
            raise PortalError(400, f"send an object with one or more of {', '.join(portal_store.ORGANIZATION_FLAGS)}")
        unknown = set(changes) - set(portal_store.ORGANIZATION_FLAGS)
        if unknown:
            raise PortalError(400, f"only {', '.join(portal_store.ORGANIZATION_FLAGS)} can be set, not {sorted(unknown)}")
        for key, value in changes.items():
            if not isinstance(value, bool):
                raise PortalError(400, f"{key} must be true or false")
        self.organization()
        with self.store.transaction() as db:
            for key, value in changes.items():
                portal_store.set_organization_flag(db, key, value)
            return dict(portal_store.organization(db) or {})

    # -- beta programs (AppleSeed for IT) ----------------------------------------------------------
    def beta_programs(self) -> list[dict[str, Any]]:
        with self.store.read() as db:
            return portal_store.beta_programs(db)

    def add_beta_program(self, title: Any, os_name: Any) -> dict[str, Any]:
        """A beta program the organisation's devices may enroll in (``iOS 26 Beta``); its token is what
        ``GET /os-beta-enrollment/tokens`` hands MDM servers."""
        if not isinstance(title, str) or not title.strip() or len(title) > MAX_FIELD:
            raise PortalError(400, f"title must be a non-empty string of at most {MAX_FIELD} characters")
        if os_name not in BETA_OS:
            raise PortalError(400, f"os must be one of {', '.join(BETA_OS)}")
        self.organization()
        with self.store.transaction() as db:
            number = len(portal_store.beta_programs(db)) + 1
            token = self.random.hex(40, f"portal:beta-program:{number}:{title}").upper()
            portal_store.insert_beta_program(db, title.strip(), os_name, token, self.clock.timestamp())
        return {"title": title.strip(), "os": os_name, "token": token}

    def remove_beta_program(self, token: str) -> dict[str, Any]:
        with self.store.transaction() as db:
            if not portal_store.delete_beta_program(db, token):
                raise PortalError(404, f"no beta program with token {token[:80]}")
        return {"removed": token}

    # -- MDM servers -------------------------------------------------------------------------------
    def create_server(self, server_name: str, credentials: Mapping[str, str] | None = None) -> dict[str, Any]:
        """Add an MDM server; with ``credentials`` (depsim's well-known keys) an existing one is returned."""
        if not isinstance(server_name, str) or not server_name.strip() or len(server_name) > 200:
            raise PortalError(400, "server_name must be a non-empty string of at most 200 characters")
        name = server_name.strip()
        self.organization()
        keys = dict(credentials or {})
        for key, prefix in _KEY_PREFIXES:
            value = keys.get(key)
            if value is None:
                keys[key] = prefix + self.random.hex(64, f"portal:server:{name}:{key}")
            elif not isinstance(value, str) or not value:
                raise PortalError(400, f"{key} must be a non-empty string")
        now = self.clock.timestamp()
        with self.store.transaction() as db:
            if credentials:
                existing = portal_store.server_by_keys(db, keys["consumer_key"], keys["access_token"])
                if existing is not None:
                    return self._server(db, existing, with_credentials=True)
            if portal_store.server_name_taken(db, name):  # ABM names MDM servers uniquely: the name is how admins pick one
                raise PortalError(400, f"an MDM server named {name!r} already exists")
            server_uuid = self.random.uuid(f"portal:server:{name}:uuid").upper()
            portal_store.insert_server(db, server_uuid, name, keys, now, now + TOKEN_LIFETIME.total_seconds())
            return self._server(db, server_uuid, with_credentials=True)

    def _server(self, db: Any, server_uuid: str, *, with_credentials: bool = False) -> dict[str, Any]:
        row = portal_store.server(db, server_uuid)
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
            for key, _ in _KEY_PREFIXES:
                out[key] = row[key]
        return out

    def server(self, server_uuid: str) -> dict[str, Any]:
        with self.store.read() as db:
            return self._server(db, server_uuid)

    def servers(self) -> list[dict[str, Any]]:
        """``[{server_uuid, server_name, device_count}]`` in creation order."""
        with self.store.read() as db:
            return portal_store.servers(db)

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
            if not portal_store.set_public_key(db, server_uuid, text):
                raise PortalError(404, f"no MDM server {server_uuid}")
            return self._server(db, server_uuid)

    def server_token(self, server_uuid: str) -> dict[str, str]:
        """The token's JSON in clear (depsim's ``GET /token``)."""
        with self.store.read() as db:
            row = portal_store.server_credentials(db, server_uuid)
        if row is None:
            raise PortalError(404, f"no MDM server {server_uuid}")
        return {**row, "access_token_expiry": iso_from_timestamp(row["access_token_expiry"])}

    def server_token_p7m(self, server_uuid: str) -> bytes:
        """The ``…_smime.p7m`` file: the token JSON in a text/plain part, enveloped to the uploaded cert."""
        token = self.server_token(server_uuid)
        with self.store.read() as db:
            pem = portal_store.public_key_pem(db, server_uuid)
        if pem is None:
            raise PortalError(
                400, "upload the MDM server's public key (PEM certificate) before downloading a token"
            )
        cert = x509.load_pem_x509_certificate(pem.encode())
        return smime_envelope(text_part(json.dumps(token, separators=(",", ":"))), cert)

    def renew_server_token(self, server_uuid: str) -> dict[str, str]:
        """Generate a new token for the server (the portal's "Download Token"): new access keys, valid
        one year from now. The previous token stops working at once and the DEP sessions it opened
        end (see the module docstring for Apple's page). Returns the new token's JSON in clear."""
        now = self.clock.timestamp()
        with self.store.transaction() as db:
            row = portal_store.server(db, server_uuid)
            if row is None:
                raise PortalError(404, f"no MDM server {server_uuid}")
            generation = row["token_generation"] + 1
            label = f"portal:server:{row['server_name']}:token:{generation}"
            access_token = "AT_" + self.random.hex(64, label + ":access_token")
            access_secret = "AS_" + self.random.hex(64, label + ":access_secret")
            portal_store.renew_token(
                db, server_uuid, access_token, access_secret, now, now + TOKEN_LIFETIME.total_seconds()
            )
        return self.server_token(server_uuid)

    def renew_server_token_p7m(self, server_uuid: str) -> bytes:
        """:meth:`renew_server_token`, downloaded as the ``.p7m`` enveloped to the server's certificate
        (which must have been uploaded first: nothing is renewed without one)."""
        with self.store.read() as db:
            if portal_store.server_id(db, server_uuid) is None:
                raise PortalError(404, f"no MDM server {server_uuid}")
            pem = portal_store.public_key_pem(db, server_uuid)
        if pem is None:
            raise PortalError(400, "upload the MDM server's public key (PEM certificate) before downloading a token")
        self.renew_server_token(server_uuid)
        return self.server_token_p7m(server_uuid)

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
        found = portal_store.server_id(db, server_uuid)
        if found is None:
            raise PortalError(404, f"no MDM server {server_uuid}")
        return found

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
        unique: dict[str, DeviceRecord] = {}
        for record in records:
            row = normalize_device(record, order_number)
            unique.setdefault(row.serial, row)
        org = self.organization()
        stamp = iso_from_timestamp(self.clock.timestamp())
        with self.store.transaction() as db:
            server_id = self._server_id(db, server_uuid)
            known = devices.serial_states(db, list(unique))
            purchases: list[tuple[int | None, DeviceRecord]] = []
            existing: list[str] = []
            for serial, record in unique.items():
                prior = known.get(serial)
                if prior is not None and not prior[1]:
                    existing.append(serial)
                else:
                    purchases.append((prior[0] if prior is not None else None, record))
            devices.add_devices(db, purchases, server_id=server_id, stamp=stamp, assigned_by=org["admin_id"])
        added = [record.serial for _, record in purchases]
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
            check_serial(serial)
        return self.add_devices([self.describe_serial(s) for s in serials], server_uuid, order_number)

    def edit_device(self, serial: str, changes: Mapping[str, Any]) -> dict[str, Any]:
        """Edit ``asset_tag``, ``description`` or ``color``; the device's server sees ``modified``."""
        if not isinstance(changes, Mapping) or not changes:
            raise PortalError(400, "send an object with asset_tag, description and/or color")
        unknown = set(changes) - devices.EDITABLE_FIELDS
        if unknown:
            raise PortalError(
                400, f"only asset_tag, description and color can be edited, not {sorted(unknown)}"
            )
        for key, value in changes.items():
            if value is not None and (not isinstance(value, str) or len(value) > MAX_FIELD):
                raise PortalError(400, f"{key} must be a string of at most {MAX_FIELD} characters")
        self.settle()
        stamp = iso_from_timestamp(self.clock.timestamp())
        with self.store.transaction() as db:
            row = devices.active_device(db, serial)
            if row is None:
                raise PortalError(404, f"no device {serial} in the organization")
            devices.edit_device(db, row, changes, stamp)
        return self.device(serial)

    def device(self, serial: str) -> dict[str, Any]:
        self.settle()
        with self.store.read() as db:
            row = portal_store.device(db, serial)
        if row is None:
            raise PortalError(404, f"no device {serial} in the organization")
        return _device_dict(row)

    def serials(self, server_uuid: str | None = None) -> list[str]:
        """Serial numbers in the organisation (or assigned to one server), in the order they were added."""
        self.settle()
        with self.store.read() as db:
            return portal_store.serials(db, self._server_id(db, server_uuid))

    def devices(self, server_uuid: str | None = None, limit: int = 100, offset: int = 0) -> dict[str, Any]:
        """A page of the organisation's devices (all, or one server's), oldest first."""
        self.settle()
        with self.store.read() as db:
            server = self._server_id(db, server_uuid) if server_uuid else None
            total = portal_store.device_count(db, server)
            rows = portal_store.device_page(db, server, limit, offset)
        return {"total": total, "limit": limit, "offset": offset, "devices": [_device_dict(r) for r in rows]}

    def _select(
        self, db: Any, serials: Iterable[str] | None, order_number: str | None
    ) -> tuple[list[Any], list[str]]:
        """Active devices named by serials or by order number, and the serials not found."""
        if serials is not None:
            wanted = list(dict.fromkeys(serials))
            if not wanted:
                raise PortalError(400, "serial_numbers is empty")
            found = devices.devices_by_serial(db, wanted, active_only=True)
            return [found[s] for s in wanted if s in found], [s for s in wanted if s not in found]
        if order_number is not None:
            rows = devices.active_devices_in_order(db, order_number)
            if not rows:
                raise PortalError(404, f"no devices in order {order_number}")
            return rows, []
        raise PortalError(400, "name the devices: serial_numbers or order_number")

    def assign(
        self,
        server_uuid: str,
        serials: Iterable[str] | None = None,
        order_number: str | None = None,
        mdm_migration_deadline: str | None = None,
    ) -> dict[str, Any]:
        """ "Assign to Server": ``added`` for the new server, ``deleted`` for the one the device leaves.

        ``mdm_migration_deadline`` (ISO 8601): when devices moving from another server must have
        migrated; DEP reports it from protocol version 8 on."""
        deadline = _deadline(mdm_migration_deadline)
        self.settle()
        org = self.organization()
        stamp = iso_from_timestamp(self.clock.timestamp())
        with self.store.transaction() as db:
            server_id = self._server_id(db, server_uuid)
            if server_id is None:
                raise PortalError(400, "server_uuid is required")
            rows, missing = self._select(db, serials, order_number)
            moving = [r for r in rows if r["server_id"] != server_id]
            devices.move_to_server(db, moving, server_id, stamp, org["admin_id"], deadline)
        return {"assigned": len(moving), "unchanged": len(rows) - len(moving), "not_found": missing}

    def set_migration_deadline(self, serials: Iterable[str], mdm_migration_deadline: Any) -> dict[str, Any]:
        """Set (or with ``None`` clear) the MDM migration deadline of devices on a server; each server
        hears ``modified``. Devices on no server are listed in ``unassigned``."""
        deadline = _deadline(mdm_migration_deadline)
        self.settle()
        stamp = iso_from_timestamp(self.clock.timestamp())
        with self.store.transaction() as db:
            rows, missing = self._select(db, serials, None)
            devices.set_migration_deadline(db, rows, deadline, stamp)
        unassigned = [r["serial"] for r in rows if r["server_id"] is None]
        return {"updated": len(rows) - len(unassigned), "unassigned": unassigned, "not_found": missing,
                "mdm_migration_deadline": deadline}  # fmt: skip

    def replace_device(
        self, serial: str, replacement: Mapping[str, Any] | None = None, replacement_date: Any = None
    ) -> dict[str, Any]:
        """AppleCare replaced a device: ``replacement`` (an order line; a new device from the world's
        generator when omitted) joins the organisation on the original's server, marked as a replacement
        (``is_replacement_device``, ``GET /device/replacementDetails``), and the original leaves the
        organisation (its server hears ``deleted`` with ``released_by_replacement``).
        ``replacement_date``: the day (``YYYY-MM-DD``), today in world time when omitted."""
        if replacement is None:
            replacement = self.generate_devices(1)[0]
        record = normalize_device(replacement, None)
        if record.serial == serial:
            raise PortalError(400, "a device cannot replace itself")
        if replacement_date is None:
            replacement_date = self.clock.now().strftime("%Y-%m-%d")
        if not isinstance(replacement_date, str) or not _ISO_DATE.fullmatch(replacement_date):
            raise PortalError(400, "replacement_date must be a day, YYYY-MM-DD")
        self.settle()
        org = self.organization()
        stamp = iso_from_timestamp(self.clock.timestamp())
        with self.store.transaction() as db:
            original = devices.active_device(db, serial)
            if original is None:
                raise PortalError(404, f"no device {serial} in the organization")
            known = devices.serial_states(db, [record.serial]).get(record.serial)
            if known is not None and not known[1]:
                raise PortalError(400, f"{record.serial} is already a device of the organization")
            devices.replace_device(
                db, original, record, known[0] if known is not None else None,
                stamp=stamp, replacement_date=replacement_date, assigned_by=org["admin_id"],
            )  # fmt: skip
        return {"original": serial, "replacement": self.device(record.serial), "replacement_date": replacement_date}

    def unassign(
        self,
        serials: Iterable[str] | None = None,
        order_number: str | None = None,
        server_uuid: str | None = None,
    ) -> dict[str, Any]:
        """Unassign (from ``server_uuid`` only, when given): the server sees ``deleted``."""
        self.settle()
        stamp = iso_from_timestamp(self.clock.timestamp())
        with self.store.transaction() as db:
            only = self._server_id(db, server_uuid)
            rows, missing = self._select(db, serials, order_number)
            leaving = [
                r for r in rows if r["server_id"] is not None and (only is None or r["server_id"] == only)
            ]
            devices.detach(db, leaving, stamp, release=False)
        return {"unassigned": len(leaving), "unchanged": len(rows) - len(leaving), "not_found": missing}

    def release(self, serials: Iterable[str]) -> dict[str, Any]:
        """Release devices from the organisation: gone for good; their server sees ``deleted``."""
        serials = list(serials)
        if not serials:
            return {"released": 0, "not_found": []}
        self.settle()
        stamp = iso_from_timestamp(self.clock.timestamp())
        with self.store.transaction() as db:
            rows, missing = self._select(db, serials, None)
            devices.detach(db, rows, stamp, release=True)
        return {"released": len(rows), "not_found": missing}


def _deadline(value: Any) -> str | None:
    """An MDM migration deadline as stored: ISO 8601 date-time with its zone, or None."""
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not _ISO_DATETIME.fullmatch(value):
        raise PortalError(400, "mdm_migration_deadline must be an ISO 8601 date-time, e.g. 2026-09-30T12:00:00Z")
    return value


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
        "mdm_migration_deadline": row["mdm_migration_deadline"],
        "replaces_serial_number": row["replaces_serial"],
    }
