"""A local certificate authority for TLS off the machine: the broker's certificate and the devices'.

:func:`make_ca` makes a CA (ECDSA P-256, 10 years, may sign certificates and nothing else);
:func:`issue_server_cert` a server certificate for the broker (its host names and addresses as
subject alternative names, serverAuth); :func:`issue_client_cert` a device certificate (common
name = device id, clientAuth, 2 years), which a Mosquitto listener with ``use_identity_as_username``
takes as the device's user name. :func:`issue_device_cert` is ``ioc devices issue-cert``'s logic.

Every function is idempotent: files that exist, parse, belong together, were issued by this CA, say
what was asked and stay valid for at least :data:`RENEW_BEFORE` are kept as they are; any other
certificate is issued anew — but a CA is never replaced (:func:`make_ca`). Keys are written mode
600, certificates 644, each file atomically (a temporary file renamed into place).
docs/security.md tells the whole setup.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from contract.topics import DEVICE_ID_RE
from ioc.errors import UserError

CA_CERT = "ca.crt"
CA_KEY = "ca.key"
SERVER_NAME = "server"
CA_VALIDITY = dt.timedelta(days=3650)
SERVER_VALIDITY = dt.timedelta(days=825)
CLIENT_VALIDITY = dt.timedelta(days=730)
RENEW_BEFORE = dt.timedelta(days=30)
"""A certificate that expires sooner than this is issued again."""
DEVICE_URI = "urn:mekong-ioc:device:"
"""A device certificate's subject alternative name: this and the device id."""
BACKDATE = dt.timedelta(minutes=5)
"""``not_valid_before`` lies this far back: a peer whose clock is a little behind still accepts it."""


Signer = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
"""Keys a CA may sign with: ours are ECDSA P-256; an RSA CA made elsewhere is used as it is."""


class CertPair(NamedTuple):
    """A certificate and its private key, both PEM files."""

    cert: Path
    key: Path


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def write_atomic(path: Path, data: bytes, mode: int) -> None:
    """Write ``path`` atomically with ``mode`` (the temporary file has it from the start)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _save(pair: CertPair, cert: x509.Certificate, key: Signer) -> CertPair:
    pem_key = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    write_atomic(pair.key, pem_key, 0o600)
    write_atomic(pair.cert, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return pair


def _load(pair: CertPair) -> tuple[x509.Certificate, Signer] | None:
    """The certificate and its key, if both files parse and belong together; else None."""
    try:
        cert = x509.load_pem_x509_certificate(pair.cert.read_bytes())
        key = serialization.load_pem_private_key(pair.key.read_bytes(), password=None)
    except (OSError, ValueError, TypeError):
        return None
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) or key.public_key() != cert.public_key():
        return None
    return cert, key


def _fresh(cert: x509.Certificate) -> bool:
    now = _now()
    return cert.not_valid_before_utc <= now and cert.not_valid_after_utc - now >= RENEW_BEFORE


def _signed_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _builder(subject: str, key: ec.EllipticCurvePrivateKey, validity: dt.timedelta) -> x509.CertificateBuilder:
    now = _now()
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + validity)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )


def _key_usage(*, ca: bool) -> x509.KeyUsage:
    """A CA signs certificates and CRLs; a leaf signs handshakes (ECDSA: digital signature)."""
    return x509.KeyUsage(
        digital_signature=not ca,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def _ca_pair(folder: Path) -> CertPair:
    return CertPair(folder / CA_CERT, folder / CA_KEY)


def make_ca(folder: Path, *, name: str = "Mekong IOC local CA") -> CertPair:
    """A local CA in ``folder`` (``ca.crt``, ``ca.key``): 10 years, may sign certificates (and CRLs) only.

    An existing CA is kept; one that cannot be used (unreadable, the key not its own, not a CA,
    expiring) is never replaced behind the user's back — every certificate it issued would stop
    working — but refused with :class:`UserError`: move it away to make a new one.
    """
    pair = _ca_pair(folder)
    if pair.cert.exists() or pair.key.exists():
        _load_ca(pair)
        return pair
    key = _new_key()
    cert = (
        _builder(name, key, CA_VALIDITY)
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(ca=True), critical=True)
        .sign(key, hashes.SHA256())
    )
    return _save(pair, cert, key)


def _load_ca(ca: CertPair) -> tuple[x509.Certificate, Signer]:
    """The CA's certificate and key; :class:`UserError` when they cannot sign (see :func:`make_ca`)."""
    loaded = _load(ca)
    if loaded is None:
        raise UserError(f"no usable CA at {ca.cert} and {ca.key} (missing, unreadable, or the key does not match)")
    cert, _ = loaded
    try:
        is_ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        is_ca = False
    if not is_ca:
        raise UserError(f"{ca.cert} is not a CA certificate")
    if not _fresh(cert):
        expiry = cert.not_valid_after_utc.date()
        raise UserError(f"the CA {ca.cert} expires on {expiry} (or is not valid yet): move it away to make a new one")
    return loaded


