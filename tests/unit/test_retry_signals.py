"""The client's internal retry signals state their answers; no HTTP status is made up (issue 15).

A bad copy of a chunk and a lost write group end an attempt so that the one retry layer tries
again. Each keeps the status and code of what happened and says what the layer reads:
``retryable``, ``router_fault`` (the router's breaker counts it) and ``retry_after``.
"""

from __future__ import annotations

from mictlanx_sync.client.breaker import counts_as_failure
from mictlanx_sync.client.chunk_fetch import SHORT_BODY, _BadCopy
from mictlanx_sync.client.chunk_upload import _GroupLost
from mictlanx_sync.protocol.errors import IntegrityError, NotFoundError, UpstreamProtocolError
from mictlanx_sync.protocol.policies import is_retryable, retry_after_seconds


def test_a_corrupt_copy_is_retried_at_once_without_blaming_the_router() -> None:
    corrupt = IntegrityError("checksum mismatch", detail={"peer_id": "p0"})
    signal = _BadCopy(corrupt, immediate=True)
    assert (signal.status_code, signal.code) == (corrupt.status_code, corrupt.code)  # its own, not a fake 503
    assert is_retryable(signal) and retry_after_seconds(signal) == 0.0 and not counts_as_failure(signal)
    later = _BadCopy(corrupt, immediate=False)  # no fresh replica: the backoff applies
    assert is_retryable(later) and retry_after_seconds(later) is None


def test_a_copy_cut_in_transport_counts_against_the_router_that_served_it() -> None:
    short = UpstreamProtocolError("short body", detail={SHORT_BODY: {"received": 1, "expected": 2}})
    signal = _BadCopy(short, immediate=True)
    assert (signal.status_code, signal.code) == (1005, 1005)
    assert is_retryable(signal) and counts_as_failure(signal) and retry_after_seconds(signal) == 0.0


def test_a_lost_write_group_restarts_the_upload_and_the_router_stays_healthy() -> None:
    lost = NotFoundError("no such group", bucket_id="b", key="k_1")
    signal = _GroupLost(lost)
    assert (signal.status_code, signal.code) == (404, 404)
    assert is_retryable(signal) and not counts_as_failure(signal) and retry_after_seconds(signal) is None
    assert signal.cause is lost
