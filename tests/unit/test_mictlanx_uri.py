"""``MictlanXURI`` (protocol §6): every example and failing case, defaults, build round trips."""

from __future__ import annotations

import pytest

from mictlanx_sync.protocol.errors import ValidationError
from mictlanx_sync.protocol.mictlanx_uri import MictlanXURI
from mictlanx_sync.protocol.peer import Peer
from mictlanx_sync.protocol.router import Router


def close_all(items: list) -> None:
    for item in items:
        item.close()


def test_spec_example_https_keeps_port_and_prefix() -> None:
    routers = MictlanXURI.parse("mictlanx://r0@h.ex/pfx:8443/?protocol=https")
    assert len(routers) == 1
    r = routers[0]
    assert (r.router_id, r.ip_addr, r.port, r.path_prefix, r.protocol) == ("r0", "h.ex", 8443, "/pfx", "https")
    assert r.base_url() == "https://h.ex:8443/pfx"
    close_all(routers)


def test_spec_build_examples() -> None:
    uri = "mictlanx://mictlanx-router-0@localhost:60666/?protocol=http&api_version=4&http2=0"
    routers = MictlanXURI.parse(uri)
    assert [(r.router_id, r.ip_addr, r.port, r.protocol, r.http2, r.api_version) for r in routers] == [
        ("mictlanx-router-0", "localhost", 60666, "http", False, 4)]
    assert MictlanXURI.build(routers) == uri
    two = MictlanXURI.parse("mictlanx://r0@10.0.0.5:60666,r1@10.0.0.6:60666/?protocol=http")
    assert [r.base_url() for r in two] == ["http://10.0.0.5:60666", "http://10.0.0.6:60666"]
    assert MictlanXURI.build(two) == \
        "mictlanx://r0@10.0.0.5:60666,r1@10.0.0.6:60666/?protocol=http&api_version=4&http2=0"
    close_all(routers + two)


def test_defaults_https_for_routers_http_for_peers() -> None:
    routers = MictlanXURI.parse("mictlanx://r0@h:60666")
    peers = MictlanXURI.parse_peers("mictlanx://p0@h:25000")
    assert routers[0].protocol == "https" and routers[0].base_url() == "https://h:60666"
    assert isinstance(peers[0], Peer) and peers[0].protocol == "http" and peers[0].peer_id == "p0"
    assert MictlanXURI.parse_peers("mictlanx://p0@h:1/?protocol=https")[0].protocol == "https"
    close_all(routers + peers)


def test_specs_whitespace_ids_ipv6_and_query() -> None:
    routers = MictlanXURI.parse(
        "mictlanx:// r0@a:1 ,, /@b:2/ ,[::1]:3,2001:db8::1:60666/?http2=YES&api_version=4&protocol=http&x=1"
        "&protocol=https")
    assert [(r.router_id, r.ip_addr, r.port) for r in routers] == [
        ("r0", "a", 1), (None, "b", 2), (None, "::1", 3), (None, "2001:db8::1", 60666)]
    assert all(r.protocol == "http" and r.http2 is True for r in routers)
    assert routers[2].base_url() == "http://[::1]:3"
    rebuilt = MictlanXURI.build(routers)
    assert rebuilt == "mictlanx://r0@a:1,b:2,[::1]:3,[2001:db8::1]:60666/?protocol=http&api_version=4&http2=1"
    again = MictlanXURI.parse(rebuilt)
    assert again == routers  # building then parsing returns equal objects
    assert [r.router_id for r in again] == [r.router_id for r in routers]
    close_all(routers + again)


def test_default_ports_are_omitted_in_base_urls() -> None:
    routers = MictlanXURI.parse("mictlanx://a:443,b:80/?protocol=https")
    assert [r.base_url() for r in routers] == ["https://a", "https://b:80"]
    close_all(routers)


@pytest.mark.parametrize("uri", [
    "http://h:1",                        # scheme
    "MICTLANX://h:1",                    # the scheme is case-sensitive
    "mictlanx://", "mictlanx://,", "mictlanx://?protocol=http", "mictlanx:// , /",  # no spec
    "mictlanx://h",                      # no port
    "mictlanx://h:0", "mictlanx://h:70000", "mictlanx://h:1/x", "mictlanx://h:-1", "mictlanx://h:",  # bad port
    "mictlanx://r@h:1?protocol=ftp",     # protocol
    "mictlanx://h:1?api_version=x", "mictlanx://h:1?api_version=3",  # api_version
    "mictlanx://bad id@h:1", "mictlanx://a/b@h:1", "mictlanx://..@h:1",  # invalid ids
    "mictlanx://:1",                     # empty host
])
@pytest.mark.parametrize("method", ["parse", "parse_peers"])
def test_failing_uris(uri: str, method: str) -> None:
    with pytest.raises(ValidationError):
        getattr(MictlanXURI, method)(uri)
    with pytest.raises(ValueError):  # ValidationError is a ValueError
        getattr(MictlanXURI, method)(uri)


def test_build_errors() -> None:
    with pytest.raises(ValidationError):
        MictlanXURI.build([])
    a = Router("a", "h", 1, "http")
    b = Router("b", "h", 2, "https")
    c = Router("c", "h", 3, "http", http2=True)
    for mixed in ([a, b], [a, c]):
        with pytest.raises(ValidationError):
            MictlanXURI.build(mixed)
    with pytest.raises(TypeError):
        MictlanXURI.build(["mictlanx://h:1"])  # type: ignore[list-item]
    close_all([a, b, c])


def test_build_peers_and_prefixes() -> None:
    peers = [Peer("p0", "h", 25000), Peer(None, "h2", 25001, path_prefix="/x")]
    uri = MictlanXURI.build(peers)
    assert uri == "mictlanx://p0@h:25000,h2/x:25001/?protocol=http&api_version=4&http2=0"
    parsed = MictlanXURI.parse_peers(uri)
    assert parsed == peers and parsed[1].base_url() == "http://h2:25001/x"
    close_all(peers + parsed)


def test_router_from_str_and_from_router() -> None:
    r = Router.from_str("r0:10.0.0.1:60666").unwrap()
    assert (r.router_id, r.ip_addr, r.port, r.protocol) == ("r0", "10.0.0.1", 60666, "http")
    s = Router.from_str("r1:api.example.mx:-1").unwrap()
    assert s.protocol == "https" and s.base_url() == "https://api.example.mx"
    for bad in ("r0:h", "r0:h:x", "r0::1", "a:b:c:d", "r0:h:70000"):
        assert isinstance(Router.from_str(bad).unwrap_err(), ValidationError), bad
    copy = Router.from_router(Router("r2", "h", 1, "https", path_prefix="/p", timeout=(1, 2), pool_maxsize=20),
                              http2=True)
    assert copy.to_dict() == {"router_id": "r2", "ip_addr": "h", "port": 1, "protocol": "https", "http2": True,
                              "api_version": 4, "path_prefix": "/p"}
    assert copy.timeout == (1.0, 2.0) and copy.pool_maxsize == 20
    assert str(r) == "Router(id=r0, ip_addr=10.0.0.1, port=60666)"
    assert Router.empty().port == -1
    close_all([r, s, copy])
