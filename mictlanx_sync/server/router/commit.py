"""R26: commit a version of a ball on every peer (docs/consistency.md §2.4).

``POST /api/v4/buckets/{bucket_id}/{ball_id}/commit`` with ``Mictlanx-Version: V`` fans P24
out to every available peer (not only the replicas: a peer may hold staged chunks of V from
an earlier placement) and records a pending commit for every unavailable one, replayed when
it returns exactly like a pending delete. Committing is idempotent, so a replay is harmless.

A peer that was available but could not answer (a transport error, a 5xx, no answer in
time: it crashed or froze during the fan-out) may hold staged chunks of V as well, and the
answer acknowledges V all the same, so it is owed the commit just like an unavailable one
(``fanout.owed_peers``): without the record its staged copies would never become current and
an acknowledged rf=2 write could be left with one current copy.
"""

from __future__ import annotations

from ..asgi.errors import HTTPError, bad_request
from ..asgi.request import Request
from ..asgi.responses import Response, json_response
from .fanout import Reply, fan_out, no_peer_available, owed_peers
from .pending import commit_record
from .state import RouterState
from .versions import VERSION_HEADER, header_version


def _count(reply: Reply, field: str) -> int:
    value = reply.body.get(field) if isinstance(reply.body, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


async def commit_ball(st: RouterState, req: Request, bucket_id: str, ball_id: str) -> Response:
    version = header_version(req.headers)
    if version is None:
        raise bad_request(f"{VERSION_HEADER} is required: the version to commit", bucket_id=bucket_id,
                          ball_id=ball_id)
    st.clock.observe(version)
    entries = st.registry.available()
    if not entries:
        raise no_peer_available(unavailable_peers=st.registry.unavailable_ids(), bucket_id=bucket_id,
                                ball_id=ball_id)
    replies = await fan_out(st.registry, entries, "POST", f"/buckets/{bucket_id}/{ball_id}/commit",
                            headers={VERSION_HEADER: version})
    done = [r for r in replies if r.status == 200]
    failed = sorted(r.peer_id for r in replies if r.status != 200)
    if not done:
        raise HTTPError(502, 504, "commit failed on every available peer", failed_peers=failed,
                        errors=[r.describe() for r in replies], bucket_id=bucket_id, ball_id=ball_id,
                        version=version)
    pending_peers = owed_peers(st.registry, replies)
    st.pending.add([commit_record(p, bucket_id, ball_id, version) for p in pending_peers])
    return json_response({"bucket_id": bucket_id, "ball_id": ball_id, "version": version,
                          "committed": sum(_count(r, "committed") for r in done),
                          "superseded": sum(_count(r, "superseded") for r in done),
                          "failed_peers": failed, "pending_peers": pending_peers},
                         headers={VERSION_HEADER: version})
