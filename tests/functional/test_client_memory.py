"""Acceptance 7: memory stays bounded for a 1 GB object (client-api §8.2 "Memory").

``put_file`` of a 1 GB sparse file with ``chunk_size="8MB"`` and ``max_workers=4``, then
``get_to_file`` of it (without and with the chunk cache), and ``put_chunks`` of a lazy
``Chunks.from_file``, each keep the client's peak RSS growth under 150 MB. The client
runs in a subprocess that reads its own ``/proc/self/status`` (VmHWM, the peak, reset
through ``/proc/self/clear_refs`` before each operation); the servers run as separate
processes (``LocalVSS(mode="process")``), so they are not counted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from mictlanx_sync import LocalVSS

pytestmark = [pytest.mark.timeout(200), pytest.mark.slow,
              pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")]

SIZE = 1 << 30
LIMIT = 150 * 1024 * 1024

_SCRIPT = textwrap.dedent("""
    import json, os, sys, time
    from mictlanx_sync import Client
    from mictlanx_sync.models import Chunks

    def status():
        fields = {}
        with open("/proc/self/status") as handle:
            for line in handle:
                name, _, value = line.partition(":")
                if name in ("VmHWM", "VmRSS"):
                    fields[name] = int(value.split()[0]) * 1024
        return fields

    def reset_peak():
        try:
            with open("/proc/self/clear_refs", "w") as handle:
                handle.write("5")
            return True
        except OSError:
            return False

    uri, cache, source, out_dir = sys.argv[1:5]
    report = {}
    with Client(uri, cache_path=cache, capacity_storage="0", max_workers=4, progress=False) as client, \
            Client(uri, cache_path=cache, max_workers=4, progress=False) as cached:
        for name, run in (
            ("put_file", lambda: client.put_file("mem", "big", source, chunk_size="8MB", rf=1)),
            ("get_to_file", lambda: client.get_to_file("mem", "big", out_dir, fullname="big.out")),
            ("put_chunks_from_file", lambda: client.put_chunks("mem", "big2", Chunks.from_file(source, "8MB", "big2"))),
            ("get_to_file_cached", lambda: cached.get_to_file("mem", "big", out_dir, fullname="big.cached")),
        ):
            reset = reset_peak()
            before = status()
            started = time.monotonic()
            result = run()
            after = status()
            report[name] = {"ok": result.is_ok, "error": None if result.is_ok else repr(result.unwrap_err()),
                            "rss_before": before["VmRSS"], "hwm_before": before["VmHWM"],
                            "hwm_after": after["VmHWM"], "rss_after": after["VmRSS"], "reset": reset,
                            "seconds": time.monotonic() - started}
    print(json.dumps(report), flush=True)
""")


def test_one_gigabyte_put_file_and_get_to_file_in_bounded_memory(tmp_path: Path) -> None:
    source = tmp_path / "sparse.bin"
    with open(source, "wb") as handle:
        handle.truncate(SIZE)
    out_dir = tmp_path / "out"
    started = time.monotonic()
    with LocalVSS(peers=1, routers=1, mode="process", data_dir=tmp_path / "vss") as vss:
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
        proc = subprocess.run([sys.executable, "-c", _SCRIPT, vss.uri, str(tmp_path / "cache"), str(source),
                               str(out_dir)], capture_output=True, text=True, timeout=150, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    print({k: ((v["hwm_after"] - v["rss_before"]) >> 20, round(v["seconds"], 1)) for k, v in report.items()})
    for name in ("put_file", "get_to_file", "put_chunks_from_file", "get_to_file_cached"):
        entry = report[name]
        assert entry["ok"], entry
        # Peak during the operation minus resident size before it.
        base = entry["rss_before"] if entry["reset"] else entry["hwm_before"]
        growth = entry["hwm_after"] - base
        assert growth < LIMIT, (name, growth / 2**20, entry)
    for result in (out_dir / "big.out", out_dir / "big.cached"):
        assert result.stat().st_size == SIZE
        with open(result, "rb") as handle:  # spot checks: the object is all zeros
            for offset in (0, SIZE // 2, SIZE - 4096):
                handle.seek(offset)
                assert handle.read(4096) == bytes(4096)
        result.unlink()
    assert time.monotonic() - started < 150
