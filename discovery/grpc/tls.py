"""TLS for the gRPC listener, reloading the certificate when its files change.

Upstream watches the files (siderolabs/crypto DynamicCertificate). grpc offers the same
through `dynamic_ssl_server_credentials`: core calls a fetcher on every new connection, and
the fetcher returns a new configuration or None for "unchanged". Ours compares the files'
stat stamps, so an unchanged certificate costs two `stat` calls per handshake.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import serialization

log = logging.getLogger("discovery.grpc")

_Stamp = tuple[tuple[int, int, int, int], ...]


class CertificateReloader:
    """Serves the certificate and key at the given paths, re-reading them when they change.

    Raises ValueError (or OSError) at construction when the files are unusable. Later, a
    changed pair that does not load (half-written, or a certificate that does not match the
    key) is ignored with one warning and the previous pair stays in use until a good one
    appears: replacing two files is never atomic, so a handshake may land between the writes.
    """

    def __init__(self, cert_path: str | os.PathLike[str], key_path: str | os.PathLike[str]):
        self._cert = Path(cert_path)
        self._key = Path(key_path)
        # grpc calls the fetcher from its own threads, possibly several at once.
        self._lock = threading.Lock()
        self._stamp = self._read_stamp()
        self._rejected: _Stamp | None = None
        self._initial = self._load()

    def credentials(self) -> grpc.ServerCredentials:
        return grpc.dynamic_ssl_server_credentials(
            self._initial, self._fetch, require_client_authentication=False
        )

    def _read_stamp(self) -> _Stamp:
        stamps = []
        for path in (self._cert, self._key):
            st = path.stat()
            stamps.append((st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_ino))
        return tuple(stamps)

    def _load(self) -> grpc.ServerCertificateConfiguration:
        cert_pem, key_pem = self._cert.read_bytes(), self._key.read_bytes()
        _check_pair(cert_pem, key_pem)
        return grpc.ssl_server_certificate_configuration([(key_pem, cert_pem)])

    def _fetch(self) -> grpc.ServerCertificateConfiguration | None:
        try:
            with self._lock:
                stamp = self._read_stamp()
                if stamp == self._stamp or stamp == self._rejected:
                    return None
                try:
                    config = self._load()
                except (OSError, ValueError) as exc:
                    self._rejected = stamp
                    log.warning(
                        "TLS certificate not reloaded, keeping the previous one",
                        extra={"cert": str(self._cert), "error": str(exc)},
                    )
                    return None
                self._stamp, self._rejected = stamp, None
            log.info("TLS certificate reloaded", extra={"cert": str(self._cert)})
            return config
        except Exception:
            # An exception must not escape into grpc's handshake thread: keep the old pair.
            log.exception("TLS certificate check failed")
            return None


def _check_pair(cert_pem: bytes, key_pem: bytes) -> None:
    """Raise ValueError unless `cert_pem` starts with a certificate for the key in `key_pem`."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    key = serialization.load_pem_private_key(key_pem, password=None)
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if cert.public_key().public_bytes(*spki) != key.public_key().public_bytes(*spki):
        raise ValueError("the certificate does not match the private key")
