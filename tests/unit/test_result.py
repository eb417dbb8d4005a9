import pickle

import pytest

from mictlanx_sync.protocol.errors import NotFoundError
from mictlanx_sync.protocol.result import Err, Ok, Result


def test_ok_properties_and_combinators():
    r: Result[int, Exception] = Ok(2)
    assert r.is_ok and not r.is_err and bool(r)
    assert r.unwrap() == 2
    assert r.unwrap_or(9) == 2
    assert r.unwrap_or_else(lambda e: 9) == 2
    assert r.expect("boom") == 2
    assert r.map(lambda v: v * 10) == Ok(20)
    assert r.map_err(lambda e: "x") == Ok(2)
    assert r.flatmap(lambda v: Ok(v + 1)) == Ok(3)
    assert r.and_then(lambda v: Err("no")) == Err("no")
    assert r.ok() == 2 and r.err() is None
    with pytest.raises(ValueError):
        r.unwrap_err()
    with pytest.raises(ValueError, match="wanted an error"):
        r.expect_err("wanted an error")


def test_err_unwrap_raises_the_error_itself():
    error = NotFoundError("gone", bucket_id="b", key="k")
    r = Err(error)
    assert r.is_err and not r.is_ok and not bool(r)
    with pytest.raises(NotFoundError) as info:
        r.unwrap()
    assert info.value is error
    assert r.unwrap_err() is error and r.err() is error and r.ok() is None
    assert r.unwrap_or(5) == 5
    assert r.unwrap_or_else(lambda e: e.key) == "k"
    assert r.map(lambda v: v + 1).unwrap_err() is error
    assert r.map_err(lambda e: e.bucket_id) == Err("b")
    assert r.flatmap(lambda v: Ok(v)).err() is error


def test_expect_prefixes_the_message_and_keeps_the_type():
    with pytest.raises(NotFoundError) as info:
        Err(NotFoundError("gone")).expect("reading b/k")
    assert info.value.message == "reading b/k: gone"
    assert info.value.status_code == 404


def test_err_of_a_non_exception_raises_value_error():
    with pytest.raises(ValueError, match="plain"):
        Err("plain").unwrap()
    with pytest.raises(ValueError, match="ctx"):
        Err("plain").expect("ctx")


def test_results_are_frozen_and_picklable():
    r = Ok([1, 2])
    with pytest.raises(AttributeError):
        r.value = 3  # type: ignore[misc]
    assert pickle.loads(pickle.dumps(r)) == r
    e = pickle.loads(pickle.dumps(Err(NotFoundError("x", key="k"))))
    assert isinstance(e.error, NotFoundError) and e.error.key == "k"


def test_pattern_matching():
    def describe(r: Result[int, Exception]) -> str:
        match r:
            case Ok(v):
                return f"ok {v}"
            case Err(e):
                return f"err {e.__class__.__name__}"
        return "unreachable"

    assert describe(Ok(1)) == "ok 1"
    assert describe(Err(NotFoundError())) == "err NotFoundError"
