"""The server's TLS identity: a private key and a self-signed certificate kept in the state directory.

The certificate is pinned through access.toml: clients trust it and nothing else, so no certificate authority is
involved and no hostname has to match (cluster nodes reach the login node by many names). It carries one fixed name,
`CERTIFICATE_NAME`, that clients check instead. Made at first start and kept across restarts, like the token, so
that running workers reconnect to a restarted server without reading a new certificate.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ..access import CERTIFICATE_NAME, write_private_file

KEY_FILE = "server-key.pem"
CERTIFICATE_FILE = "server-cert.pem"
VALIDITY_DAYS = 100 * 365
"""Long enough never to expire under a running installation: the pin, not the date, is what is trusted."""


class TlsSetupError(RuntimeError):
    """The key or certificate in the state directory cannot be used; the message names the file and what to do."""


@dataclass(frozen=True)
class Identity:
    key_pem: bytes
    certificate_pem: bytes


def load_or_make_identity(state_dir: Path) -> Identity:
    """The server's key and certificate, made on first start.

    The certificate is written before the key, so a key on disk means a complete pair: without a key both are made
    again. A key that is there but cannot be used is an error, never silently replaced: clients pin its certificate.
    """
    key_path = state_dir / KEY_FILE
    if not key_path.exists():
        return _make_identity(state_dir)
    return _load_identity(key_path, state_dir / CERTIFICATE_FILE)


def _make_identity(state_dir: Path) -> Identity:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CERTIFICATE_NAME)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))  # clocks on cluster nodes may lag the login node's
        .not_valid_after(now + datetime.timedelta(days=VALIDITY_DAYS))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(CERTIFICATE_NAME)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    identity = Identity(
        key_pem=key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
        certificate_pem=certificate.public_bytes(serialization.Encoding.PEM),
    )
    write_private_file(state_dir / CERTIFICATE_FILE, identity.certificate_pem.decode())
    write_private_file(state_dir / KEY_FILE, identity.key_pem.decode())
    return identity


def _load_identity(key_path: Path, certificate_path: Path) -> Identity:
    remedy = (
        f"fix it, or delete {key_path.name} and {certificate_path.name} in {key_path.parent} to make a new pair "
        "(clients and workers then need the new access.toml)"
    )
    key_pem = _read(key_path, "the server's TLS key", remedy)
    mode = key_path.stat().st_mode & 0o777
    if mode & 0o077:
        raise TlsSetupError(
            f"the server's TLS key {key_path} is open to others (mode {mode:04o}): anyone could copy it and pose as "
            f"the server; run `chmod 600 {key_path}`, or delete it and {certificate_path.name} to make a new pair"
        )
    certificate_pem = _read(certificate_path, "the server's TLS certificate", remedy)
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise TlsSetupError(f"the server's TLS key {key_path} is not a readable PEM private key: {remedy}") from None
    try:
        certificate = x509.load_pem_x509_certificate(certificate_pem)
    except ValueError:
        raise TlsSetupError(
            f"the server's TLS certificate {certificate_path} is not a PEM certificate: {remedy}"
        ) from None
    if certificate.public_key() != key.public_key():
        raise TlsSetupError(f"the server's TLS certificate {certificate_path} does not belong to its key: {remedy}")
    return Identity(key_pem=key_pem, certificate_pem=certificate_pem)


def _read(path: Path, what: str, remedy: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise TlsSetupError(f"{what} {path} is missing: {remedy}") from None
    except OSError as err:
        raise TlsSetupError(f"cannot read {what} {path}: {err.strerror or err}; {remedy}") from None


def fingerprint(certificate_pem: bytes) -> str:
    """SHA-256 of the certificate, as `openssl x509 -fingerprint -sha256` shows it: to compare by eye."""
    digest = x509.load_pem_x509_certificate(certificate_pem).fingerprint(hashes.SHA256())
    return ":".join(f"{byte:02X}" for byte in digest)
