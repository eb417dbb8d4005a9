"""Progress of one transfer (client-api §8.4): the caller's ``progress=`` callback and a bar.

``Client(progress=None)`` shows ``tqdm`` bars on a TTY or in Jupyter (``True``/``False``
force them); each ``put``/``get`` call may also pass ``progress=callback``, called with the
number of bytes moved since the previous call, as boto3's ``Callback=`` and minio's
``progress=`` do. Both are fed by one :class:`Reporter` per call, which:

- is called from the client's transfer threads, not the caller's thread; it serialises
  the calls (never two at once), so a callback needs no lock of its own, and it should be
  quick (a counter, a queue ``put``, a websocket send);
- never reports more than the object's size: a chunk sent or read again after a retry is
  not counted twice, so on success the calls add up to exactly the object's size (an
  object already stored or already downloaded is reported in one call);
- survives a failing callback: the exception is logged once and the callback is not
  called again; the transfer goes on.

Bars use decimal units (kB, MB = 10^6 bytes, as every size in this project), show total,
percentage and ETA once the size is known (after the first metadata request of a read).
With ``progress=None`` (automatic) they are not shown for objects under
:data:`BAR_MIN_BYTES`; ``progress=True`` shows them for every transfer. In Jupyter a widget bar needs
``ipywidgets``; without it the text bar is used, with no ``IProgress`` warning.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
from typing import Any, Callable, Iterator, Optional

__all__ = ["ProgressCallback", "Reporter", "reporting", "progress_bar", "should_show", "announce_total",
           "BAR_MIN_BYTES"]

#: What a ``progress=`` callback looks like: called with the bytes moved since the last call.
ProgressCallback = Callable[[int], None]

#: With automatic bars (``Client(progress=None)``), transfers smaller than this (1 MB) show
#: none: it would flash and vanish (a notebook's 15-byte put).
BAR_MIN_BYTES = 1_000_000

_logger = logging.getLogger("mictlanx_sync.client.progress")


def should_show(setting: Optional[bool]) -> bool:
    """``True``/``False`` force it; ``None`` shows bars on a TTY stderr or under IPython."""
    if setting is not None:
        return bool(setting)
    if "IPython" in sys.modules:
        try:
            from IPython import get_ipython  # type: ignore[import-not-found]
        except ImportError:
            return False
        return get_ipython() is not None
    stream = sys.stderr
    return bool(stream is not None and hasattr(stream, "isatty") and stream.isatty())


def _bar_class() -> Any:
    """``tqdm.notebook.tqdm`` in a Jupyter kernel with ``ipywidgets``, else the text ``tqdm``.

    Chosen here rather than by ``tqdm.auto``, which warns ``IProgress not found`` in a
    kernel without ``ipywidgets`` (and ``TqdmExperimentalWarning`` with it)."""
    if "ipykernel.zmqshell" in sys.modules:
        try:
            import ipywidgets  # type: ignore[import-not-found,import-untyped]  # noqa: F401
            from tqdm.notebook import tqdm as notebook_tqdm
        except ImportError:
            pass
        else:
            return notebook_tqdm
    from tqdm.std import tqdm
    return tqdm


def check_callback(progress: Any) -> Optional[ProgressCallback]:
    """``None`` or a callable; anything else is a ``TypeError`` (a programming error)."""
    if progress is not None and not callable(progress):
        raise TypeError(f"progress must be a callable taking the number of bytes, not {type(progress).__name__}")
    return progress


class Reporter:
    """One call's progress: forwards byte counts to the callback and the bar (thread-safe).

    Called as ``reporter(n)`` from transfer threads; :meth:`begin` gives the object's size
    once known; :meth:`finish` (on success) reports what retries or a skipped transfer left
    unreported, so the calls add up to the size. Counts past the size are dropped.
    """

    def __init__(self, callback: Optional[ProgressCallback], show_bar: bool, description: str,
                 total: Optional[int] = None, min_bar_bytes: int = BAR_MIN_BYTES) -> None:
        self._callback = callback
        self._show_bar = show_bar
        self._min_bar_bytes = min_bar_bytes
        self._description = description
        self._lock = threading.Lock()
        self._bar: Any = None
        self.total: Optional[int] = None
        self.sent = 0
        if total is not None:
            self.begin(total)

    def begin(self, total: int) -> None:
        """The object's size. Called again (a read that starts over), it keeps what was sent."""
        with self._lock:
            self.total = max(int(total), 0)
            if self._bar is None and self._show_bar and self.total >= self._min_bar_bytes:
                self._bar = _bar_class()(total=self.total, initial=min(self.sent, self.total),
                                         desc=self._description, unit="B", unit_scale=True, unit_divisor=1000,
                                         leave=False, dynamic_ncols=True)

    def __call__(self, n: int) -> None:
        with self._lock:
            if self.total is not None:
                n = min(n, self.total - self.sent)
            if n <= 0:
                return
            self.sent += n
            self._emit(n)

    def finish(self) -> None:
        """The transfer succeeded: report the rest of the size, if any is unreported."""
        with self._lock:
            if self.total is not None and self.sent < self.total:
                n = self.total - self.sent
                self.sent = self.total
                self._emit(n)

    def close(self) -> None:
        with self._lock:
            if self._bar is not None:
                self._bar.close()
                self._bar = None

    def _emit(self, n: int) -> None:  # under the lock
        if self._bar is not None:
            self._bar.update(n)
        callback = self._callback
        if callback is None:
            return
        try:
            callback(n)
        except Exception:  # a broken callback must not fail (or retry) the transfer
            self._callback = None
            _logger.warning("%s: the progress callback raised; it will not be called again", self._description,
                            exc_info=True)


@contextlib.contextmanager
def reporting(setting: Optional[bool], callback: Optional[ProgressCallback], description: str,
              total: Optional[int] = None) -> Iterator[Optional[Reporter]]:
    """A :class:`Reporter` for one call, or ``None`` when there is neither a callback nor a bar.

    ``setting`` is ``Client(progress=...)``: ``True`` bars every transfer, ``None`` bars
    those of :data:`BAR_MIN_BYTES` or more on a TTY or in Jupyter, ``False`` none."""
    show = should_show(setting)
    if callback is None and not show:
        yield None
        return
    reporter = Reporter(callback, show, description, total, 0 if setting is True else BAR_MIN_BYTES)
    try:
        yield reporter
    finally:
        reporter.close()


def announce_total(progress: Optional[Callable[[int], None]], total: int) -> None:
    """Tell a :class:`Reporter` the object's size (a read learns it from its first request)."""
    begin = getattr(progress, "begin", None)
    if begin is not None:
        begin(total)


@contextlib.contextmanager
def progress_bar(setting: Optional[bool], total: Optional[int], description: str,
                 unit: str) -> Iterator[Optional[Callable[[int], None]]]:
    """Yields ``advance(n)`` for a bar, or ``None`` when bars are off (no callback)."""
    with reporting(setting, None, description, total) as reporter:
        yield reporter
