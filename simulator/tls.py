"""TLS for a served world: its server certificate, and the trust a device puts in one.

The real DEP, activation and MDM services are reached over HTTPS only, and a device checks the MDM
server's certificate against the ``anchor_certs`` of its DEP profile (the cloud configuration's
``AnchorCertificates``) instead of its system store. ``mdmsim serve --tls`` reproduces both: a
per-world TLS CA (kept in the world's settings, like Apple's device CA) issues the server
certificate, the controller puts that CA into every profile it defines, and the device drivers
verify against exactly the anchors a request carries.
"""

from __future__ import annotations

import base64
import functools
import ipaddress
import os
import ssl
import tempfile
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from mdm.protocol.x509 import CertificateAuthority, cert_to_pem, key_to_pem, new_private_key

from .apple.hosts import APPLE_HOSTS

__all__ = [
    "TLSError",
    "issue_server_pair",
    "write_pair",
    "load_pair",
    "server_context",
    "anchor_context",
    "anchor_b64",
    "top_certificate_pem",
    "tls_now",
]


class TLSError(ValueError):
    """A certificate/key pair that cannot serve TLS (unreadable, not PEM, or not a pair)."""


def tls_now() -> datetime:
    """The issue time of TLS certificates: the *wall* clock, an hour back.

    Unlike every other certificate of a world (DESIGN rule 4: world time), TLS certificates are
    checked by clients outside the world (curl, browsers, ``ssl``) against the real clock; a world
    started in 2016 or moved ahead a year must still serve a certificate they accept."""
    return datetime.now(UTC) - timedelta(hours=1)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def issue_server_pair(
    ca: CertificateAuthority, host: str, now: datetime, days: float = 397, *, apple_hosts: bool = True
) -> tuple[bytes, bytes]:
    """A server certificate for ``host`` plus ``localhost``/``127.0.0.1``/``::1`` (so the same world
    is reachable by its bind address and by the usual loopback names), and its key, as PEM.

    With ``apple_hosts`` the certificate also names Apple's hosts the world answers for
    (:data:`simulator.apple.hosts.APPLE_HOSTS`: ``mdmenrollment.apple.com``, ``api.push.apple.com``…),
    so a client that hard-codes Apple's URL needs only a hosts-file line and the world's CA.

    397 days: the longest lifetime Apple's clients accept for a TLS server certificate."""
    bind = host.strip("[]")
    hosts = {bind, "localhost", "127.0.0.1", "::1"} - {"", "0.0.0.0", "::"}
    if apple_hosts:
        hosts |= set(APPLE_HOSTS)
    ips = sorted(h for h in hosts if _is_ip(h))
    dns = sorted(h for h in hosts if not _is_ip(h))
    subject = bind if bind in dns else "localhost"  # the name the world is served under, not Apple's
    key = new_private_key("ec")
    cert = ca.issue(key.public_key(), subject=subject, now=now, days=days,
                    client_auth=False, server_auth=True, san_dns=dns, san_ip=ips)  # fmt: skip
    return cert_to_pem(cert), key_to_pem(key)


def write_pair(cert_pem: bytes, key_pem: bytes, directory: Path | None = None) -> tuple[Path, Path]:
    """Write the pair for a server that takes file names (gunicorn, ``ssl.load_cert_chain``).

    Into ``directory`` (the world's data dir) or a fresh private temporary one (mode 0700); the key
    file is created 0600 before a byte of the key is written, so no other user can ever read it."""
    target = Path(tempfile.mkdtemp(prefix="mdmsim-tls-")) if directory is None else directory
    target.mkdir(parents=True, exist_ok=True, mode=0o700)
    cert_path, key_path = target / "tls-server.pem", target / "tls-server.key"
    for path, data in ((cert_path, cert_pem), (key_path, key_pem)):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(path, 0o600)
    return cert_path, key_path


def load_pair(cert_file: Path, key_file: Path) -> bytes:
    """Check a given certificate/key pair loads and matches; returns the certificate file's PEM."""
    try:
        cert_pem = Path(cert_file).read_bytes()
        key_pem = Path(key_file).read_bytes()
    except OSError as exc:
        raise TLSError(f"cannot read {exc.filename}: {exc.strerror}") from None
    try:
        certs = x509.load_pem_x509_certificates(cert_pem)
    except ValueError:
        raise TLSError(f"{cert_file} holds no PEM certificate") from None
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError):
        raise TLSError(f"{key_file} holds no unencrypted PEM private key") from None
    if certs[0].public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo) != \
            key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo):
        raise TLSError(f"the key in {key_file} does not match the certificate in {cert_file}")
    return cert_pem


def top_certificate_pem(chain_pem: bytes) -> bytes:
    """The last certificate of a PEM chain: what devices are told to trust for a given pair (the
    issuing CA when the file carries the chain, the certificate itself when it is self-signed)."""
    return cert_to_pem(x509.load_pem_x509_certificates(chain_pem)[-1])


def server_context(cert_file: Path, key_file: Path) -> ssl.SSLContext:
    """The server side of ``World.serve(tls=True)`` (werkzeug's ``ssl_context``)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(cert_file), str(key_file))
    return context


def anchor_b64(pem: bytes | str) -> str:
    """A PEM certificate as base64 DER, the form of a DEP profile's ``anchor_certs``."""
    cert = x509.load_pem_x509_certificate(pem.encode() if isinstance(pem, str) else pem)
    return base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode("ascii")


def _as_pem(anchor: str) -> str:
    if "-----BEGIN" in anchor:
        return anchor
    cert = x509.load_der_x509_certificate(base64.b64decode(anchor))
    return cert_to_pem(cert).decode("ascii")


@functools.lru_cache(maxsize=64)
def anchor_context(anchors: tuple[str, ...]) -> ssl.SSLContext:
    """A client context that trusts exactly ``anchors`` (PEM or base64 DER), never the system store.

    Cached per anchor set: a fleet of devices with one profile shares one context (building one
    parses every certificate). ``VERIFY_X509_PARTIAL_CHAIN`` lets an intermediate be an anchor, as
    Apple's anchor certificates may be."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    pems = []
    for anchor in anchors:
        try:
            pems.append(_as_pem(anchor))
        except ValueError:
            continue  # an unreadable anchor trusts nothing, as on a device
    if pems:
        context.load_verify_locations(cadata="\n".join(pems))
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    return context


def pems(anchors: Iterable[str]) -> str:
    """Anchors (PEM or base64 DER) as one PEM bundle, e.g. for ``verify=`` of an HTTP client."""
    return "\n".join(_as_pem(a) for a in anchors)
