"""Issue 14 §3: an application that configures no logging sees nothing from the library,
and a retry line, when logging is on, names the user's operation (``put photos/cat``)."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import mictlanx_sync
from mictlanx_sync import Client, RetryPolicy

ROOT = Path(__file__).resolve().parents[2]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _down_uri() -> str:
    return f"mictlanx://r0@127.0.0.1:{_closed_port()}/?protocol=http"


def test_package_logger_has_a_null_handler() -> None:
    handlers = logging.getLogger("mictlanx_sync").handlers
    assert any(isinstance(h, logging.NullHandler) for h in handlers), handlers
    assert mictlanx_sync.__version__


def test_unconfigured_application_prints_nothing_on_retries() -> None:
    script = textwrap.dedent(f"""
        from mictlanx_sync import Client, RetryPolicy
        policy = RetryPolicy(retries=3, initial_delay=0.01, max_delay=0.01, jitter=False)
        with Client({_down_uri()!r}, retry=policy, capacity_storage="0", breaker=None) as client:
            result = client.put("photos", "cat", b"meow")
        assert result.is_err, result
        print("done")
    """)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "done"
    assert done.stderr == ""  # before: "list photos/cat: attempt 1/3 failed ..." via logging.lastResort


def test_retry_warning_names_the_users_operation(caplog: pytest.LogCaptureFixture) -> None:
    policy = RetryPolicy(retries=2, initial_delay=0.01, max_delay=0.01, jitter=False)
    with caplog.at_level(logging.WARNING, logger="mictlanx_sync"):
        with Client(_down_uri(), retry=policy, capacity_storage="0", breaker=None) as client:
            assert client.put("photos", "cat", b"meow").is_err
            assert client.get(bucket_id="photos", key="dog").is_err
    retries = [r.getMessage() for r in caplog.records if "attempt 1/2" in r.getMessage()]
    assert retries, caplog.text
    assert any(m.startswith("put photos/cat") for m in retries), retries
    assert any(m.startswith("get photos/dog") for m in retries), retries
