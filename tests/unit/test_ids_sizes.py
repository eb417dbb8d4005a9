import pytest

from mictlanx_sync.protocol import ids, sizes
from mictlanx_sync.protocol.errors import ValidationError


@pytest.mark.parametrize("value", ["a", "A1", "b-1_x.y", "0" * 255, "x.y.z", "a-", "a_"])
def test_valid_ids(value):
    assert ids.validate_id(value) == value


@pytest.mark.parametrize(
    "value", ["", "../x", "..", "a..b", "a/b", "a\\b", "a b", "a@b", "a|b", "a\x00b", "-a", "_a", ".a",
              "0" * 256, "é", 5, None, "a\n"],
)
def test_invalid_ids(value):
    assert not ids.is_valid_id(value)
    with pytest.raises(ValidationError):
        ids.validate_id(value)


def test_metadata_is_reserved_for_keys_only():
    assert ids.validate_id("metadata") == "metadata"
    with pytest.raises(ValidationError, match="reserved"):
        ids.validate_key("metadata")


@pytest.mark.parametrize("value,ok", [("abc_-1", True), ("a" * 128, True), ("a" * 129, False), ("a.b", False),
                                      ("metadata", False), ("", False)])
def test_task_ids(value, ok):
    assert ids.is_valid_task_id(value) is ok


def test_generated_task_ids():
    generated = {ids.new_task_id() for _ in range(200)}
    assert len(generated) == 200
    assert all(len(t) == 21 and t.isalnum() and ids.is_valid_task_id(t) for t in generated)


@pytest.mark.parametrize(
    "text,expected",
    [("1MB", 10**6), ("1mb", 10**6), ("1m", 10**6), ("256kb", 256_000), ("1MiB", 2**20), ("1KiB", 1024),
     ("42", 42), ("1.5GB", 1_500_000_000), ("10 MB", 10**7), ("0", 0), (7, 7), ("2GiB", 2 * 2**30)],
)
def test_parse_size(text, expected):
    assert sizes.parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "abc", "1XB", "-1", "1 2", True, -5, 1.5, None])
def test_parse_size_errors(text):
    with pytest.raises(ValidationError):
        sizes.parse_size(text)


@pytest.mark.parametrize("n,text", [(1000000, "1 MB"), (40000, "40 KB"), (0, "0 bytes"), (1, "1 byte"),
                                    (999, "999 bytes"), (1500, "1.5 KB"), (1234567, "1.23 MB")])
def test_format_size(n, text):
    assert sizes.format_size(n) == text


def test_clamp():
    assert sizes.clamp(1, 4, 8) == 4 and sizes.clamp(9, 4, 8) == 8 and sizes.clamp(5, 4, 8) == 5


@pytest.mark.parametrize("text", ["9" * 400 + ".5", "9" * 5000, "1" * 31, "1.0000000000000000000000000000001"])
def test_parse_size_of_absurd_numbers_is_a_validation_error(text):
    # Used to leak OverflowError / ValueError, which the servers turned into a 500.
    with pytest.raises(ValidationError):
        sizes.parse_size(text)


def test_server_paging_values_are_clamped_not_overflowing():
    from mictlanx_sync.server.asgi.errors import HTTPError
    from mictlanx_sync.server.request_values import MAX_QUERY_INT, parse_int_query

    assert parse_int_query("99999999999999999999999", "start", 0, minimum=0) == MAX_QUERY_INT
    assert parse_int_query(" 7 ", "end", 0) == 7
    for bad in ("1e3", "0x10", "8_0", "1" * 41, "½"):
        with pytest.raises(HTTPError):
            parse_int_query(bad, "start", 0)
