"""Throwaway TLS material for the offline host.

Production SAS URLs carry ``spr=https`` and Azurite only accepts bearer tokens over HTTPS, so
the offline host must speak TLS to stay production-shaped. One self-signed certificate is made
per run and serves as both the server certificate and the CA bundle clients trust
(``REQUESTS_CA_BUNDLE`` / ``connection_verify``); it never leaves the temporary directory.
"""

from __future__ import annotations

import ipaddress
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["VAULT_HOST", "TlsFiles", "covers_hosts", "make_tls_files", "server_ssl_context"]

#: The local Key Vault's name (devhost/keyvault.py says why it sits under vault.azure.net). The
#: certificate names it so the SDK's TLS check holds; only the offline host trusts it.
VAULT_HOST = "dsr-devhost.vault.azure.net"
_HOSTS = ("localhost", VAULT_HOST)
_IPS = ("127.0.0.1",)


@dataclass(frozen=True)
class TlsFiles:
    """PEM paths of a self-signed certificate; ``cert_path`` is also the CA bundle to trust."""

    cert_path: Path
    key_path: Path

    @property
    def ca_bundle(self) -> str:
        """The value for ``REQUESTS_CA_BUNDLE`` / ``connection_verify``: the certificate itself."""
        return str(self.cert_path)


def make_tls_files(directory: Path, *, valid_for: timedelta = timedelta(days=30)) -> TlsFiles:
    """Write ``cert.pem`` and ``key.pem`` for 127.0.0.1/localhost into ``directory``.

    P-256 keeps generation in the millisecond range, so every test session can have its own.
    The certificate is marked as a CA as well as a server certificate: it is its own trust
    anchor, and strict verifiers want the CA flag on anything found in a CA bundle.
    """
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _self_signed(key, valid_for)
    cert_path = directory / "cert.pem"
    key_path = directory / "key.pem"
    key_path.touch(mode=0o600)
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return TlsFiles(cert_path=cert_path, key_path=key_path)


def covers_hosts(tls: TlsFiles) -> bool:
    """Whether the certificate names every host the offline host serves (older state dirs
    hold certificates made before the local Key Vault existed)."""
    cert = x509.load_pem_x509_certificate(tls.cert_path.read_bytes())
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    return set(_HOSTS) <= set(names.get_values_for_type(x509.DNSName))


def server_ssl_context(tls: TlsFiles) -> ssl.SSLContext:
    """A server-side context for loopback servers (TLS 1.2+), loaded with ``tls``."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(certfile=str(tls.cert_path), keyfile=str(tls.key_path))
    return context


def _self_signed(key: ec.EllipticCurvePrivateKey, valid_for: timedelta) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dsr-export devhost")])
    now = datetime.now(UTC)
    sans: list[x509.GeneralName] = [x509.DNSName(host) for host in _HOSTS]
    sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in _IPS]
    public_key = key.public_key()
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + valid_for)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(public_key), critical=False
        )
        .sign(key, hashes.SHA256())
    )
