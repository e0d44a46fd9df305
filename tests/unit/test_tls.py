"""ioc/tls.py: a local CA and the certificates it issues verify, say what was asked, and are made once."""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import DNSName, IPAddress
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from ioc.errors import UserError
from ioc.tls import CertPair, issue_client_cert, issue_device_cert, issue_server_cert, make_ca


def load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def ca(tmp_path: Path) -> CertPair:
    return make_ca(tmp_path / "ca")


def test_the_ca_signs_certificates_for_ten_years(ca: CertPair) -> None:
    cert = load(ca.cert)
    assert ca == CertPair(ca.cert.parent / "ca.crt", ca.cert.parent / "ca.key")
    assert cert.issuer == cert.subject
    cert.verify_directly_issued_by(cert)
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical
    assert usage.value.key_cert_sign
    assert not usage.value.digital_signature
    years = (cert.not_valid_after_utc - cert.not_valid_before_utc).days / 365
    assert 9.9 < years < 10.1
    key = cert.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    assert key.curve.name == "secp256r1"


def test_server_certificate_verifies_for_its_names_and_addresses(ca: CertPair, tmp_path: Path) -> None:
    server = issue_server_cert(ca, tmp_path / "server", ["localhost", "broker.mekong.example"], ["127.0.0.1", "::1"])
    cert = load(server.cert)
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(DNSName) == ["localhost", "broker.mekong.example"]
    assert sans.get_values_for_type(IPAddress) == [ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")]
    assert list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.SERVER_AUTH
    ]
    store = Store([load(ca.cert)])
    for name in (DNSName("localhost"), DNSName("broker.mekong.example"), IPAddress(ipaddress.ip_address("::1"))):
        chain = PolicyBuilder().store(store).build_server_verifier(name).verify(cert, [])
        assert chain[-1] == load(ca.cert)
    with pytest.raises(VerificationError):
        PolicyBuilder().store(store).build_server_verifier(DNSName("other.example")).verify(cert, [])


def test_python_ssl_loads_the_files_as_client_and_server_do(ca: CertPair, tmp_path: Path) -> None:
    server = issue_server_cert(ca, tmp_path / "server")
    device = issue_client_cert(ca, tmp_path / "devices", "bt-sal-1")
    as_server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(ca.cert))
    as_server.load_cert_chain(server.cert, server.key)  # raises if the key is not the certificate's
    as_client = ssl.create_default_context(cafile=str(ca.cert))
    as_client.load_cert_chain(device.cert, device.key)
    assert [c["subject"] for c in as_client.get_ca_certs()] == [((("commonName", "Mekong IOC local CA"),),)]


def test_client_certificate_names_the_device_for_two_years(ca: CertPair, tmp_path: Path) -> None:
    device = issue_client_cert(ca, tmp_path / "devices", "bt-sal-1")
    assert device == CertPair(tmp_path / "devices" / "bt-sal-1.crt", tmp_path / "devices" / "bt-sal-1.key")
    cert = load(device.cert)
    assert [a.value for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)] == ["bt-sal-1"]
    assert list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.CLIENT_AUTH
    ]
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    days = (cert.not_valid_after_utc - dt.datetime.now(dt.UTC)).days
    assert 728 <= days <= 730
    verified = PolicyBuilder().store(Store([load(ca.cert)])).build_client_verifier().verify(cert, [])
    assert [n.value for n in verified.subjects or []] == ["urn:mekong-ioc:device:bt-sal-1"]
    cert.verify_directly_issued_by(load(ca.cert))


def test_keys_are_private_and_certificates_readable(ca: CertPair, tmp_path: Path) -> None:
    server = issue_server_cert(ca, tmp_path / "server")
    device = issue_client_cert(ca, tmp_path / "devices", "bt-sal-1")
    for pair in (ca, server, device):
        assert mode(pair.key) == 0o600
        assert mode(pair.cert) == 0o644
    assert sorted(p.name for p in (tmp_path / "devices").iterdir()) == ["bt-sal-1.crt", "bt-sal-1.key"]


def test_everything_is_made_once(ca: CertPair, tmp_path: Path) -> None:
    server = issue_server_cert(ca, tmp_path / "server")
    device = issue_client_cert(ca, tmp_path / "devices", "bt-sal-1")
    before = {p: p.read_bytes() for pair in (ca, server, device) for p in pair}
    assert make_ca(ca.cert.parent) == ca
    assert issue_server_cert(ca, tmp_path / "server") == server
    assert issue_client_cert(ca, tmp_path / "devices", "bt-sal-1") == device
    assert {p: p.read_bytes() for p in before} == before


def test_a_certificate_that_no_longer_fits_is_issued_again(ca: CertPair, tmp_path: Path) -> None:
    server = issue_server_cert(ca, tmp_path / "server")
    first = server.cert.read_bytes()
    issue_server_cert(ca, tmp_path / "server", ["localhost", "broker.example"])  # another name: a new one
    assert server.cert.read_bytes() != first
    assert load(server.cert).extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        DNSName
    ) == ["localhost", "broker.example"]
    other_ca = make_ca(tmp_path / "other-ca")
    device = issue_client_cert(ca, tmp_path / "devices", "bt-sal-1")
    issue_client_cert(other_ca, tmp_path / "devices", "bt-sal-1")  # another CA: issued again by it
    load(device.cert).verify_directly_issued_by(load(other_ca.cert))
    device.key.write_bytes(b"not a key")
    issue_client_cert(other_ca, tmp_path / "devices", "bt-sal-1")  # a broken key: issued again
    ssl.create_default_context().load_cert_chain(device.cert, device.key)


def test_a_ca_is_never_replaced_behind_the_users_back(ca: CertPair, tmp_path: Path) -> None:
    ca.key.write_bytes(make_ca(tmp_path / "other").key.read_bytes())  # the key no longer matches
    with pytest.raises(UserError, match="no usable CA"):
        make_ca(ca.cert.parent)
    with pytest.raises(UserError, match="no usable CA"):
        issue_client_cert(ca, tmp_path / "devices", "bt-sal-1")


def test_issue_device_cert_is_the_commands_logic(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="--ca-dir"):
        issue_device_cert("bt-sal-1", ca_dir=tmp_path / "ca", out_dir=tmp_path / "out")
    device = issue_device_cert("bt-sal-1", ca_dir=tmp_path / "ca", out_dir=tmp_path / "out", new_ca=True)
    load(device.cert).verify_directly_issued_by(load(tmp_path / "ca" / "ca.crt"))
    assert issue_device_cert("bt-sal-1", ca_dir=tmp_path / "ca", out_dir=tmp_path / "out") == device
    with pytest.raises(UserError, match="does not match"):
        issue_device_cert("../etc", ca_dir=tmp_path / "ca", out_dir=tmp_path / "out")
    (tmp_path / "plain").write_text("a file")
    with pytest.raises(UserError, match="--out"):
        issue_device_cert("bt-sal-2", ca_dir=tmp_path / "ca", out_dir=tmp_path / "plain")
