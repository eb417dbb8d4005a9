"""Issue 14 point 7: the per-call ``progress=`` callback and the progress bars.

The callback receives the bytes moved since its previous call; on success the calls add
up to the object's size, whatever the call (put, put_file, put_chunks, get, get_to_file),
even when the object was already there. Calls come from transfer threads, one at a time
per call; bars use decimal units, know the total of a read, and stay hidden for tiny
objects.
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path
from typing import Iterator

import pytest

from mictlanx_sync import Client
from mictlanx_sync.client.progress import BAR_MIN_BYTES, Reporter
from mictlanx_sync.client.sinks import Progress
from mictlanx_sync.server.local import LocalVSS

pytestmark = pytest.mark.timeout(120)


class Recorder:
    """A deliberately lock-free callback: counts calls, bytes, threads, and overlapping calls."""

    def __init__(self) -> None:
        self.calls: list[int] = []
        self.threads: set[int] = set()
        self.overlaps = 0
        self._inside = threading.Lock()

    def __call__(self, n: int) -> None:
        if not self._inside.acquire(blocking=False):
            self.overlaps += 1  # another thread is inside this call's callback
            return
        try:
            self.calls.append(n)
            self.threads.add(threading.get_ident())
        finally:
            self._inside.release()

    @property
    def total(self) -> int:
        return sum(self.calls)


@pytest.fixture()
def client(vss: LocalVSS, tmp_path: Path) -> Iterator[Client]:
    with Client(vss.uri, capacity_storage="0", progress=False, max_workers=8) as instance:
        yield instance


def test_put_and_get_callbacks_add_up_to_the_size(client: Client, bucket: str) -> None:
    data = os.urandom(3_000_000)  # 12 chunks of 256 kB
    put = Recorder()
    assert client.put(bucket, "obj", data, chunk_size="256kB", progress=put).unwrap() is True
    assert put.total == len(data) and len(put.calls) >= 12 and all(n > 0 for n in put.calls)
    assert put.overlaps == 0
    assert threading.get_ident() not in put.threads or len(put.threads) > 1  # transfer threads

    got = Recorder()
    response = client.get(bucket, "obj", progress=got, chunk_size="64kB").unwrap()
    assert response.data.tobytes() == data
    # One call per step of the read loop, which takes at least 1 MiB (ReadOptions.read_piece):
    # here one per 256 kB chunk.
    assert got.total == len(data) and len(got.calls) >= 12 and got.overlaps == 0

    again = Recorder()  # the same content again uploads nothing: one call of the whole size
    assert client.put(bucket, "obj", data, chunk_size="256kB", progress=again).unwrap() is True
    assert again.calls == [len(data)]


def test_put_file_put_chunks_and_get_to_file(client: Client, bucket: str, tmp_path: Path) -> None:
    source = tmp_path / "in.bin"
    source.write_bytes(os.urandom(2_100_000))
    sent = Recorder()
    client.put_file(bucket, "file", source, chunk_size="500kB", progress=sent).unwrap()
    assert sent.total == source.stat().st_size and len(sent.calls) == 5

    pieces = [os.urandom(300_000), os.urandom(300_000), os.urandom(7)]
    chunked = Recorder()
    client.put_chunks(bucket, "pieces", pieces, progress=chunked).unwrap()
    assert chunked.total == 600_007

    received = Recorder()
    path = client.get_to_file(bucket, "file", output_path=str(tmp_path / "out"), progress=received).unwrap()
    assert Path(path).read_bytes() == source.read_bytes()
    assert received.total == source.stat().st_size and received.overlaps == 0

    kept = Recorder()  # a same-content file is kept: still reported, in one call
    assert client.get_to_file(bucket, "file", output_path=str(tmp_path / "out"), progress=kept).unwrap() == path
    assert kept.calls == [source.stat().st_size]


def test_sum_is_exact_under_concurrency(client: Client, bucket: str) -> None:
    """8 threads at once, each with its own lock-free callback, plus one shared locked total."""
    shared_lock = threading.Lock()
    shared = [0]

    def shared_callback(n: int) -> None:
        with shared_lock:
            shared[0] += n

    sizes = [1_000_000 + 37 * i for i in range(8)]
    recorders = [Recorder() for _ in sizes]
    failures: list[str] = []
    barrier = threading.Barrier(len(sizes))

    def worker(i: int) -> None:
        data = os.urandom(sizes[i])
        try:
            barrier.wait(timeout=30)
            client.put(bucket, f"k{i}", data, chunk_size="128kB", progress=recorders[i]).unwrap()
            got = client.get(bucket, f"k{i}", progress=shared_callback).unwrap()
            if hashlib.sha256(got.data).digest() != hashlib.sha256(data).digest():
                failures.append(f"k{i}: wrong data")
        except Exception as exc:  # reported below
            failures.append(f"k{i}: {exc!r}")

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(sizes))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(90)
    assert failures == []
    assert [r.total for r in recorders] == sizes
    assert all(r.overlaps == 0 for r in recorders)  # one call at a time within a call
    assert shared[0] == sum(sizes)


def test_a_failing_callback_does_not_fail_the_transfer(client: Client, bucket: str,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    calls = []

    def broken(n: int) -> None:
        calls.append(n)
        raise RuntimeError("boom")

    data = os.urandom(1_000_000)
    assert client.put(bucket, "broken", data, chunk_size="100kB", progress=broken).unwrap() is True
    assert len(calls) == 1  # not called again after it raised
    assert "progress callback raised" in caplog.text
    assert client.get(bucket, "broken").unwrap().data.tobytes() == data


def test_progress_must_be_callable(client: Client, bucket: str) -> None:
    with pytest.raises(TypeError, match="progress must be a callable"):
        client.put(bucket, "k", b"x", progress=True)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="progress must be a callable"):
        client.get(bucket, "k", progress=42)  # type: ignore[arg-type]


def test_bars_decimal_with_total_and_none_for_tiny_objects(vss: LocalVSS, bucket: str,
                                                           capsys: pytest.CaptureFixture[str],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Automatic bars (``progress=None``, as in a notebook or on a terminal)."""
    import sys

    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    with Client(vss.uri, capacity_storage="0") as shown:
        shown.put(bucket, "tiny", b"hello, MictlanX").unwrap()
        shown.get(bucket, "tiny").unwrap()
        assert capsys.readouterr().err == ""  # no bar for 15 bytes

        data = os.urandom(2_000_000)
        shown.put(bucket, "big", data, chunk_size="500kB").unwrap()
        put_err = capsys.readouterr().err
        shown.get(bucket, "big").unwrap()
        get_err = capsys.readouterr().err
    for err, name in ((put_err, "put big"), (get_err, "get big")):
        # total and percentage known from the start (a read learns the size from R3), ETA in
        # [elapsed<remaining]; decimal units: 2,000,000 bytes is 2.00 MB, not 1.91 MiB
        assert f"\r{name}:" in err and "%|" in err and "/2.00M [" in err and "B/s]" in err
    with Client(vss.uri, capacity_storage="0", progress=True) as forced:  # True: every transfer
        forced.get(bucket, "tiny").unwrap()
    assert "get tiny:" in capsys.readouterr().err


