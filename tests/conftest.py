"""Fixtures shared by the unit and functional tests."""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable

import pytest


@pytest.fixture(params=["asyncio", "uvloop"])
def run(request: pytest.FixtureRequest) -> Callable[[Awaitable[Any]], Any]:
    """Run a coroutine on a fresh event loop of the parametrized kind (asyncio, then uvloop)."""
    if request.param == "uvloop":
        uvloop = pytest.importorskip("uvloop")
        return lambda coro: uvloop.run(coro)  # type: ignore[no-any-return]
    return lambda coro: asyncio.run(coro)  # type: ignore[arg-type]
