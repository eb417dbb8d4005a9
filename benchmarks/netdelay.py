"""A userspace TCP relay that delays every byte: a network round trip on loopback, for benchmarks.

``python -m benchmarks.netdelay --target 127.0.0.1:60666 --delay-ms 2.5`` listens on a free
loopback port (printed as ``listening 127.0.0.1:PORT``), and relays every connection to the
target, each byte arriving ``--delay-ms`` (the one-way delay *d*) after the relay received it,
in both directions: a link with a round-trip time of 2 *d*. It runs until SIGTERM or SIGINT (or
the end of its standard input, when that is a pipe), then prints ``stats {json}``: connections,
bytes each way, its own CPU seconds; SIGUSR1 prints the counts so far the same way. It exists because this machine's
kernel has no netem (``tc qdisc ... netem delay`` is not possible here).

What is emulated, exactly:

- **Data, both ways**: each chunk read from one side is written to the other *d* after it was
  read; order is kept. The TLS handshake is relayed like any other bytes, so its round trips
  are delayed as on a real link.
- **The TCP handshake (SYN, SYN-ACK, ACK)**: the kernel completes the client's ``connect()`` to
  the relay at once, so the relay charges that round trip to the first bytes the client sends:
  they arrive 2 *d* + *d* = 3 *d* after they were read (on a link the client could only send
  them one round trip after its ``connect()``, and they would then take *d*). This is exact
  for a client that speaks first right after connecting (HTTP, TLS). Not reproduced: the time
  the client's ``connect()`` call itself blocks (here: none, the client does the work it does
  after ``connect()`` one round trip earlier: the same total), and the moment the target
  accepts: the relay connects to the target as soon as it accepts the client, 3 *d* earlier
  than a link's ACK would arrive, so that the relay's own connect (a few hundred microseconds
  of asyncio) does not delay the first bytes; the target then waits for them as it would.
- **Closing**: an end of stream (FIN) is passed on *d* after it was read, behind the data; when
  both directions have ended, both sockets are closed. A reset closes the other side *d* later.

What is **not** emulated: bandwidth (the relay adds no serialisation time), loss and
retransmission, TCP slow start and congestion windows (a flight larger than about 14 KB would
take extra round trips on a real link; a 1 KiB request, its answer and a TLS handshake with one
certificate do not), delayed ACKs and Nagle interactions (both ends set ``TCP_NODELAY``), DNS,
and the CPU a real network stack would not spend: the relay is a process of its own and uses
some CPU per chunk (``stats`` reports it). The delay is kept with ``select`` timeouts
(microsecond resolution; ``epoll`` and uvloop timers round to milliseconds), so each delivery
is late by the scheduling latency of the machine (tens of microseconds when idle, milliseconds
on a busy 2-core machine unless ``--realtime`` puts the relay under SCHED_FIFO), never early;
``stats`` gives the lateness of the deliveries (median, p90, p99, mean).

In a program: ``with Relay(("127.0.0.1", port), delay=0.0025) as relay: relay.address`` runs
the relay in a thread of this process (tests); benchmarks use the command, a process of its
own, so that the client's threads and the relay do not share one GIL.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import json
import os
import resource
import selectors
import signal
import stat
import sys
import threading
import time
from typing import Any, Optional

__all__ = ["Relay", "RelayServer", "main"]

#: bytes in flight in one direction (delayed, not yet written) above which the relay stops
#: reading that side, and below which it reads again
HIGH_WATER = 1 << 20
LOW_WATER = 1 << 18
_EOF = b""  # an end of stream, in a direction's queue


class _Direction:
    """One direction of one relayed connection: chunks scheduled ``delay`` after they were read
    (the first one ``first_extra`` later still), written to ``sink`` in order."""

    def __init__(self, link: _Link, delay: float, first_extra: float) -> None:
        self.link = link
        self.delay = delay
        self.extra = first_extra
        self.last_due = 0.0
        self.source: Optional[asyncio.Transport] = None
        self.sink: Optional[asyncio.Transport] = None
        self.waiting: list[tuple[bytes, float]] = []  # due, but the sink is not connected yet
        self.in_flight = 0
        self.paused = False
        self.sink_full = False
        self.ended = False  # the end of stream has been delivered

    def push(self, data: bytes) -> None:
        loop = self.link.loop
        due = max(loop.time() + self.delay + self.extra, self.last_due + 1e-6)  # strictly later: order kept
        self.extra = 0.0
        self.last_due = due
        self.in_flight += len(data)
        if self.in_flight > HIGH_WATER:
            self._pause()
        loop.call_at(due, self.deliver, data, due)

    def deliver(self, data: bytes, due: float) -> None:
        if self.sink is None:
            self.waiting.append((data, due))
            return
        self.link.relay.late(self.link.loop.time() - due)
        self.in_flight -= len(data)
        if not data:  # the end of stream
            self.ended = True
            self.link.ended()
            return
        self.link.relay.count(self, len(data))
        if not self.sink.is_closing():
            self.sink.write(data)
        self._maybe_resume()

    def connected(self, sink: asyncio.Transport) -> None:
        self.sink = sink
        waiting, self.waiting = self.waiting, []
        for data, due in waiting:
            self.deliver(data, due)

    def _pause(self) -> None:
        if not self.paused and self.source is not None and not self.source.is_closing():
            self.paused = True
            self.source.pause_reading()

    def _maybe_resume(self) -> None:
        if self.paused and not self.sink_full and self.in_flight < LOW_WATER and self.source is not None:
            self.paused = False
            if not self.source.is_closing():
                self.source.resume_reading()

    def sink_pause(self) -> None:
        self.sink_full = True
        self._pause()

    def sink_resume(self) -> None:
        self.sink_full = False
        self._maybe_resume()


class _Side(asyncio.Protocol):
    """One socket of a link: what it reads goes to ``outgoing``; it is the sink of ``incoming``."""

    def __init__(self, link: _Link, outgoing: _Direction, incoming: _Direction) -> None:
        self.link = link
        self.outgoing = outgoing
        self.incoming = incoming

    def data_received(self, data: bytes) -> None:
        self.outgoing.push(bytes(data))

    def eof_received(self) -> bool:
        self.outgoing.push(_EOF)
        return True  # half-open: the other direction may still carry data

    def connection_lost(self, exc: Optional[BaseException]) -> None:
        if exc is not None:  # reset: the other side is closed once the reset would have arrived
            self.link.loop.call_later(self.link.delay, self.link.close)

    def pause_writing(self) -> None:
        self.incoming.sink_pause()

    def resume_writing(self) -> None:
        self.incoming.sink_resume()


class _Link:
    """One client connection and the relay's connection to the target."""

    def __init__(self, relay: RelayServer) -> None:
        self.relay = relay
        self.loop = relay.loop
        self.delay = relay.delay
        self.up = _Direction(self, relay.delay, 2 * relay.delay)  # client -> target: + the SYN round trip
        self.down = _Direction(self, relay.delay, 0.0)  # target -> client
        self.client: Optional[asyncio.Transport] = None
        self.server: Optional[asyncio.Transport] = None
        self.closed = False

    def client_side(self) -> _Side:
        return _ClientSide(self, self.up, self.down)

    def ended(self) -> None:
        """An end of stream was delivered: pass it on, and close both once both have ended."""
        for direction, sink in ((self.up, self.server), (self.down, self.client)):
            if direction.ended and sink is not None and not sink.is_closing() and sink.can_write_eof():
                with contextlib.suppress(OSError, RuntimeError):
                    sink.write_eof()
        if self.up.ended and self.down.ended:
            self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.relay.open_links.discard(self)
        for transport in (self.client, self.server):
            if transport is not None and not transport.is_closing():
                transport.close()
        if self.server is None:
            self.up.waiting.clear()

    async def connect(self) -> None:
        if self.closed:
            return
        try:
            transport, _ = await self.loop.create_connection(
                lambda: _Side(self, self.down, self.up), self.relay.target[0], self.relay.target[1])
        except OSError:
            self.relay.failed_connects += 1
            self.loop.call_later(self.delay, self.close)  # the client sees the refusal one way later
            return
        self.server = transport  # type: ignore[assignment]
        if self.closed:
            transport.close()
            return
        self.down.source = self.server
        self.up.connected(self.server)  # type: ignore[arg-type]


