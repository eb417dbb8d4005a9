"""Client construction (client-api §8.1, §8.4): validation, no I/O, logging, closing."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import pytest

from mictlanx_sync import BreakerPolicy, Client, RetryPolicy
from mictlanx_sync.protocol.errors import ValidationError

from . import client_support
from .client_support import HOST, Cluster, reserve_port

cluster = client_support.cluster

pytestmark = pytest.mark.timeout(30)


def test_bad_arguments_raise(tmp_path: Path) -> None:
    uri = f"mictlanx://r@{HOST}:1/?protocol=http"
    for kwargs in ({"eviction_policy": "MRU"}, {"capacity_storage": "lots"}, {"load_balancing": "RANDOM"},
                   {"max_workers": 0}, {"timeout": (1, -1)}, {"timeout": 0}):
        with pytest.raises(ValidationError):
            Client(uri, cache_path=str(tmp_path / "c"), **kwargs)
    for bad_uri in ("http://h:1", "mictlanx://", "mictlanx://h:0", "mictlanx://h:1?protocol=ftp"):
        with pytest.raises(ValidationError):
            Client(bad_uri, cache_path=str(tmp_path / "c"))
    with pytest.raises(TypeError):
        Client(uri, cache_path=str(tmp_path / "c"), retry={"retries": 1})  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Client(uri, cache_path=str(tmp_path / "c"), max_workers=2.5)  # type: ignore[arg-type]
    assert not (tmp_path / "c").exists()


def test_construction_does_no_io(tmp_path: Path) -> None:
    port = reserve_port()  # nothing listens: any request would fail loudly in the breaker state
    with Client(f"mictlanx://a@{HOST}:{port},b@{HOST}:{port}/?protocol=http", cache_path=str(tmp_path / "c"),
                breaker=BreakerPolicy(fail_max=1), retry=RetryPolicy(retries=1)) as c:
        assert len(c.routers) == 1  # identical URLs merge
        assert c.client_id.startswith("client-") and len(c.client_id) == len("client-") + 8
        assert [c.breaker_state(r) for r in c.routers] == ["closed"]
        assert not (tmp_path / "c").exists()  # the cache directory is created on first use
        assert c.cache is not None and (tmp_path / "c").is_dir()
        assert c.max_workers == 12 and c.max_bulk_workers == 4


def test_log_file_and_handlers_removed_on_close(cluster: Cluster, tmp_path: Path, bucket: str) -> None:
    logs = tmp_path / "logs" / "deep"
    c = Client(cluster.uri(), client_id="client-logtest", cache_path=str(tmp_path / "c"), log_output_path=str(logs))
    try:
        assert stat.S_IMODE(os.stat(logs).st_mode) == 0o755 & ~_umask()
        logger = logging.getLogger("mictlanx_sync.client.client-logtest")
        assert len(logger.handlers) == 1
        assert c.put(bucket, "logged", b"x").unwrap()
        assert c.get(bucket, "logged").unwrap().data.tobytes() == b"x"
        assert c.get(bucket, "not-there").is_err
    finally:
        c.close()
    assert logger.handlers == []
    text = (logs / "client-logtest.log").read_text()
    lines = [line for line in text.splitlines() if " INFO " in line]
    assert any("put" in line and "key=logged" in line for line in lines), text
    assert any("get" in line and "key=logged" in line for line in lines), text
    assert all("\n" not in line for line in lines)
    errors = [line for line in text.splitlines() if " ERROR " in line]
    assert len(errors) == 1 and "key=not-there" in errors[0] and "NotFoundError" in errors[0], text
    assert " DEBUG " not in text  # debug=False


def test_debug_logs_one_line_per_request(cluster: Cluster, tmp_path: Path, bucket: str,
                                         capfd: pytest.CaptureFixture[str]) -> None:
    with Client(cluster.uri(), client_id="client-debugtest", cache_path=str(tmp_path / "c"), debug=True) as c:
        assert c.put(bucket, "dbg", b"x").unwrap()
    err = capfd.readouterr().err
    debug = [line for line in err.splitlines() if " DEBUG mictlanx_sync.client.client-debugtest " in line]
    # A new small key is one request (R5 with the bytes and the create-only check), named by the put.
    assert sum(f"put {bucket}/dbg " in line and " ok " in line for line in debug) == 1, err
    assert logging.getLogger("mictlanx_sync.client.client-debugtest").handlers == []


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
