"""TLS for the servers (docs/tls.md): serving HTTPS, verifying https peers, and the
self-signed certificate of ``LocalVSS(tls=True)``.

- :class:`ServerTLS` is a certificate and key a peer or router serves HTTPS with
  (``--ssl-certfile``/``--ssl-keyfile``, passed on to uvicorn); :func:`add_server_tls_arguments`
  and :func:`server_tls_from_args` are the command-line side, shared by both servers.
- :func:`peer_ssl_context` is the context a router verifies its https peers with
  (``--peer-ca-file``; default: the system's trusted CAs).
- :func:`make_self_signed` writes a certificate for loopback with the ``openssl`` command
  (no Python dependency); ``LocalVSS`` and the TLS benchmark use it.

Imports nothing of the server stack, so the CLI parsers stay light.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import shutil
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

__all__ = [
    "ServerTLS", "TLSSetupError", "add_server_tls_arguments", "server_tls_from_args", "peer_ssl_context",
    "make_self_signed", "OPENSSL_TIMEOUT",
]

#: seconds ``openssl`` may take to write a key and a certificate
OPENSSL_TIMEOUT = 30.0
#: validity of a self-signed LocalVSS certificate
SELF_SIGNED_DAYS = 30


class TLSSetupError(ValueError):
    """A certificate, key or CA file cannot be used (missing, unreadable, not matching), or
    ``openssl`` cannot make one; the message names the file and the reason."""


@dataclass(frozen=True)
class ServerTLS:
    """The certificate chain (PEM) a server presents, and its private key (PEM; None when the
    key is inside ``certfile``)."""

    certfile: str
    keyfile: Optional[str] = None

    def check(self) -> None:
        """Load the pair once, so a bad file fails at start with a readable :class:`TLSSetupError`."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            context.load_cert_chain(self.certfile, self.keyfile)
        except FileNotFoundError as exc:
            raise TLSSetupError(f"TLS file not found: {exc.filename or self.certfile}") from None
        except (ssl.SSLError, OSError) as exc:
            raise TLSSetupError(f"cannot load the TLS certificate {self.certfile!r} with key "
                                f"{self.keyfile or self.certfile!r}: {exc}") from None


def add_server_tls_arguments(parser: argparse.ArgumentParser, env_prefix: str) -> None:
    """``--ssl-certfile``/``--ssl-keyfile`` with the variables ``{env_prefix}_SSL_CERTFILE``/``..._KEYFILE``."""
    add = parser.add_argument
    add("--ssl-certfile", default=os.environ.get(f"{env_prefix}_SSL_CERTFILE") or None, metavar="PEM",
        help=f"serve HTTPS with this certificate chain (PEM) [{env_prefix}_SSL_CERTFILE] (default: plain HTTP)")
    add("--ssl-keyfile", default=os.environ.get(f"{env_prefix}_SSL_KEYFILE") or None, metavar="PEM",
        help=f"the private key of --ssl-certfile (PEM, unencrypted) [{env_prefix}_SSL_KEYFILE] "
             "(default: the key is inside --ssl-certfile)")


def server_tls_from_args(args: argparse.Namespace, program: str) -> Optional[ServerTLS]:
    """The :class:`ServerTLS` of the parsed options (None: plain HTTP), checked now;
    ``SystemExit`` with a one-line message when the files cannot be used."""
    certfile = getattr(args, "ssl_certfile", None) or None
    keyfile = getattr(args, "ssl_keyfile", None) or None
    if certfile is None:
        if keyfile is not None:
            raise SystemExit(f"{program}: --ssl-keyfile needs --ssl-certfile")
        return None
    tls = ServerTLS(certfile, keyfile)
    try:
        tls.check()
    except TLSSetupError as exc:
        raise SystemExit(f"{program}: {exc}") from None
    return tls


def peer_ssl_context(ca_file: Optional[str] = None) -> ssl.SSLContext:
    """The client context a router verifies https peers with: ``ca_file`` (PEM bundle) as the
    only trust anchors, or the system's trusted CAs when None. Host names (or IP addresses)
    are checked against the certificate. Raises :class:`TLSSetupError` for an unusable file."""
    try:
        return ssl.create_default_context(cafile=ca_file)
    except FileNotFoundError:
        raise TLSSetupError(f"peer CA file not found: {ca_file}") from None
    except (ssl.SSLError, OSError) as exc:
        raise TLSSetupError(f"cannot load the peer CA file {ca_file!r}: {exc}") from None


def _subject_alt_names(hosts: Sequence[str]) -> str:
    names: list[str] = []
    for host in hosts:
        bare = host.strip("[]")
        try:
            ipaddress.ip_address(bare)
        except ValueError:
            entry = f"DNS:{bare}"
        else:
            entry = f"IP:{bare}"
        if entry not in names:
            names.append(entry)
    return ",".join(names)


def make_self_signed(directory: Path, hosts: Sequence[str] = ("127.0.0.1", "localhost"), *,
                     common_name: str = "MictlanX LocalVSS", days: int = SELF_SIGNED_DAYS) -> ServerTLS:
    """Write ``cert.pem`` and ``key.pem`` (ECDSA P-256, mode 0600) into ``directory``: a
    self-signed certificate valid for ``hosts`` (IP addresses and DNS names), which is also
    its own CA file. Uses the ``openssl`` command; :class:`TLSSetupError` when it is missing
    or fails."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise TLSSetupError("making a self-signed certificate needs the 'openssl' command, which is not on PATH; "
                            "install OpenSSL (e.g. apt-get install openssl) or pass your own certificate")
    directory.mkdir(parents=True, exist_ok=True)
    certfile, keyfile = directory / "cert.pem", directory / "key.pem"
    # The key file exists, mode 0600, before openssl writes into it (no process-wide umask change).
    os.close(os.open(keyfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))
    keyfile.chmod(0o600)
    command = [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
               "-keyout", str(keyfile), "-out", str(certfile), "-days", str(days), "-subj", f"/CN={common_name}",
               "-addext", f"subjectAltName={_subject_alt_names(hosts)}"]
    try:
        completed = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                   timeout=OPENSSL_TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        raise TLSSetupError(f"openssl did not make a certificate within {OPENSSL_TIMEOUT:g} s") from None
    except OSError as exc:
        raise TLSSetupError(f"cannot run openssl: {exc}") from None
    if completed.returncode != 0:
        detail = (completed.stderr or completed.stdout).strip().splitlines()
        raise TLSSetupError(f"openssl failed to make a self-signed certificate (exit {completed.returncode}): "
                            f"{detail[-1] if detail else 'no output'}")
    certfile.chmod(0o644)  # the certificate is public: it is the clients' CA file
    tls = ServerTLS(str(certfile), str(keyfile))
    tls.check()
    return tls
