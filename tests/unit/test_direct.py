"""Pure parts of direct reads: read grants, advertised URLs, the unreachable-peer memory."""

from __future__ import annotations

import time
from urllib.parse import parse_qs

from mictlanx_sync.protocol.direct import GRANT_PARAM, Unreachable, is_base_url
from mictlanx_sync.server.grants import GRANT_TTL, grant_query, granted_version

PATH = "/api/v4/buckets/b/k_0"


def test_a_grant_opens_its_path_at_its_version_until_it_expires() -> None:
    now = 1_800_000_000.0
    query = grant_query("tok", PATH, "v1", now=now).encode()
    assert granted_version("tok", "GET", PATH, query, now=now) == "v1"
    assert granted_version("tok", "HEAD", PATH, query, now=now + GRANT_TTL) == "v1"
    assert granted_version("tok", "GET", PATH, query, now=now + GRANT_TTL + 1) is None  # expired
    assert granted_version("tok", "POST", PATH, query, now=now) is None
    assert granted_version("tok", "DELETE", PATH, query, now=now) is None
    assert granted_version("other", "GET", PATH, query, now=now) is None
    assert granted_version("tok", "GET", "/api/v4/buckets/b/k_1", query, now=now) is None
    assert granted_version("tok", "GET", PATH, query.replace(b"v1", b"v2"), now=now) is None
    assert granted_version("tok", "GET", PATH, b"", now=now) is None
    assert granted_version("tok", "GET", PATH, query + b"&" + query, now=now) is None  # repeated fields
    # a far-future expiry is not one of ours, even correctly signed
    assert granted_version("tok", "GET", PATH, grant_query("tok", PATH, "v1", now=now + 3600).encode(),
                           now=now) is None
    assert len(parse_qs(query.decode())[GRANT_PARAM][0]) == 64
    assert granted_version("tok", "GET", PATH, grant_query("tok", PATH, "", now=now).encode(), now=now) == ""


def test_advertised_urls_are_bare_http_base_urls() -> None:
    for good in ("http://10.0.0.5:25000", "https://peer.example", "http://[::1]:80", "http://h:1/"):
        assert is_base_url(good), good
    for bad in ("", "ftp://h", "http://h:1/api", "http://h?x=1", "http://u:p@h", "http://h: 1", "h:1",
                "http://h:99999", None, 5):
        assert not is_base_url(bad), bad


def test_unreachable_peers_are_remembered_for_a_while_and_bounded() -> None:
    memory = Unreachable(quiet=0.2, limit=3)
    memory.mark("a:1")
    assert "a:1" in memory and "b:1" not in memory
    time.sleep(0.25)
    assert "a:1" not in memory
    for name in ("a", "b", "c", "d"):
        memory.mark(f"{name}:1")
    assert "d:1" in memory and sum(f"{n}:1" in memory for n in "abc") == 2
