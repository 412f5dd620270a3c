"""Shared keys and CAs for the protocol tests; made once per session because RSA key generation is slow."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from mdm.protocol import x509 as X

NOW = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)
#: The project's own sample data (``fixtures/``, README.md there says where each file's shape comes from).
FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
PAYLOADS = FIXTURES / "device-payloads"
COMMANDS_JSON = FIXTURES / "mdm" / "commands.json"


@pytest.fixture(scope="session")
def now() -> dt.datetime:
    return NOW


@pytest.fixture(scope="session")
def ec_ca() -> X.CertificateAuthority:
    return X.CertificateAuthority.create("Test EC Root", NOW, organization="mdmsim")


@pytest.fixture(scope="session")
def rsa_ca() -> X.CertificateAuthority:
    return X.CertificateAuthority.create("Test RSA Root", NOW, key=X.new_private_key("rsa"))


@pytest.fixture(scope="session")
def rsa_identity(rsa_ca):
    key = X.new_private_key("rsa")
    cert = rsa_ca.issue(key.public_key(), subject="rsa device", now=NOW, days=30)
    return cert, key


@pytest.fixture(scope="session")
def ec_identity(ec_ca):
    key = X.new_private_key("ec")
    cert = ec_ca.issue(key.public_key(), subject="ec device", now=NOW, days=30)
    return cert, key
