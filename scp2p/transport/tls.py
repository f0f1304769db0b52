"""TLS 1.3 over TCP: runtime self-signed certificates and SSL contexts.

Certificates carry no identity: peers are authenticated by the Hello exchange
inside the channel, bound to it by the exporter (see binding.py). So clients do
not verify certificates (``CERT_NONE``), and each endpoint generates a fresh
P-256 certificate at start-up; nothing is shipped or kept on disk (the PEM
passes through a private temporary file only because ``ssl`` loads from paths).
"""

from __future__ import annotations

import datetime
import os
import ssl
import tempfile
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

ALPN = "scp2p/1"


@dataclass(frozen=True, slots=True)
class SelfSigned:
    certificate: x509.Certificate
    private_key: ec.EllipticCurvePrivateKey

    def cert_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def key_pem(self) -> bytes:
        return self.private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )


def make_self_signed(common_name: str = "scp2p", days: int = 365) -> SelfSigned:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(common_name)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return SelfSigned(cert, key)


def server_context(cert: SelfSigned) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.set_alpn_protocols([ALPN])
    fd, path = tempfile.mkstemp(prefix="scp2p-tls-", suffix=".pem")
    try:
        with os.fdopen(fd, "wb") as fh:  # mkstemp: mode 0600
            fh.write(cert.key_pem() + cert.cert_pem())
        ctx.load_cert_chain(path)
    finally:
        os.unlink(path)
    return ctx


def client_context() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # identity comes from the bound Hello, not the certificate
    ctx.set_alpn_protocols([ALPN])
    return ctx


__all__ = ["ALPN", "SelfSigned", "client_context", "make_self_signed", "server_context"]
