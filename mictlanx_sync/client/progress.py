"""Progress bars (client-api §8.4): ``tqdm.auto``, shown on a TTY or in Jupyter unless switched off."""

from __future__ import annotations

import contextlib
import sys
from typing import Callable, Iterator, Optional

__all__ = ["progress_bar", "should_show"]


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


@contextlib.contextmanager
def progress_bar(setting: Optional[bool], total: Optional[int], description: str,
                 unit: str) -> Iterator[Optional[Callable[[int], None]]]:
    """Yields ``advance(n)`` for a bar, or ``None`` when bars are off. Thread-safe (tqdm locks)."""
    if not should_show(setting):
        yield None
        return
    from tqdm.auto import tqdm

    scale = unit == "B"
    bar = tqdm(total=total, desc=description, unit=unit, unit_scale=scale, unit_divisor=1024 if scale else 1000,
               leave=False)
    try:
        yield bar.update
    finally:
        bar.close()