class _ClientSide(_Side):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        link = self.link
        link.client = transport  # type: ignore[assignment]
        link.up.source = link.client
        link.down.sink = link.client
        link.relay.accepted += 1
        link.relay.open_links.add(link)
        # at once, not when the client's ACK would arrive (3 d later): the relay's own connect
        # (a few hundred microseconds of asyncio) must not delay the first bytes
        link.relay.spawn(link.connect)


class RelayServer:
    """The relay inside a running event loop (see the module docstring); ``await start()``."""

    def __init__(self, target: tuple[str, int], delay: float, host: str = "127.0.0.1", port: int = 0) -> None:
        if delay < 0:
            raise ValueError("delay must be >= 0")
        self.target = target
        self.delay = float(delay)
        self.host, self.port = host, port
        self.loop: asyncio.AbstractEventLoop  # set by start()
        self.tasks: set[asyncio.Task[None]] = set()
        self.server: Optional[asyncio.base_events.Server] = None
        self.open_links: set[_Link] = set()
        self.accepted = 0
        self.failed_connects = 0
        self.bytes_up = 0
        self.bytes_down = 0
        self.lateness: list[float] = []  # seconds each delivery came after its due time (the last 100,000)

    def spawn(self, coroutine_function: Any) -> None:
        task = self.loop.create_task(coroutine_function())
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def late(self, seconds: float) -> None:
        if len(self.lateness) >= 100_000:
            del self.lateness[:50_000]
        self.lateness.append(seconds)

    def count(self, direction: _Direction, size: int) -> None:
        if direction is direction.link.up:
            self.bytes_up += size
        else:
            self.bytes_down += size

    async def start(self) -> tuple[str, int]:
        self.loop = asyncio.get_running_loop()
        self.server = await self.loop.create_server(lambda: _Link(self).client_side(), self.host, self.port)
        sock = self.server.sockets[0]
        self.port = sock.getsockname()[1]
        return self.host, self.port

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
        for link in list(self.open_links):
            link.close()
        await asyncio.sleep(0)

    def stats(self) -> dict[str, Any]:
        late = sorted(self.lateness)
        at = (lambda q: round(1e3 * late[min(len(late) - 1, int(q * len(late)))], 3)) if late else (lambda q: None)
        return {"delay_s": self.delay, "rtt_ms": 2000 * self.delay, "connections": self.accepted,
                "open": len(self.open_links), "failed_connects": self.failed_connects,
                "bytes_up": self.bytes_up, "bytes_down": self.bytes_down, "deliveries": len(late),
                "late_ms": {"median": at(0.5), "p90": at(0.9), "p99": at(0.99),
                            "mean": round(1e3 * sum(late) / len(late), 3) if late else None}}


