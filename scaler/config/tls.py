"""The TLS files the server settings name: read and checked as OpenSSL will use them.

A config is checked with these files read (``ServerSettings.validate``), so a missing Secret
or a key of another certificate fails ``scaler validate-config``, not the next restart.
Messages name the key and the path, never the contents.
"""

from __future__ import annotations

import re
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from scaler.config.settings import ServerSettings


@dataclass(frozen=True)
class TlsMaterial:
    """The PEM bytes the TLS settings name, read once at start (so: restart to rotate)."""

    cert_chain: bytes
    private_key: bytes = field(repr=False)  # no repr: a logged object never shows the key
    client_ca: bytes | None = None


_CERT_PEM = re.compile(rb"-----BEGIN CERTIFICATE-----")
_KEY_PEM = re.compile(rb"-----BEGIN (?:RSA |EC |ENCRYPTED )?PRIVATE KEY-----")
_ENCRYPTED_KEY = re.compile(rb"-----BEGIN ENCRYPTED PRIVATE KEY-----|Proc-Type: 4,ENCRYPTED")


def read_tls(server: ServerSettings, path: str) -> tuple[TlsMaterial | None, list[str]]:
    problems = _tls_pairing(server, path)
    if problems or not server.tls_cert_file:
        return None, problems
    cert = _read_pem(f"{path}tls_cert_file", server.tls_cert_file, _CERT_PEM,
                     "certificate", problems)
    key = _read_pem(f"{path}tls_key_file", server.tls_key_file, _KEY_PEM,
                    "private key", problems)
    client_ca = None
    if server.tls_client_ca_file:
        client_ca = _read_pem(f"{path}tls_client_ca_file", server.tls_client_ca_file,
                              _CERT_PEM, "CA certificate", problems)
    if key is not None and _ENCRYPTED_KEY.search(key):
        problems.append(f"{path}tls_key_file: {server.tls_key_file} is an encrypted private "
                        "key, which gRPC cannot use: store it decrypted in the Secret "
                        "(openssl pkey -in KEY -out PLAIN_KEY)")
    if cert is None or key is None or problems:
        return None, problems
    problems += _openssl_check(server, path)
    if problems:
        return None, problems
    return TlsMaterial(cert, key, client_ca), []


def _tls_pairing(server: ServerSettings, path: str) -> list[str]:
    """Keys that only make sense together: certificate and key, and what needs both."""
    cert, key = f"{path}tls_cert_file", f"{path}tls_key_file"
    if server.tls_cert_file and not server.tls_key_file:
        return [f"{key}: required with {cert} (the path of that certificate's PEM private key)"]
    if server.tls_key_file and not server.tls_cert_file:
        return [f"{cert}: required with {key} (the path of the PEM certificate of that key)"]
    problems = []
    if not server.tls_cert_file and server.tls_client_ca_file:
        problems.append(f"{path}tls_client_ca_file: needs {cert} and {key} (mutual TLS is "
                        "TLS that also checks KEDA's certificate): set both or remove it")
    if not server.tls_cert_file and server.http_tls:
        problems.append(f"{path}http_tls: needs {cert} and {key} (HTTPS serves that "
                        "certificate): set both or set http_tls: false")
    return problems


def _read_pem(key: str, file: str, marker: re.Pattern[bytes], what: str,
              problems: list[str]) -> bytes | None:
    """The file's bytes if it reads and holds a PEM block of the kind expected.

    Messages name the key and the path, never the contents.
    """
    try:
        data = Path(file).read_bytes()
    except OSError as exc:
        problems.append(f"{key}: cannot read {file}: {exc.strerror or exc} (mount the Secret "
                        "there or correct the path)")
        return None
    if not marker.search(data):
        problems.append(f"{key}: {file} is not a PEM {what} (no '-----BEGIN ...' block of "
                        "that kind): give the PEM file")
        return None
    return data


def _openssl_check(server: ServerSettings, path: str) -> list[str]:
    """Load the files as OpenSSL will when serving: the key must belong to the certificate."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        # A password (never used for an unencrypted key) so OpenSSL never prompts on a tty.
        context.load_cert_chain(server.tls_cert_file, server.tls_key_file, password=b"")
    except (ssl.SSLError, OSError) as exc:
        if getattr(exc, "reason", None) == "KEY_VALUES_MISMATCH":
            return [f"{path}tls_key_file: {server.tls_key_file} is not the private key of "
                    f"{server.tls_cert_file} ({path}tls_cert_file): give the key that "
                    "certificate was issued for"]
        return [f"{path}tls_cert_file: {server.tls_cert_file} with the key in "
                f"{server.tls_key_file} does not load ({_ssl_reason(exc)}): check both "
                "are PEM, the certificate first in its file"]
    if server.tls_client_ca_file:
        try:
            context.load_verify_locations(cafile=server.tls_client_ca_file)
        except (ssl.SSLError, OSError) as exc:
            return [f"{path}tls_client_ca_file: {server.tls_client_ca_file} does not load as "
                    f"PEM CA certificates ({_ssl_reason(exc)})"]
    return []


def _ssl_reason(exc: Exception) -> str:
    return str(getattr(exc, "reason", None) or getattr(exc, "strerror", None) or exc)
