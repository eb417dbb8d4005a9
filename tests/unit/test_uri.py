import pytest

from mictlanx_sync.protocol import uri
from mictlanx_sync.protocol.errors import ValidationError


def test_spec_example_with_path_prefix_and_https_port():
    (e,) = uri.parse("mictlanx://r0@h.ex/pfx:8443/?protocol=https")
    assert (e.id, e.host, e.port, e.path_prefix, e.protocol) == ("r0", "h.ex", 8443, "/pfx", "https")
    assert e.base_url == "https://h.ex:8443/pfx"


def test_defaults_differ_for_routers_and_peers():
    assert uri.parse("mictlanx://h:1")[0].protocol == "https"
    assert uri.parse("mictlanx://h:1", default_protocol="http")[0].protocol == "http"


def test_several_specs_whitespace_and_empty_ones():
    items = uri.parse("mictlanx:// r0@10.0.0.5:60666 ,, r1@10.0.0.6:60666/?protocol=http")
    assert [(e.id, e.host, e.port) for e in items] == [("r0", "10.0.0.5", 60666), ("r1", "10.0.0.6", 60666)]


def test_ipv6_forms_and_empty_id():
    (bare,) = uri.parse("mictlanx://2001:db8::1:60666?protocol=http")
    assert (bare.host, bare.port, bare.id) == ("2001:db8::1", 60666, None)
    (bracketed,) = uri.parse("mictlanx://@[::1]:5?protocol=http")
    assert bracketed.host == "::1" and bracketed.id is None
    assert bracketed.base_url == "http://[::1]:5"


def test_query_options_first_value_wins_unknown_ignored():
    (e,) = uri.parse("mictlanx://h:1?protocol=http&protocol=https&api_version=4&http2=YES&x=1")
    assert e.protocol == "http" and e.api_version == 4 and e.http2 is True
    assert uri.parse("mictlanx://h:1?http2=nope")[0].http2 is False


@pytest.mark.parametrize(
    "bad",
    ["http://h:1", "mictlanx://", "mictlanx://,", "mictlanx://?protocol=http", "mictlanx://h", "mictlanx://h:0",
     "mictlanx://h:70000", "mictlanx://h:1/x", "mictlanx://r@h:1?protocol=ftp", "mictlanx://h:1?api_version=x",
     "mictlanx://h:1?api_version=3", "mictlanx://../x@h:1", "MICTLANX://h:1", "mictlanx://:80"],
)
def test_failures_raise_validation_error_a_value_error(bad):
    with pytest.raises(ValueError):
        uri.parse(bad)
    with pytest.raises(ValidationError):
        uri.parse(bad)


@pytest.mark.parametrize(
    "protocol,port,expected",
    [("http", 80, "http://h"), ("https", 443, "https://h"), ("https", 80, "https://h:80"), ("http", 0, "http://h"),
     ("http", -1, "http://h"), ("https", 8443, "https://h:8443")],
)
def test_base_url_port_rules(protocol, port, expected):
    assert uri.base_url(protocol, "h", port) == expected


@pytest.mark.parametrize(
    "text",
    ["mictlanx://mictlanx-router-0@localhost:60666/?protocol=http&api_version=4&http2=0",
     "mictlanx://r0@10.0.0.5:60666,r1@10.0.0.6:60666/?protocol=http",
     "mictlanx://r0@h.ex/pfx:8443,[::1]:9/?protocol=https&http2=1"],
)
def test_build_then_parse_round_trips(text):
    items = uri.parse(text)
    built = uri.build(items)
    assert uri.parse(built) == items
    assert built.endswith(f"/?protocol={items[0].protocol}&api_version=4&http2={int(items[0].http2)}")


def test_build_rejects_empty_and_mixed_lists():
    with pytest.raises(ValidationError):
        uri.build([])
    a = uri.Endpoint("a", "h", 1, protocol="http")
    b = uri.Endpoint("b", "h", 2, protocol="https")
    with pytest.raises(ValidationError):
        uri.build([a, b])
    assert uri.build([a]) == "mictlanx://a@h:1/?protocol=http&api_version=4&http2=0"


@pytest.mark.parametrize("bad", ["mictlanx://h:8_0", "mictlanx://h:+80", "mictlanx://h:٨٠", "mictlanx://[::1]x:80"])
def test_ports_are_plain_digits(bad):
    with pytest.raises(ValidationError):
        uri.parse(bad)


def test_bracketed_ipv6_with_a_path_prefix_round_trips():
    endpoint = uri.Endpoint(None, "::1", 8080, "/pfx")
    assert uri.parse(uri.build([endpoint]))[0] == endpoint
    assert endpoint.base_url == "http://[::1]:8080/pfx"
