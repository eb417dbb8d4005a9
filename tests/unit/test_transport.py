"""The pure parts of the transport: body pieces, multipart framing, timeouts, headers, retries."""

from __future__ import annotations

import io
import ssl
from email.parser import BytesParser
from email.policy import HTTP

import pytest

from mictlanx_sync.protocol import transport
from mictlanx_sync.protocol.bodies import PIECE_SIZE, SizedBody, body_length, iter_pieces, multipart_body, stream_body
from mictlanx_sync.protocol.errors import (
    ConnectFailedError,
    NotFoundError,
    ResponseFormatError,
    UnknownError,
    ValidationError,
)
from mictlanx_sync.protocol.policies import is_retryable
from mictlanx_sync.protocol.result import Err, Ok
from mictlanx_sync.protocol.retrying import retry_with_upstream_options
from mictlanx_sync.protocol.service import copy_headers
from mictlanx_sync.protocol.timeouts import resolve_timeout
from mictlanx_sync.protocol.transport import Transport

MIB = PIECE_SIZE


def joined(pieces) -> bytes:
    return b"".join(bytes(p) for p in pieces)


@pytest.mark.parametrize("n", [0, 1, MIB - 1, MIB, MIB + 1, 3 * MIB])
def test_iter_pieces_bytes(n: int) -> None:
    data = b"x" * n
    pieces = list(iter_pieces(data))
    assert all(len(p) <= MIB for p in pieces)
    assert all(isinstance(p, memoryview) for p in pieces)
    assert joined(pieces) == data
    assert len(pieces) == -(-n // MIB)


def test_iter_pieces_is_zero_copy() -> None:
    data = bytearray(b"abc")
    piece = next(iter_pieces(data))
    data[0] = ord("z")
    assert bytes(piece) == b"zbc"


def test_iter_pieces_file_reads_one_mib_at_a_time() -> None:
    reads: list[int] = []

    class Spy(io.BytesIO):
        def read(self, size: int | None = -1) -> bytes:
            reads.append(size if size is not None else -1)
            return super().read(size)

    data = b"y" * (2 * MIB + 5)
    assert joined(iter_pieces(Spy(data))) == data
    assert set(reads) == {MIB}


def test_iter_pieces_iterable_reslices_large_items_and_skips_empty() -> None:
    items = [b"", b"a" * (MIB + 2), memoryview(b"bc"), bytearray(b"d")]
    pieces = list(iter_pieces(items))
    assert [len(p) for p in pieces] == [MIB, 2, 2, 1]
    assert joined(pieces) == b"a" * (MIB + 2) + b"bcd"


@pytest.mark.parametrize("body", ["text", ["a", "b"], [1, 2], io.StringIO("text")])
def test_iter_pieces_rejects_text(body: object) -> None:
    with pytest.raises(TypeError):
        list(iter_pieces(body))  # type: ignore[arg-type]


@pytest.mark.parametrize("body", ["text", 42, None, 1.5])
def test_wrong_body_types_raise_type_error(body: object) -> None:
    with pytest.raises(TypeError):
        stream_body(body)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        multipart_body(body)  # type: ignore[arg-type]


def test_body_length(tmp_path) -> None:
    assert body_length(b"abc") == 3
    assert body_length(memoryview(b"abcd")[1:]) == 3
    assert body_length(iter([b"a"])) is None
    stream = io.BytesIO(b"abcdef")
    stream.read(2)
    assert body_length(stream) == 4
    path = tmp_path / "f"
    path.write_bytes(b"12345")
    with open(path, "rb") as fh:
        fh.read(1)
        assert body_length(fh) == 4


def test_stream_body_sized_and_chunked() -> None:
    sized = stream_body(b"abc")
    assert isinstance(sized, SizedBody) and len(sized) == 3 and joined(sized) == b"abc"
    unsized = stream_body(iter([b"a", b"b"]))
    assert not isinstance(unsized, SizedBody) and joined(unsized) == b"ab"
    assert stream_body(b"") == b"" and stream_body(io.BytesIO()) == b""
    lying = stream_body(iter([b"abcd"]), length=2)
    with pytest.raises(ValidationError):
        joined(lying)
    short = stream_body(iter([b"a"]), length=2)
    with pytest.raises(ValidationError):
        joined(short)


def parse_multipart(ctype: str, body: bytes):
    message = BytesParser(policy=HTTP).parsebytes(f"Content-Type: {ctype}\r\n\r\n".encode() + body)
    return list(message.iter_parts())


@pytest.mark.parametrize("payload", [b"", b"hello", b"\r\n--not-a-boundary\r\n", b"z" * (2 * MIB + 3)])
def test_multipart_framing(payload: bytes) -> None:
    ctype, data = multipart_body(payload, field="data", filename="k_0", content_type="text/plain")
    assert isinstance(data, SizedBody)
    body = joined(data)
    assert len(data) == len(body)
    parts = parse_multipart(ctype, body)
    assert len(parts) == 1
    part = parts[0]
    assert part.get_param("name", header="content-disposition") == "data"
    assert part.get_filename() == "k_0"
    assert part.get_content_type() == "text/plain"
    assert part.get_payload(decode=True) == payload


def test_multipart_exact_bytes_and_streaming() -> None:
    ctype, data = multipart_body(iter([b"ab", b"c"]), boundary="BND")
    assert ctype == "multipart/form-data; boundary=BND"
    assert not isinstance(data, SizedBody)  # unknown length: chunked
    pieces = list(data)
    assert pieces[0].startswith(b"--BND\r\nContent-Disposition: form-data; name=\"data\"; filename=\"data\"\r\n")
    assert [bytes(p) for p in pieces[1:-1]] == [b"ab", b"c"]  # the payload is never joined
    assert pieces[-1] == b"\r\n--BND--\r\n"


def test_multipart_quotes_names_and_random_boundaries() -> None:
    c1, _ = multipart_body(b"", filename='a"b\r\n')
    c2, d2 = multipart_body(b"", filename='a"b\r\n')
    assert c1 != c2
    assert b'filename="a%22b"' in joined(d2)


def test_resolve_timeout() -> None:
    assert resolve_timeout(None, (5, 120)) == (5, 120)
    assert resolve_timeout(30, (5, 120)) == (5, 30.0)
    assert resolve_timeout((1, 2), (5, 120)) == (1.0, 2.0)
    with pytest.raises(ValidationError):
        resolve_timeout(0, (5, 120))
    with pytest.raises(TypeError):
        resolve_timeout("10", (5, 120))  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        resolve_timeout(True, (5, 120))
    # One normaliser for Peer, Router and Client (issue 15): connecting never waits longer than
    # the call's read timeout, and every number is finite.
    assert resolve_timeout(2, (5, 120)) == (2.0, 2.0)
    assert resolve_timeout([1, 2], (5, 120)) == (1.0, 2.0)
    with pytest.raises(ValidationError):
        resolve_timeout(float("inf"), (5, 120))
    with pytest.raises(ValidationError):
        resolve_timeout((1, -2), (5, 120))


def test_copy_headers_never_mutates() -> None:
    original = {"A": "1"}
    copied = copy_headers(original, Update="1", Task_Id=None)
    assert copied == {"A": "1", "Update": "1"} and original == {"A": "1"}
    assert copy_headers(None) == {}
    with pytest.raises(TypeError):
        copy_headers([("a", "b")])  # type: ignore[arg-type]


def test_is_retryable() -> None:
    assert is_retryable(ConnectFailedError())
    assert is_retryable(UnknownError("x", 503))
    assert is_retryable(UnknownError("x", 429))
    assert not is_retryable(NotFoundError())
    assert not is_retryable(ResponseFormatError())
    assert not is_retryable(ValidationError())


def call_with_retry(fn, *, tries, delay, max_delay=0):
    return retry_with_upstream_options(fn, tries=tries, delay=delay, max_delay=max_delay, jitter=False, backoff=1,
                                       logger=None, describe="test")


def test_upstream_style_retry_counts_total_attempts_and_returns_last() -> None:
    calls: list[int] = []

    def failing():
        calls.append(1)
        return Err(ConnectFailedError(f"attempt {len(calls)}"))

    result = call_with_retry(failing, tries=3, delay=0, max_delay=0)
    assert len(calls) == 3 and result.unwrap_err().message == "attempt 3"

    calls.clear()
    assert call_with_retry(lambda: (calls.append(1), Err(NotFoundError()))[1], tries=5, delay=0).is_err
    assert len(calls) == 1  # a 4xx is never retried

    outcomes = iter([Err(ConnectFailedError()), Ok(7)])
    assert call_with_retry(lambda: next(outcomes), tries=5, delay=0) == Ok(7)


def test_session_configuration() -> None:
    t = Transport("http://127.0.0.1:1", timeout=(2, 9), pool_maxsize=3)
    try:
        s = t.session()
        assert s.trust_env is False
        assert t.session() is s
        jar = s.cookies
        assert jar._policy.set_ok(None, None) is False  # type: ignore[attr-defined]
        adapter = s.get_adapter("http://127.0.0.1:1/")
        assert isinstance(adapter, transport.BoundedPoolAdapter)
        assert adapter.max_retries.total == 0
        assert adapter._pool_block is True and adapter._pool_maxsize == 3
        pool = adapter.poolmanager.connection_from_url("http://127.0.0.1:1/")
        assert pool.block is True and type(pool).__name__.startswith("Bounded")
        assert t.timeout == (2.0, 9.0)
    finally:
        t.close()


def test_verify_forms() -> None:
    ctx = ssl.create_default_context()
    t = Transport("https://127.0.0.1:1", verify=ctx)
    assert t.verify is True and t.ssl_context is ctx
    t.close()
    with pytest.raises(TypeError):
        Transport("http://h:1", verify=3)
    with pytest.raises(TypeError):
        Transport("http://h:1").request("GET", "/", verify=ctx)
