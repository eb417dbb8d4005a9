"""The client's TLS trust is exactly what ``verify`` says, and is parsed once per transport.

``requests`` gives urllib3 a CA bundle path for every verified HTTPS pool, and urllib3 then
(1) parsed that bundle again for every new connection (~36 ms of CPU with certifi's bundle,
docs/tls.md "Pooling over TLS") and (2) loaded it into a caller's own ``ssl.SSLContext``, so
a context built to trust one private CA trusted every public CA as well. Real TLS servers
(``LocalVSS(tls=True)``), the connections observed where urllib3 wraps each socket.
"""

from __future__ import annotations

import concurrent.futures as cf
import os
import ssl
from typing import Any, Iterator

import pytest
import urllib3.connection

from mictlanx_sync import Client
from mictlanx_sync.protocol.errors import TLSVerificationError, ValidationError
from mictlanx_sync.server.local import LocalVSS

pytestmark = pytest.mark.timeout(90)

BUCKET = "trust"


@pytest.fixture(scope="module")
def tls_vss() -> Iterator[LocalVSS]:
    with LocalVSS(peers=1, tls=True, health_interval=0.3) as vss:
        yield vss


@pytest.fixture()
def wrapped(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Every TLS connection the client opens: the bundle path and context urllib3 was given."""
    seen: list[dict[str, Any]] = []
    original = urllib3.connection._ssl_wrap_socket_and_match_hostname

    def recording(*args: Any, **kwargs: Any) -> Any:
        seen.append({"ca_certs": kwargs.get("ca_certs"), "ca_cert_dir": kwargs.get("ca_cert_dir"),
                     "ssl_context": kwargs.get("ssl_context")})
        return original(*args, **kwargs)

    monkeypatch.setattr(urllib3.connection, "_ssl_wrap_socket_and_match_hostname", recording)
    return seen


def _read_in_parallel(client: Client, keys: list[str]) -> None:
    with cf.ThreadPoolExecutor(len(keys)) as pool:  # concurrent calls: several new connections
        for got in pool.map(lambda key: client.get(BUCKET, key).unwrap().data.tobytes(), keys):
            assert got.startswith(b"object ")


def _put(client: Client, keys: list[str]) -> None:
    for key in keys:
        client.put(BUCKET, key, b"object " + key.encode() + os.urandom(100)).unwrap()


def test_a_callers_context_is_not_given_other_cas(tls_vss: LocalVSS, wrapped: list[dict[str, Any]]) -> None:
    assert tls_vss.ca_file is not None
    context = ssl.create_default_context(cafile=tls_vss.ca_file)
    before = context.cert_store_stats()
    keys = [f"ctx-{i}" for i in range(6)]
    with Client(tls_vss.uri, verify=context, capacity_storage="0", progress=False) as client:
        _put(client, keys)
        _read_in_parallel(client, keys)
    assert len(wrapped) >= 2
    assert context.cert_store_stats() == before, "the client added CAs to the caller's context"
    assert all(c["ssl_context"] is context and c["ca_certs"] is None for c in wrapped)


def test_a_ca_file_is_parsed_once_for_every_connection(tls_vss: LocalVSS, wrapped: list[dict[str, Any]]) -> None:
    keys = [f"file-{i}" for i in range(6)]
    with Client(tls_vss.uri, verify=tls_vss.ca_file, capacity_storage="0", progress=False) as client:
        _put(client, keys)
        _read_in_parallel(client, keys)
    assert len(wrapped) >= 2
    contexts = {id(c["ssl_context"]) for c in wrapped}
    assert len(contexts) == 1 and wrapped[0]["ssl_context"] is not None, "a context per connection"
    assert all(c["ca_certs"] is None and c["ca_cert_dir"] is None for c in wrapped), "a bundle parsed per connection"
    context = wrapped[0]["ssl_context"]
    assert context.verify_mode == ssl.CERT_REQUIRED and context.cert_store_stats()["x509_ca"] == 1


def test_default_verify_still_refuses_a_self_signed_router(tls_vss: LocalVSS, wrapped: list[dict[str, Any]]) -> None:
    with Client(tls_vss.uri, capacity_storage="0", progress=False) as client:
        error = client.get(BUCKET, "anything").unwrap_err()
    assert type(error) is TLSVerificationError
    assert wrapped and all(c["ssl_context"] is not None and c["ca_certs"] is None for c in wrapped)
    assert wrapped[0]["ssl_context"].cert_store_stats()["x509_ca"] > 1  # the public CAs, as requests trusts


@pytest.mark.parametrize("bundle", ["missing", "not a certificate"])
def test_an_unusable_ca_bundle_is_refused_at_construction(tls_vss: LocalVSS, tmp_path: Any, bundle: str) -> None:
    path = tmp_path / "ca.pem"
    if bundle != "missing":
        path.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    with pytest.raises(ValidationError, match="cannot load this CA bundle") as raised:
        Client(tls_vss.uri, verify=str(path), capacity_storage="0", progress=False)
    assert str(path) in raised.value.message
