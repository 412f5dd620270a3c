"""The table of Apple's host names: how a Host header is read, and the world's certificate naming them."""

from __future__ import annotations

from cryptography import x509

from mdm.protocol.x509 import CertificateAuthority
from simulator.apple.hosts import APPLE_HOSTS, prefix_for_host
from simulator.tls import issue_server_pair, tls_now


def test_a_host_header_names_apples_service_with_any_port_case_or_trailing_dot() -> None:
    for header in ("mdmenrollment.apple.com", "mdmenrollment.apple.com:8080", "MDMEnrollment.Apple.com.",
                   "mdmenrollment.apple.com.:443"):
        assert prefix_for_host(header) == "/apple/dep", header
    assert prefix_for_host("api.sandbox.push.apple.com:2197") == "/apple/apns"
    for other in (None, "", "127.0.0.1:8080", "[::1]:8080", "localhost", "mdmenrollment.apple.com.evil.example",
                  "evil-mdmenrollment.apple.com", "[mdmenrollment.apple.com]"):
        assert prefix_for_host(other) is None, other


def test_the_worlds_tls_certificate_names_every_apple_host_and_keeps_its_own_name() -> None:
    ca = CertificateAuthority.create("test TLS CA", tls_now())
    cert_pem, _ = issue_server_pair(ca, "mdmsim.example", tls_now())
    cert = x509.load_pem_x509_certificate(cert_pem)
    names = set(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName))
    assert set(APPLE_HOSTS) | {"mdmsim.example", "localhost"} <= names
    assert cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value == "mdmsim.example"
    plain, _ = issue_server_pair(ca, "127.0.0.1", tls_now(), apple_hosts=False)
    assert not set(APPLE_HOSTS) & set(
        x509.load_pem_x509_certificate(plain).extensions.get_extension_for_class(x509.SubjectAlternativeName)
        .value.get_values_for_type(x509.DNSName))