def _issue(
    ca: CertPair,
    pair: CertPair,
    subject: str,
    validity: dt.timedelta,
    usage: x509.ObjectIdentifier,
    sans: Sequence[x509.GeneralName],
) -> CertPair:
    """Issue (or keep, see the module docstring) a leaf certificate for ``subject``."""
    ca_cert, ca_key = _load_ca(ca)
    loaded = _load(pair)
    if loaded is not None and _matches(loaded[0], ca_cert, subject, usage, sans):
        return pair
    key = _new_key()
    builder = (
        _builder(subject, key, validity)
        .issuer_name(ca_cert.subject)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(ca=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
    return _save(pair, builder.sign(ca_key, hashes.SHA256()), key)


def _matches(
    cert: x509.Certificate,
    ca: x509.Certificate,
    subject: str,
    usage: x509.ObjectIdentifier,
    sans: Sequence[x509.GeneralName],
) -> bool:
    """Whether an existing certificate is what :func:`_issue` would make now (and still fresh)."""
    if not (_fresh(cert) and cert.issuer == ca.subject and _signed_by(cert, ca)):
        return False
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if [n.value for n in names] != [subject]:
        return False
    try:
        usages = list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
        have = set(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value) if sans else set()
    except x509.ExtensionNotFound:
        return False
    return usages == [usage] and have == set(sans)


def issue_server_cert(
    ca: CertPair,
    folder: Path,
    hostnames: Sequence[str] = ("localhost",),
    ips: Sequence[str] = ("127.0.0.1",),
    *,
    name: str = SERVER_NAME,
) -> CertPair:
    """The broker's certificate (``{name}.crt``, ``{name}.key`` in ``folder``): these names and addresses, serverAuth.

    Clients check the host of their ``mqtts://`` URL against these subject alternative names.
    """
    if not hostnames and not ips:
        raise UserError("a server certificate needs at least one host name or IP address")
    try:
        sans: list[x509.GeneralName] = [x509.DNSName(h) for h in hostnames]
        sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
    except ValueError as exc:
        raise UserError(f"server certificate names: {exc}") from exc
    subject = hostnames[0] if hostnames else ips[0]
    return _issue(
        ca, CertPair(folder / f"{name}.crt", folder / f"{name}.key"), subject, SERVER_VALIDITY,
        ExtendedKeyUsageOID.SERVER_AUTH, sans,
    )  # fmt: skip


def issue_client_cert(ca: CertPair, folder: Path, device_id: str) -> CertPair:
    """A device's certificate (``{device_id}.crt``, ``.key`` in ``folder``): CN = device id, clientAuth, 2 years.

    Mosquitto takes the common name as the user name; the id is also a subject alternative name,
    ``urn:mekong-ioc:device:{device_id}``, for verifiers that want one (RFC 5280 profiles do).
    """
    if not DEVICE_ID_RE.fullmatch(device_id):
        raise UserError(f"device id {device_id!r} does not match ^[A-Za-z0-9_-]{{1,64}}$")
    pair = CertPair(folder / f"{device_id}.crt", folder / f"{device_id}.key")
    san = [x509.UniformResourceIdentifier(DEVICE_URI + device_id)]
    return _issue(ca, pair, device_id, CLIENT_VALIDITY, ExtendedKeyUsageOID.CLIENT_AUTH, san)


def issue_device_cert(device_id: str, *, ca_dir: Path, out_dir: Path, new_ca: bool = False) -> CertPair:
    """``ioc devices issue-cert ID --ca-dir DIR --out DIR``: the device's certificate from the CA in ``ca_dir``.

    With ``new_ca`` a CA is made in ``ca_dir`` when there is none; without it a missing CA is the
    user's mistake (:class:`UserError` naming ``--ca-dir``). Give the device ``out_dir/ID.crt``,
    ``out_dir/ID.key`` and ``ca_dir/ca.crt``.
    """
    ca = _ca_pair(ca_dir)
    if new_ca:
        ca = make_ca(ca_dir)
    elif not ca.cert.exists() and not ca.key.exists():
        raise UserError(f"--ca-dir {ca_dir}: no CA there ({CA_CERT} and {CA_KEY})")
    try:
        _load_ca(ca)
    except UserError as exc:
        raise UserError(f"--ca-dir {ca_dir}: {exc}") from exc
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"--out {out_dir} is not a folder")
    try:
        return issue_client_cert(ca, out_dir, device_id)
    except OSError as exc:
        raise UserError(f"--out {out_dir}: cannot write the certificate ({exc.strerror or exc})") from exc
