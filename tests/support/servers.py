"""Real servers for tests: ``python -m mictlanx_sync <kind> --port 0 ...`` as subprocesses.

Each server binds a free port chosen by the OS and prints ``listening on http://H:P``;
we read that line (bounded in time), so no port is ever fixed or probed.
"""

from __future__ import annotations

import os
import resource
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional, Sequence, Union

import requests

START_TIMEOUT = 20.0
REPO_ROOT = Path(__file__).resolve().parents[2]


class ServerProcess:
    """One server subprocess; ``restart()`` reuses its port and arguments."""

    def __init__(self, kind: str, args: Sequence[str], env: Optional[dict[str, str]] = None, *,
                 nofile: Optional[int] = None) -> None:
        self.kind = kind
        self.args = list(args)
        self.env = env
        #: the server's soft limit of open file descriptors (None: inherited)
        self.nofile = nofile
        self.proc: Optional[subprocess.Popen[str]] = None
        self.port: Optional[int] = None
        self.url = ""
        self.stderr_path: Optional[Path] = None
        #: what the readiness check verifies an https server with (a CA file path, or True)
        self.verify: Union[bool, str] = True

    def start(self, port: int = 0, timeout: float = START_TIMEOUT) -> ServerProcess:
        env = dict(os.environ)
        env.setdefault("PYTHONPATH", str(REPO_ROOT))
        env.update(self.env or {})
        cmd = [sys.executable, "-m", "mictlanx_sync", self.kind, "--host", "127.0.0.1", "--port", str(port), *self.args]
        self._stderr = open(os.devnull, "w") if self.stderr_path is None else open(self.stderr_path, "a")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self._stderr, text=True, env=env,
                                     preexec_fn=self._limit_descriptors if self.nofile else None)
        line = _read_line(self.proc, timeout)
        if not line.startswith("listening on "):
            self.kill()
            raise RuntimeError(f"{self.kind} did not start: {line!r} (cmd: {' '.join(cmd)})")
        self.url = line.split("listening on ", 1)[1].strip()
        self.port = int(self.url.rsplit(":", 1)[1])
        self.wait_healthy(timeout)
        return self

    def _limit_descriptors(self) -> None:
        _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (self.nofile, hard))

    def wait_healthy(self, timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if requests.get(f"{self.url}/health", timeout=2, verify=self.verify).status_code == 200:
                    return
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.kind} at {self.url} not healthy after {timeout}s")
            time.sleep(0.05)

    def stop(self, timeout: float = 15.0) -> Optional[int]:
        """SIGTERM and wait; returns the exit status."""
        if self.proc is None or self.proc.poll() is not None:
            self._close_files()
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            raise
        finally:
            self._close_files()

    def _close_files(self) -> None:
        """Close the stdout pipe and the stderr file of an ended process (no ResourceWarning)."""
        if self.proc is not None and self.proc.poll() is not None and self.proc.stdout is not None:
            self.proc.stdout.close()
        stderr = getattr(self, "_stderr", None)
        if stderr is not None and self.proc is not None and self.proc.poll() is not None:
            stderr.close()

    def kill(self) -> None:
        """SIGKILL: no clean-up at all, as a crash."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._close_files()

    def restart(self, timeout: float = START_TIMEOUT) -> ServerProcess:
        self.kill()
        return self.start(self.port or 0, timeout)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def rss_bytes(self) -> int:
        """Current resident set size, read from /proc."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("VmRSS not found")


def _read_line(proc: subprocess.Popen[str], timeout: float) -> str:
    assert proc.stdout is not None
    selector = selectors.DefaultSelector()
    selector.register(proc.stdout, selectors.EVENT_READ)
    try:
        if not selector.select(timeout):
            return f"<no output in {timeout}s>"
        return proc.stdout.readline()
    finally:
        selector.close()


def start_peer(data_dir: Path, peer_id: str = "mictlanx-peer-0", *extra: str,
               env: Optional[dict[str, str]] = None, port: int = 0, fsync: bool = False) -> ServerProcess:
    """A storage peer on a free loopback port with its data in ``data_dir`` (``--no-fsync`` unless ``fsync``)."""
    args = ["--peer-id", peer_id, "--data-dir", str(data_dir), *([] if fsync else ["--no-fsync"]), *extra]
    return ServerProcess("peer", args, env).start(port)


def start_router(data_dir: Path, peers: Sequence[tuple[str, str]] = (), *extra: str,
                 router_id: str = "mictlanx-router-0", env: Optional[dict[str, str]] = None,
                 port: int = 0) -> ServerProcess:
    """A router subprocess over ``peers`` (``(peer_id, url)`` pairs) with its data in ``data_dir``."""
    args = ["--router-id", router_id, "--data-dir", str(data_dir), *extra]
    if peers:
        specs = ",".join(f"{pid}@{url.split('://', 1)[1]}" for pid, url in peers)
        args += ["--peers", f"mictlanx://{specs}/?protocol=http"]
    return ServerProcess("router", args, env).start(port)


def set_faults(url: str, rules: Sequence[dict], token: Optional[str] = None) -> list[dict]:
    """Replace the fault rules of a server started with ``--faults`` (``POST /_faults``); the new rules."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    resp = requests.post(f"{url}/_faults", json=list(rules), headers=headers, timeout=10)
    resp.raise_for_status()
    return list(resp.json()["faults"])


def read_lines_until(proc: subprocess.Popen[str], prefix: str, timeout: float = 30.0) -> list[str]:
    """stdout lines of ``proc`` up to one starting with ``prefix``, bounded in time by a reader
    thread; raises ``AssertionError`` with what was seen if that line never comes."""
    import queue
    import threading

    assert proc.stdout is not None
    stdout = proc.stdout
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        for line in stdout:
            lines.put(line.rstrip("\n"))
            if line.startswith(prefix):
                return
        lines.put("<EOF>")

    threading.Thread(target=pump, daemon=True).start()
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=max(0.01, deadline - time.monotonic()))
        except queue.Empty:
            break
        seen.append(line)
        if line.startswith(prefix):
            return seen
        if line == "<EOF>":
            break
    raise AssertionError(f"no line starting with {prefix!r}: {seen!r}")