def new_loop() -> asyncio.AbstractEventLoop:
    """An asyncio loop on ``select`` (microsecond timeouts), not epoll (millisecond ones)."""
    return asyncio.SelectorEventLoop(selectors.SelectSelector())


class Relay:
    """The relay in a thread of this process: ``with Relay(target, delay) as relay:`` then
    ``relay.address`` is the ``(host, port)`` to connect to; ``relay.stats()`` counts."""

    def __init__(self, target: tuple[str, int], delay: float, host: str = "127.0.0.1") -> None:
        self._loop = new_loop()
        self._server = RelayServer(target, delay, host)
        self._thread = threading.Thread(target=self._loop.run_forever, name="netdelay", daemon=True)
        self.address: tuple[str, int] = (host, 0)

    def start(self) -> Relay:
        self._thread.start()
        self.address = asyncio.run_coroutine_threadsafe(self._server.start(), self._loop).result(10)
        return self

    def stats(self) -> dict[str, Any]:
        return asyncio.run_coroutine_threadsafe(self._stats(), self._loop).result(10)

    async def _stats(self) -> dict[str, Any]:
        return self._server.stats()

    def stop(self) -> None:
        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(self._server.stop(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        self._loop.close()

    def __enter__(self) -> Relay:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _realtime() -> str:
    """Run this process under SCHED_FIFO (a network does not wait for a CPU: without it, a busy
    2-core machine delays the relay's wake-ups by milliseconds); else nice -10; else as is."""
    with contextlib.suppress(OSError, AttributeError):
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10))
        return "SCHED_FIFO 10"
    with contextlib.suppress(OSError):
        os.nice(-10)
        return "nice -10"
    return "normal"


def _fine_timer_slack() -> None:
    """Ask Linux for a 1 µs timer slack (default 50 µs) for this process's timeouts; best effort."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(29, 1000, 0, 0, 0)  # PR_SET_TIMERSLACK, in ns


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.netdelay", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", required=True, help="HOST:PORT to relay to")
    parser.add_argument("--delay-ms", type=float, required=True, help="one-way delay in ms (RTT = 2x)")
    parser.add_argument("--listen", default="127.0.0.1:0", help="HOST:PORT to listen on (default: a free port)")
    parser.add_argument("--realtime", action="store_true",
                        help="run under SCHED_FIFO (or nice -10) when permitted, so that wake-ups are on time "
                             "on a busy machine")
    args = parser.parse_args(argv)
    scheduling = _realtime() if args.realtime else "normal"
    host, _, port = args.target.rpartition(":")
    listen_host, _, listen_port = args.listen.rpartition(":")
    _fine_timer_slack()
    loop = new_loop()
    asyncio.set_event_loop(loop)
    relay = RelayServer((host, int(port)), args.delay_ms / 1000, listen_host, int(listen_port))
    started = time.monotonic()
    address = loop.run_until_complete(relay.start())
    print(f"listening {address[0]}:{address[1]}", flush=True)
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    loop.add_signal_handler(signal.SIGUSR1, lambda: print("stats " + json.dumps(relay.stats()), flush=True))
    if stat.S_ISFIFO(os.fstat(0).st_mode):  # started with a pipe as stdin: its end stops the relay too
        loop.add_reader(0, lambda: None if os.read(0, 4096) else stop.set())
    loop.run_until_complete(stop.wait())
    loop.run_until_complete(relay.stop())
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print("stats " + json.dumps({**relay.stats(), "scheduling": scheduling,
                                 "cpu_s": round(usage.ru_utime + usage.ru_stime, 3),
                                 "seconds": round(time.monotonic() - started, 3)}), flush=True)
    loop.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
