from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from mdm.protocol import cms, mobileconfig
from mdm.protocol import x509 as X
from mdm.protocol.mobileconfig import (
    GenericPayload,
    MDMPayload,
    PKCS12Payload,
    Profile,
    RootPayload,
    SCEPPayload,
)
from mdm.protocol.plist import PlistError, loads

NOW = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)
#: A sample enrollment profile in the shape NanoMDM/MicroMDM serve (fixtures/device-payloads/README.md).
ENROLL = Path(__file__).resolve().parents[2] / "fixtures" / "device-payloads" / "enroll.mobileconfig"


def test_parses_sample_enroll_profile():
    parsed = mobileconfig.parse(ENROLL.read_bytes())
    assert not parsed.signed and parsed.signer is None and not parsed.verified
    p = parsed.profile
    assert p.payload_identifier == "org.example.mdm.enrollment"
    assert [q.payload_type for q in p.payloads] == ["com.apple.security.scep", "com.apple.mdm"]
    mdm = p.payload_of(MDMPayload)
    scep = p.payload_of(SCEPPayload)
    assert mdm is not None and scep is not None
    assert mdm.access_rights == 8191 and mdm.sign_message is True and mdm.check_out_when_removed is True
    assert mdm.server_url == "https://mdm.example.org/mdm"
    assert "com.apple.mdm.bootstraptoken" in (mdm.server_capabilities or [])
    assert mdm.topic.startswith("com.apple.mgmt.External.")
    assert p.by_uuid(mdm.identity_certificate_uuid) is scep
    assert scep.url == "https://mdm.example.org/scep"
    assert (scep.key_type, scep.key_usage, scep.keysize, scep.challenge) == (
        "RSA",
        5,
        2048,
        "SCEP-CHALLENGE-HERE",
    )
    assert scep.subject == [[["O", "Example Org"]], [["CN", "MDM Identity"]]]
    # rebuilding gives back the same dictionary
    assert loads(mobileconfig.build(p)) == parsed.data


def _profile(ca: X.CertificateAuthority) -> Profile:
    key = X.new_private_key("rsa")
    cert = ca.issue(key.public_key(), subject="device identity", now=NOW)
    identity = PKCS12Payload(
        payload_identifier="com.example.identity",
        payload_content=mobileconfig.pkcs12_identity(cert, key, "secret", "identity"),
        password="secret",
    )
    return Profile(
        payload_identifier="com.example.enroll",
        payload_display_name="Enrollment",
        payload_organization="Example",
        payload_removal_disallowed=True,
        payloads=[
            RootPayload.for_certificate(ca.certificate, payload_identifier="com.example.root"),
            identity,
            MDMPayload(
                payload_identifier="com.example.mdm",
                identity_certificate_uuid=identity.payload_uuid,
                topic="com.apple.mgmt.External.abc",
                server_url="https://mdm.example.org/mdm/connect",
                check_in_url="https://mdm.example.org/mdm/checkin",
                sign_message=True,
                access_rights=8191,
                check_out_when_removed=True,
                server_capabilities=["com.apple.mdm.per-user-connections"],
            ),
        ],
    )


def test_build_sign_parse_round_trip(ec_ca):
    profile = _profile(ec_ca)
    xml = mobileconfig.build(profile)
    d = loads(xml)
    assert d["PayloadType"] == "Configuration"
    assert [p["PayloadType"] for p in d["PayloadContent"]] == [
        "com.apple.security.root",
        "com.apple.security.pkcs12",
        "com.apple.mdm",
    ]
    assert d["PayloadContent"][2]["CheckInURL"] == "https://mdm.example.org/mdm/checkin"
    signed = mobileconfig.sign(xml, ec_ca.certificate, ec_ca.key)
    parsed = mobileconfig.parse(signed, trust_roots=[ec_ca.certificate], now=NOW)
    assert parsed.signed and parsed.verified and parsed.signer == ec_ca.certificate
    assert parsed.profile.payloads == profile.payloads
    identity = parsed.profile.payload_of(PKCS12Payload)
    cert, key = identity.load()
    assert cert.public_key().public_numbers() == key.public_key().public_numbers()
    root = parsed.profile.payload_of(RootPayload)
    assert root.certificate() == ec_ca.certificate
    # unverified read of a signed profile still reports the claimed signer
    loose = mobileconfig.parse(signed)
    assert loose.signed and not loose.verified and loose.signer == ec_ca.certificate


def test_signed_profile_with_wrong_root_or_unsigned_with_roots_refused(ec_ca, rsa_ca):
    xml = mobileconfig.build(_profile(ec_ca))
    signed = mobileconfig.sign(xml, ec_ca.certificate, ec_ca.key)
    with pytest.raises(cms.CMSError):
        mobileconfig.parse(signed, trust_roots=[rsa_ca.certificate])
    with pytest.raises(cms.CMSError, match="not signed"):
        mobileconfig.parse(xml, trust_roots=[ec_ca.certificate])


def test_unknown_payloads_kept_and_rebuilt():
    d = {
        "PayloadContent": [
            {
                "PayloadType": "com.apple.wifi.managed",
                "PayloadIdentifier": "w",
                "PayloadUUID": "U1",
                "PayloadVersion": 1,
                "SSID_STR": "corp",
            }
        ],
        "PayloadIdentifier": "p",
        "PayloadType": "Configuration",
        "PayloadUUID": "U0",
        "PayloadVersion": 1,
    }
    from mdm.protocol.plist import dumps

    parsed = mobileconfig.parse(dumps(d))
    (wifi,) = parsed.payloads
    assert isinstance(wifi, GenericPayload) and wifi.payload_type == "com.apple.wifi.managed"
    assert loads(mobileconfig.build(parsed.profile)) == d


@pytest.mark.parametrize(
    "mutate, reason",
    [
        (lambda d: d.update(PayloadType="Other"), "PayloadType must be Configuration"),
        (lambda d: d.update(PayloadContent="x"), "PayloadContent must be an array"),
        (lambda d: d["PayloadContent"][1].update(AccessRights=9000), "AccessRights"),
        (lambda d: d["PayloadContent"][1].update(SignMessage=1), "SignMessage must be boolean"),
        (lambda d: d["PayloadContent"][1].pop("ServerURL"), "missing ServerURL"),
        (lambda d: d["PayloadContent"][0].update(PayloadContent=[]), "SCEP PayloadContent"),
    ],
)
def test_invalid_profiles_rejected(mutate, reason):
    from mdm.protocol.plist import dumps

    d = loads(ENROLL.read_bytes())
    mutate(d)
    with pytest.raises(PlistError, match=reason):
        mobileconfig.parse(dumps(d))


def test_pkcs12_wrong_password(rsa_identity):
    cert, key = rsa_identity
    p12 = mobileconfig.pkcs12_identity(cert, key, "right", "id")
    assert mobileconfig.load_pkcs12(p12, "right")[0] == cert
    with pytest.raises(ValueError):
        mobileconfig.load_pkcs12(p12, "wrong")
    assert mobileconfig.load_pkcs12(mobileconfig.pkcs12_identity(cert, key, "", None), "")[0] == cert
