"""A test CA and the certificate the cloudflared stand-in's edge serves its public names with.

Cloudflare's edge answers `https://<words>.trycloudflare.com` (and a named tunnel's hostname)
with a certificate every client trusts. The stand-in's edge does the same with one signed by
this test CA: a relay or `cp` started by a test trusts the CA through SSL_CERT_FILE (the knob
users have too) and reaches the edge by name through testkit/edge_dns.py, so its TLS is verified
as it would be for real, hostname included.

Made once per test session (or benchmark run) into a directory named by $TESTKIT_EDGE_TLS_DIR,
which every process started afterwards inherits: `ca.pem` (the CA), `edge.pem` and
`edge-key.pem` (the edge's certificate and key). The certificate names `*.trycloudflare.com`
(every quick tunnel) and the RFC 2606 example domains named tunnels use in tests
(`*.example.com`, `*.example.org`, `*.example.net`): a named hostname elsewhere fails the
hostname check, as a wrong certificate should.
"""

from __future__ import annotations

import datetime
import os
import shutil
import socket
import ssl
import tempfile
from pathlib import Path

from testkit.cloudflared.constants import EDGE_TLS_ENV

EDGE_NAMES = ("*.trycloudflare.com", "*.example.com", "*.example.org", "*.example.net")


def ca_file() -> Path | None:
    """The test CA's certificate (for SSL_CERT_FILE), if this session made one."""
    directory = os.environ.get(EDGE_TLS_ENV)
    return Path(directory) / "ca.pem" if directory else None


def connect(port: int, hostname: str, timeout: float) -> ssl.SSLSocket:
    """A TLS connection to a stand-in's edge at 127.0.0.1:`port`, verified for `hostname`
    against the test CA: what a relay or `cp` pays, for a benchmark's baseline."""
    ca = ca_file()
    if ca is None:
        raise RuntimeError(f"no test CA: ${EDGE_TLS_ENV} is not set (testkit/edge_tls.setup)")
    context = ssl.create_default_context(cafile=str(ca))
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return context.wrap_socket(sock, server_hostname=hostname)


def generate(directory: Path) -> None:
    """A new CA and an edge certificate signed by it, written into `directory`."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    start, end = now - datetime.timedelta(hours=1), now + datetime.timedelta(days=2)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "jupyter-colab-tunnel test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    edge = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, EDGE_NAMES[0])]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in EDGE_NAMES]), False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    (directory / "ca.pem").write_bytes(ca.public_bytes(pem))
    (directory / "edge.pem").write_bytes(edge.public_bytes(pem))
    key_path = directory / "edge-key.pem"
    key_path.write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    key_path.chmod(0o600)


def setup() -> Path | None:
    """Make the CA and certificate for this session and name their directory in the
    environment (inherited by every process started from now on). Returns the directory to
    remove at the end (`teardown`), or None when one was already given."""
    given = os.environ.get(EDGE_TLS_ENV)
    if given and (Path(given) / "ca.pem").is_file():
        return None
    directory = Path(tempfile.mkdtemp(prefix="edge-tls-"))
    generate(directory)
    os.environ[EDGE_TLS_ENV] = str(directory)
    return directory


def teardown(made: Path | None) -> None:
    if made is not None:
        if os.environ.get(EDGE_TLS_ENV) == str(made):
            del os.environ[EDGE_TLS_ENV]
        shutil.rmtree(made, ignore_errors=True)
