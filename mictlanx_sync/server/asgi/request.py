"""Reading a request's JSON body (protocol §2.6: at most 1 MiB)."""

from __future__ import annotations

import json
from typing import Any, Awaitable, Callable

from .errors import HTTPError, unprocessable

MAX_JSON_BODY = 1024 * 1024


async def read_json_body(receive_body: Callable[[], Awaitable[bytes]]) -> Any:
    """Parse a JSON body of at most 1 MiB: 413/400 when larger, 422/400 when not JSON."""
    body = await receive_body()
    if len(body) > MAX_JSON_BODY:
        raise HTTPError(413, 400, "JSON body too large (limit 1 MiB)")
    try:
        return json.loads(body)
    except ValueError:
        raise unprocessable("body is not valid JSON", ["body"], "json_invalid") from None
