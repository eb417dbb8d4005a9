"""Shared helpers for the reliability harnesses (crash, fuzz, properties, traversal, soak).

CI mode is small and bounded; ``MICTLANX_LONG_TESTS=1`` selects the long mode (more crash
rounds, more generated cases, a 60 s soak). ``MICTLANX_RELIABILITY_SEED=<int>`` replays a run
of the randomized harnesses (each prints the seed it used).
"""

from __future__ import annotations

import atexit
import os
import random
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Any, Iterator, Optional

import pytest
import requests
from hypothesis.configuration import set_hypothesis_home_dir

# hypothesis keeps a constants cache even with ``database=None``: keep it out of the checkout,
# in a directory of this run that is removed when the run ends (nothing left in the system temp dir).
_HYPOTHESIS_HOME = Path(tempfile.mkdtemp(prefix="mictlanx-sync-hypothesis-"))
atexit.register(shutil.rmtree, _HYPOTHESIS_HOME, ignore_errors=True)
set_hypothesis_home_dir(_HYPOTHESIS_HOME)

LONG = os.environ.get("MICTLANX_LONG_TESTS", "").strip().lower() in ("1", "true", "yes", "on")


def pick(ci: Any, long: Any) -> Any:
    """The CI value, or the long-mode one under ``MICTLANX_LONG_TESTS=1``."""
    return long if LONG else ci


def run_seed() -> int:
    """The seed of a randomized harness: ``MICTLANX_RELIABILITY_SEED`` or a fresh one."""
    raw = os.environ.get("MICTLANX_RELIABILITY_SEED", "").strip()
    return int(raw) if raw else random.SystemRandom().randrange(2**32)


@pytest.fixture()
def seed(request: pytest.FixtureRequest) -> int:
    """A seed, printed and recorded in the test report so any failure can be replayed."""
    value = run_seed()
    print(f"\n[{request.node.name}] seed={value} (replay: MICTLANX_RELIABILITY_SEED={value})")
    request.node.user_properties.append(("seed", value))
    return value


# --- /proc readings -------------------------------------------------------------------------
def fd_count(pid: int) -> int:
    """Open file descriptors of ``pid`` (``/proc/<pid>/fd``)."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def rss_bytes(pid: int) -> int:
    """Resident set size of ``pid`` (``VmRSS`` in ``/proc/<pid>/status``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def child_server_pids(parent: Optional[int] = None) -> dict[int, str]:
    """``{pid: "peer"|"router"}`` of the ``mictlanx_sync`` server subprocesses of ``parent``."""
    parent = os.getpid() if parent is None else parent
    found: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid != parent:
                continue
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError, IndexError):
            continue
        words = [a.decode(errors="replace") for a in argv]
        if "mictlanx_sync" in words and ("peer" in words or "router" in words):
            found[int(entry)] = "peer" if "peer" in words else "router"
    return found


# --- HTTP helpers ----------------------------------------------------------------------------
def is_error_body(resp: requests.Response) -> bool:
    """True for ``{"detail": {"code": int, "msg": str, ...}}`` (protocol §2.6)."""
    try:
        body = resp.json()
    except ValueError:
        return False
    detail = body.get("detail") if isinstance(body, dict) else None
    return (isinstance(detail, dict) and isinstance(detail.get("code"), int)
            and not isinstance(detail.get("code"), bool) and isinstance(detail.get("msg"), str))


@pytest.fixture()
def http() -> Iterator[requests.Session]:
    session = requests.Session()
    session.trust_env = False
    yield session
    session.close()


@pytest.fixture()
def dead_port() -> Iterator[int]:
    """A loopback port that is bound but never listens: every connection to it is refused.

    Fuzzed peer/node registrations point here, so a server under test never contacts
    anything but itself (and never another engineer's server on this machine).
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    yield sock.getsockname()[1]
    sock.close()
