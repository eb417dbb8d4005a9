"""``ResultBuffers``: a ``get`` result buffer is handed out again only once nothing refers to it.

The one property that matters is safety: a buffer the caller can still see (through the
``GetResponse`` view, a slice of it, ``data.obj``, a ``memoryview`` or ``ctypes`` object
made from it) must never be given to another read, from any thread. Then the bounds:
capacity, sizes kept, idle expiry, ``clear``.
"""

from __future__ import annotations

import ctypes
import threading
import time

import pytest

from mictlanx_sync.client import result_buffers
from mictlanx_sync.client.result_buffers import RECYCLE_FROM, ResultBuffers

pytestmark = pytest.mark.skipif(result_buffers._UNREFERENCED is None, reason="reuse needs CPython's refcounts")

SIZE = RECYCLE_FROM


def handed_out(pool: ResultBuffers, size: int = SIZE) -> bytearray:
    """What ``get`` does: take a buffer, fill it, keep it in the pool, give it to the caller."""
    buffer = pool.take(size)
    buffer[:] = b"\x01" * size  # get overwrites every byte
    pool.keep(buffer)
    return buffer


def test_a_buffer_is_reused_once_its_last_reference_is_gone() -> None:
    pool = ResultBuffers(4 * SIZE)
    first = handed_out(pool)
    address = id(first)
    del first
    again = pool.take(SIZE)
    assert id(again) == address


@pytest.mark.parametrize("hold", ["view", "readonly slice", "obj", "ctypes", "nested view"])
def test_a_buffer_still_visible_to_the_caller_is_never_reused(hold: str) -> None:
    pool = ResultBuffers(4 * SIZE)
    buffer = handed_out(pool)
    view = memoryview(buffer).toreadonly()  # what GetResponse.data is
    del buffer
    keep: object
    if hold == "view":
        keep = view
    elif hold == "readonly slice":
        keep = view[5:10]
    elif hold == "obj":
        keep = view.obj
    elif hold == "ctypes":
        keep = (ctypes.c_char * SIZE).from_buffer(view.obj)  # type: ignore[arg-type]
    else:
        keep = memoryview(view)[1:]
    del view
    other = pool.take(SIZE)
    other[:] = b"\x02" * SIZE  # another read lands in what it was given
    seen = keep[0]  # type: ignore[index]
    assert seen in (1, b"\x01"), f"the caller's {hold} changed: the buffer was handed out again"
    del keep
    assert id(pool.take(SIZE)) != id(other)


def test_only_buffers_of_the_same_size_are_reused() -> None:
    pool = ResultBuffers(8 * SIZE)
    buffer = handed_out(pool, SIZE + 1)
    address = id(buffer)
    del buffer
    assert id(pool.take(SIZE)) != address
    assert id(pool.take(SIZE + 1)) == address


def test_small_and_oversized_buffers_are_never_kept() -> None:
    pool = ResultBuffers(2 * SIZE)
    pool.keep(bytearray(RECYCLE_FROM - 1))
    pool.keep(bytearray(2 * SIZE + 1))
    assert pool.held_bytes == 0
    off = ResultBuffers(0)
    off.keep(bytearray(SIZE))
    assert off.held_bytes == 0


def test_the_pool_forgets_its_oldest_buffers_beyond_its_capacity() -> None:
    pool = ResultBuffers(2 * SIZE)
    buffers = [handed_out(pool) for _ in range(3)]
    assert pool.held_bytes == 2 * SIZE
    oldest, *newer = (id(b) for b in buffers)
    del buffers
    taken = {id(pool.take(SIZE)) for _ in range(2)}
    assert oldest not in taken and taken == set(newer)


def test_idle_buffers_are_released_by_the_timer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(result_buffers, "IDLE_SECONDS", 0.2)
    pool = ResultBuffers(4 * SIZE)
    handed_out(pool)
    assert pool.held_bytes == SIZE
    deadline = time.monotonic() + 5
    while pool.held_bytes and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pool.held_bytes == 0


def test_clear_forgets_everything_and_stops_the_timer() -> None:
    pool = ResultBuffers(4 * SIZE)
    buffer = handed_out(pool)
    address = id(buffer)
    del buffer
    pool.clear()
    assert pool.held_bytes == 0 and pool._timer is None
    assert pool._held == [] and address not in pool._kept_at


def test_no_two_threads_ever_hold_one_buffer() -> None:
    """Each thread stamps the buffer it holds with its own byte and checks the stamp is intact
    after yielding to the others: a buffer handed to two holders at once would be overwritten."""
    pool = ResultBuffers(6 * SIZE)
    failures: list[str] = []
    start = threading.Barrier(6)

    def worker(stamp: int) -> None:
        start.wait()
        for _ in range(40):
            buffer = pool.take(SIZE)  # as get does: take, fill, keep, hand the view out
            buffer[0] = buffer[SIZE - 1] = stamp
            pool.keep(buffer)
            view = memoryview(buffer).toreadonly()
            del buffer
            time.sleep(0.0005)  # the caller uses its result while the other threads read
            if view[0] != stamp or view[SIZE - 1] != stamp:
                failures.append(f"thread {stamp} saw its buffer overwritten")
            del view

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not failures
    assert pool.held_bytes <= 6 * SIZE
