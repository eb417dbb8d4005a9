"""Property tests (hypothesis) of the pure modules: URI, sizes, ids, chunk layout.

Each property is checked against the spec text (protocol §2.2, §2.4, §5, §6), not against
the implementation: references below are re-derived from the spec by hand.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
import re
import string

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from mictlanx_sync.client.sources import BytesSource
from mictlanx_sync.protocol.errors import ValidationError
from mictlanx_sync.protocol.ids import is_valid_id, is_valid_task_id, validate_id, validate_key
from mictlanx_sync.protocol.models import Chunks
from mictlanx_sync.protocol.sizes import format_size, parse_size
from mictlanx_sync.protocol.uri import Endpoint, build, parse

from .conftest import pick

SETTINGS = settings(max_examples=pick(400, 5000), deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow])

# --- §2.2 identifiers ----------------------------------------------------------------------
SPEC_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$")
SPEC_TASK_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
ID_CHARS = string.ascii_letters + string.digits + "._-"


def spec_id(value: str) -> bool:
    """§2.2 as written: the regex (``$`` must not accept a trailing newline) and no ``..``."""
    return SPEC_ID.match(value) is not None and "\n" not in value and ".." not in value


def spec_id_by_hand(value: str) -> bool:
    """The same rule without regexes: 1-255 chars, first alnum, the rest alnum or ``._-``."""
    ascii_alnum = string.ascii_letters + string.digits
    return (1 <= len(value) <= 255 and value[0] in ascii_alnum and all(c in ID_CHARS for c in value)
            and ".." not in value)


ids_like = st.one_of(
    st.text(alphabet=ID_CHARS, min_size=0, max_size=300),
    st.text(alphabet=ID_CHARS + "/\\ @|\x00\n\t%:é٣Ａ", min_size=0, max_size=40),
    st.text(max_size=40),
    st.sampled_from(["..", "a..b", "a.", ".a", "-a", "_a", "a\n", "\na", "a" * 255, "a" * 256, "metadata",
                     "%2e%2e", "a%2Fb", "a\x00b", "٣", "Ａ", "ß", "İ", "a b"]),
)
valid_ids = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_-]{0,30}", fullmatch=True)


@SETTINGS
@given(ids_like)
def test_id_validator_agrees_with_the_spec_regex(value: str) -> None:
    expected = spec_id(value)
    assert expected == spec_id_by_hand(value)
    assert is_valid_id(value) is expected
    if expected:
        assert validate_id(value) == value  # never rewritten
        assert (value == "metadata") == (not _accepts(validate_key, value))
    else:
        with pytest.raises(ValidationError):
            validate_id(value)


@SETTINGS
@given(st.one_of(ids_like, st.text(alphabet=string.ascii_letters + "_-", min_size=127, max_size=130)))
def test_task_id_validator_agrees_with_the_spec_regex(value: str) -> None:
    expected = SPEC_TASK_ID.match(value) is not None and "\n" not in value and value != "metadata"
    assert is_valid_task_id(value) is expected


def _accepts(fn, value: str) -> bool:
    try:
        fn(value)
    except ValidationError:
        return False
    return True


# --- §6 URI ------------------------------------------------------------------------------------
label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)
hostnames = st.builds(lambda labels: ".".join(labels), st.lists(label, min_size=1, max_size=4))
ipv4 = st.builds(lambda n: str(ipaddress.IPv4Address(n)), st.integers(0, 2**32 - 1))
ipv6 = st.builds(lambda n: ipaddress.IPv6Address(n).compressed, st.integers(0, 2**128 - 1))
prefixes = st.one_of(st.just(""), st.builds(lambda segs: "/" + "/".join(segs),
                                             st.lists(st.from_regex(r"[A-Za-z0-9._-]{1,8}", fullmatch=True),
                                                      min_size=1, max_size=3)))


@st.composite
def endpoint_lists(draw: st.DrawFn) -> list[Endpoint]:
    """1-4 endpoints of the §6.1 grammar sharing protocol, api_version and http2."""
    protocol = draw(st.sampled_from(["http", "https"]))
    http2 = draw(st.booleans())
    items = []
    for _ in range(draw(st.integers(1, 4))):
        ident = draw(st.one_of(st.none(), valid_ids))
        if draw(st.booleans()):
            host, prefix = draw(ipv6), ""  # the grammar has no path after an IPv6 literal
        else:
            host, prefix = draw(st.one_of(hostnames, ipv4)), draw(prefixes)
        port = draw(st.integers(1, 65535))
        items.append(Endpoint(ident, host, port, prefix, protocol, 4, http2))
    return items


@SETTINGS
@given(endpoint_lists())
def test_uri_build_then_parse_round_trips(endpoints: list[Endpoint]) -> None:
    uri = build(endpoints)
    assert uri.startswith("mictlanx://")
    assert parse(uri) == endpoints
    assert parse(uri, default_protocol="http") == endpoints  # build writes the protocol


uri_noise = st.text(alphabet="mictlanx:/@,?&=[]. -_%#0123456789abcdefhpsv\x00\n\t:é", max_size=60)


@SETTINGS
@given(st.one_of(st.text(max_size=80), st.builds(lambda s: "mictlanx://" + s, st.text(max_size=80)),
                 st.builds(lambda s: "mictlanx://" + s, uri_noise)))
@example("mictlanx://h:1?api_version=" + "9" * 5000)
@example("mictlanx://h:" + "9" * 5000)
@example("mictlanx://h:1?protocol=http&protocol=ftp")
def test_uri_parse_raises_only_value_error(text: str) -> None:
    for default in ("https", "http"):
        try:
            endpoints = parse(text, default_protocol=default)
        except ValueError:
            continue
        assert endpoints, text
        for e in endpoints:
            assert 1 <= e.port <= 65535 and e.host and e.protocol in ("http", "https") and e.api_version == 4


@pytest.mark.parametrize("uri", ["http://h:1", "mictlanx://", "mictlanx://,", "mictlanx://?protocol=http",
                                 "mictlanx://h", "mictlanx://h:0", "mictlanx://h:70000", "mictlanx://h:1/x",
                                 "mictlanx://r@h:1?protocol=ftp", "mictlanx://h:1?api_version=x"])
def test_uri_spec_failing_examples(uri: str) -> None:
    with pytest.raises(ValueError):
        parse(uri)


# --- §2.4 sizes --------------------------------------------------------------------------------
DECIMAL = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9,
           "t": 10**12, "tb": 10**12}
BINARY = {"kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
units = st.sampled_from(sorted({**DECIMAL, **BINARY}))


def _case(draw: st.DrawFn, unit: str) -> str:
    return "".join(c.upper() if draw(st.booleans()) else c for c in unit)


@SETTINGS
@given(st.integers(0, 10**15), units, st.data())
def test_parse_size_of_integer_with_unit(n: int, unit: str, data: st.DataObject) -> None:
    spaced = data.draw(st.sampled_from(["", " "]))
    text = f"{n}{spaced}{_case(data.draw, unit)}"
    assert parse_size(text) == n * {**DECIMAL, **BINARY}[unit]
    assert parse_size(f"  {text}  ") == parse_size(text)
    assert parse_size(n) == n


@SETTINGS
@given(st.integers(0, 10**16))
def test_parse_of_format_size_is_close(n: int) -> None:
    text = format_size(n)
    back = parse_size(text)
    if n < 1000:
        assert text == ("1 byte" if n == 1 else f"{n} bytes")
        assert back == n
    else:  # two decimals of a decimal unit: within 0.5 % (+1 byte of float truncation)
        assert abs(back - n) <= n * 0.005 + 1, (n, text, back)


@SETTINGS
@given(st.integers(0, 10**15), st.integers(0, 10**15))
def test_parse_of_format_size_is_monotonic(a: int, b: int) -> None:
    lo, hi = sorted((a, b))
    assert parse_size(format_size(lo)) <= parse_size(format_size(hi))


size_noise = st.one_of(
    st.text(max_size=30),
    st.from_regex(r"\s*[0-9]{1,30}(\.[0-9]{0,6})?\s*[A-Za-z]{0,5}\s*", fullmatch=True),
    st.builds(lambda d, u: d + u, st.text(alphabet="0123456789.", min_size=300, max_size=6000),
              st.sampled_from(["", "kb", "MiB", " b"])),
)


@SETTINGS
@given(size_noise)
@example("9" * 400 + ".5")            # float('9…9.5') is inf
@example("9" * 400 + ".5kb")
@example("9" * 5000)                  # beyond int()'s 4300-digit limit
@example("1" * 4301 + "kb")
def test_parse_size_raises_only_validation_error(text: str) -> None:
    try:
        value = parse_size(text)
    except ValidationError:
        return
    except Exception as exc:  # the spec allows ValidationError only
        pytest.fail(f"parse_size({text[:40]!r}… len={len(text)}) raised {type(exc).__name__}: {exc}")
    assert isinstance(value, int) and value >= 0


# --- §5 chunk layout ---------------------------------------------------------------------------
@SETTINGS
@given(st.binary(max_size=5000), st.integers(1, 6000))
@example(b"", 1)
@example(b"x", 1)
@example(b"abcd", 2)
def test_chunks_from_bytes_split_strictly(data: bytes, chunk_size: int) -> None:
    chunks = Chunks.from_bytes(data, chunk_size, "g").to_list()
    n = max(1, math.ceil(len(data) / chunk_size))
    assert len(chunks) == n == len(Chunks.from_bytes(data, chunk_size, "g"))
    assert b"".join(bytes(c.data) for c in chunks) == data
    assert [c.index for c in chunks] == list(range(n))
    assert [c.chunk_id for c in chunks] == [f"g_{i}" for i in range(n)]
    assert all(c.size == chunk_size for c in chunks[:-1])
    assert 0 < chunks[-1].size <= chunk_size or data == b""
    for i, c in enumerate(chunks):
        assert bytes(c.data) == data[i * chunk_size:(i + 1) * chunk_size]
        assert c.checksum == hashlib.sha256(data[i * chunk_size:(i + 1) * chunk_size]).hexdigest()


@SETTINGS
@given(st.binary(max_size=5000), st.integers(1, 6000))
def test_bytes_source_split_strictly(data: bytes, chunk_size: int) -> None:
    source = BytesSource(data, chunk_size)
    n = max(1, math.ceil(len(data) / chunk_size))
    assert source.num_chunks == n and source.size == len(data)
    assert source.full_checksum == hashlib.sha256(data).hexdigest()
    pieces = [bytes(source.chunk(i)) for i in range(n)]
    assert b"".join(pieces) == data
    assert all(len(p) == chunk_size for p in pieces[:-1])
    assert 0 < len(pieces[-1]) <= chunk_size or data == b""


@SETTINGS
@given(st.integers(0, 10**7), st.sampled_from(["1", "1kb", "256kb", "1KiB", "1MB", "1MiB"]))
def test_chunks_from_bytes_with_size_strings(n: int, size: str) -> None:
    c = parse_size(size)
    data = memoryview(bytearray(n))
    chunks = Chunks.from_bytes(data, size, "g")
    assert len(chunks) == max(1, math.ceil(n / c)) and chunks.total_size == n
    if n // c <= 5000:  # the full split only where it is cheap
        sizes = [ch.size for ch in chunks]
        assert sum(sizes) == n and all(s == c for s in sizes[:-1])
