"""The sandbox's own certificate authority: made at start, it signs one server certificate for the loopback names.

The Kubernetes emulator always serves HTTPS with it (a real API server does, and kubectl sends a kubeconfig's token
only over HTTPS); the other emulators do when asked (``Sandbox(tls=SERVICES)``, ``python -m sandbox --tls``).
Clients trust the CA through the kubeconfig's ``certificate-authority-data`` or the ``ca.pem`` file beside it.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

LOOPBACK_NAMES = ("localhost",)
LOOPBACK_ADDRESSES = ("127.0.0.1", "::1")
VALIDITY = datetime.timedelta(days=2)


@dataclass(frozen=True)
class Certificates:
    """A CA and a server certificate it signed, as PEM bytes.

    Attributes:
        ca_pem: the CA's certificate (what clients trust).
        server_pem: the server's certificate.
        server_key_pem: the server's private key (unencrypted PKCS#8).
    """

    ca_pem: bytes
    server_pem: bytes
    server_key_pem: bytes

    @classmethod
    def generate(cls, host: str = "127.0.0.1") -> Certificates:
        """A new CA (ECDSA P-256, valid two days) and a server certificate for ``host``, localhost, 127.0.0.1
        and ::1."""
        now = datetime.datetime.now(datetime.UTC)
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fragalysis-cd sandbox CA")])
        ca = (
            x509.CertificateBuilder()
            .subject_name(ca_name)
            .issuer_name(ca_name)
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + VALIDITY)
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
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        server_key = ec.generate_private_key(ec.SECP256R1())
        server = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fragalysis-cd sandbox")]))
            .issuer_name(ca_name)
            .public_key(server_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + VALIDITY)
            .add_extension(x509.SubjectAlternativeName(_alternative_names(host)), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        pem = serialization.Encoding.PEM
        return cls(
            ca_pem=ca.public_bytes(pem),
            server_pem=server.public_bytes(pem),
            server_key_pem=server_key.private_bytes(
                pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ),
        )

    def write(self, directory: Path) -> CertificateFiles:
        """Write ``ca.pem``, ``server.pem`` and ``server-key.pem`` (mode 0600) into ``directory``."""
        directory.mkdir(parents=True, exist_ok=True)
        files = CertificateFiles(
            ca=directory / "ca.pem", server=directory / "server.pem", server_key=directory / "server-key.pem"
        )
        contents = ((files.ca, self.ca_pem), (files.server, self.server_pem), (files.server_key, self.server_key_pem))
        for path, data in contents:
            path.touch(mode=0o600, exist_ok=True)
            path.chmod(0o600)
            path.write_bytes(data)
        return files

    def client_context(self) -> ssl.SSLContext:
        """An SSL context that trusts this CA only (for the emulators' own requests to one another)."""
        return ssl.create_default_context(cadata=self.ca_pem.decode("ascii"))


@dataclass(frozen=True)
class CertificateFiles:
    """Where ``Certificates.write`` put them."""

    ca: Path
    server: Path
    server_key: Path


def _alternative_names(host: str) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = [x509.DNSName(name) for name in LOOPBACK_NAMES]
    addresses = list(LOOPBACK_ADDRESSES)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if host not in LOOPBACK_NAMES:
            names.append(x509.DNSName(host))
    else:
        if host not in addresses:
            addresses.append(host)
    names += [x509.IPAddress(ipaddress.ip_address(address)) for address in addresses]
    return names