# --- the pieces on their own ----------------------------------------------------------------------
def test_reporter_clamps_to_the_size_and_tops_up() -> None:
    seen: list[int] = []
    reporter = Reporter(seen.append, False, "get k")
    reporter(10)  # before the size is known: passed on
    reporter.begin(100)
    reporter(80)
    reporter(30)  # a retry reported twice: only what is left of the size
    assert seen == [10, 80, 10] and reporter.sent == 100
    reporter.finish()
    assert sum(seen) == 100

    short: list[int] = []
    partial = Reporter(short.append, False, "put k", total=50)
    partial(20)
    partial.finish()  # e.g. a put superseded by a newer write: still adds up
    assert short == [20, 30]
    assert BAR_MIN_BYTES == 1_000_000


def test_sink_reports_a_refilled_chunk_once() -> None:
    class Null:
        def region(self, position: int, size: int) -> memoryview:
            return memoryview(bytearray(size))

        def commit(self, position: int, size: int) -> None:
            pass

        def data(self) -> None:
            return None

    seen: list[int] = []
    sink = Progress(Null(), seen.append)  # type: ignore[arg-type]
    sink.commit(0, 10)
    sink.commit(10, 10)
    sink.commit(0, 10)  # a retry refills from position 0
    sink.commit(10, 10)
    sink.commit(20, 5)
    assert seen == [10, 10, 5]


def test_cli_get_bar_has_total_percentage_and_eta(vss: LocalVSS, bucket: str, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from mictlanx_sync.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    source = tmp_path / "photo.jpg"
    source.write_bytes(os.urandom(300_000))  # under BAR_MIN_BYTES: the CLI bars it anyway
    assert main(["put", str(source), "-b", bucket, "--uri", vss.uri]) == 0
    capsys.readouterr()
    assert main(["get", "photo.jpg", "-b", bucket, "-o", str(tmp_path / "copy.jpg"), "--uri", vss.uri]) == 0
    err = capsys.readouterr().err
    assert "get photo.jpg:" in err and "%|" in err and "/300k [" in err  # total in kB (10^3)
    assert "<" in err and "B/s]" in err  # [elapsed<remaining (ETA), rate]
    assert (tmp_path / "copy.jpg").read_bytes() == source.read_bytes()
