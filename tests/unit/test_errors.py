import json
import pickle

import pytest
import requests
from urllib3.exceptions import EmptyPoolError, NameResolutionError

from mictlanx_sync.protocol import errors as E


def all_error_classes():
    return [obj for name in E.__all__ if isinstance(obj := getattr(E, name), type) and issubclass(obj, E.MictlanXError)]


@pytest.mark.parametrize("cls", all_error_classes(), ids=lambda c: c.__name__)
def test_every_error_survives_pickle_with_all_attributes(cls):
    err = cls("msg", 418, 777, {"code": 777, "msg": "msg", "x": [1]}, bucket_id="b", key="k", router="http://r:1")
    clone = pickle.loads(pickle.dumps(err))
    assert type(clone) is cls
    for attr in ("message", "status_code", "code", "error_code", "detail", "bucket_id", "key", "router"):
        assert getattr(clone, attr) == getattr(err, attr)
    assert str(clone) == str(err)


def test_defaults_str_and_name():
    err = E.NotFoundError("no such ball")
    assert (err.status_code, err.code, err.error_code) == (404, 404, 404)
    assert str(err) == "NotFoundError (status=404, code=404): no such ball"
    assert err.get_name() == "NOT_FOUND_ERROR"
    assert E.MaxAvailabilityReachedError().get_name() == "MAX_AVAILABILITY_REACHED_ERROR"
    assert isinstance(E.ValidationError(), ValueError)
    assert E.FileAlreadyExists is E.AlreadyExistsError
    assert issubclass(E.PreconditionFailedError, E.AlreadyExistsError)
    for cls in (E.ConnectFailedError, E.DNSResolutionError, E.CircuitOpenError, E.RequestTimeoutError,
                E.UpstreamProtocolError):
        assert issubclass(cls, E.NetworkError)
    assert not issubclass(E.ResponseFormatError, E.NetworkError)


def body(code, msg="m", **extra):
    return json.dumps({"detail": {"code": code, "msg": msg, **extra}}).encode()


@pytest.mark.parametrize(
    "status,code,cls",
    [
        (400, 400, E.ValidationError), (422, 400, E.ValidationError), (401, 401, E.AuthenticationError),
        (403, 403, E.AccessDeniedError), (404, 404, E.NotFoundError), (409, 405, E.AlreadyExistsError),
        (412, 405, E.PreconditionFailedError), (500, 500, E.UnknownError), (503, 500, E.UnknownError),
        (400, 501, E.IntegrityError), (502, 502, E.PutChunksError), (507, 502, E.PutChunksError),
        (502, 503, E.GetChunkError), (502, 504, E.PeerOperationError), (404, 666, E.MaxAvailabilityReachedError),
        (503, 666, E.MaxAvailabilityReachedError),
    ],
)
def test_error_by_detail_code(status, code, cls):
    err = E.error_from_body(status, body(code, "why", bucket_id="b"), key="k", router="http://r")
    assert type(err) is cls
    assert (err.status_code, err.code, err.message) == (status, code, "why")
    assert err.detail == {"code": code, "msg": "why", "bucket_id": "b"}
    assert err.key == "k" and err.router == "http://r"


@pytest.mark.parametrize(
    "status,cls",
    [(400, E.ValidationError), (413, E.ValidationError), (416, E.ValidationError), (422, E.ValidationError),
     (401, E.AuthenticationError), (403, E.AccessDeniedError), (404, E.NotFoundError),
     (409, E.AlreadyExistsError), (412, E.PreconditionFailedError), (500, E.UnknownError),
     (502, E.UnknownError), (418, E.UnknownError)],
)
def test_error_by_status_when_no_code(status, cls):
    err = E.error_from_body(status, b'{"detail": "plain text"}')
    assert type(err) is cls and err.status_code == status and err.message == "plain text"


def test_upstream_500_with_404_string_detail_is_not_found():
    err = E.error_from_body(500, b'{"detail": "404: No metadata found for b@k"}')
    assert type(err) is E.NotFoundError and err.status_code == 404


def test_non_json_body_becomes_truncated_message():
    err = E.error_from_body(502, b"x" * 5000)
    assert type(err) is E.UnknownError and len(err.message) == E.MAX_MESSAGE_BYTES
    assert E.error_from_body(503, b"").message == "HTTP 503"


def test_requests_exceptions_are_translated_with_cause():
    cases = [
        (requests.exceptions.ConnectTimeout("slow"), E.RequestTimeoutError),
        (requests.exceptions.ReadTimeout("slow"), E.RequestTimeoutError),
        (requests.exceptions.ConnectionError(EmptyPoolError(None, "pool full")), E.RequestTimeoutError),
        (requests.exceptions.ConnectionError(NameResolutionError("h", None, "nope")), E.DNSResolutionError),
        (requests.exceptions.ConnectionError("refused"), E.ConnectFailedError),
        (requests.exceptions.ChunkedEncodingError("cut"), E.UpstreamProtocolError),
        (requests.exceptions.ContentDecodingError("bad"), E.UpstreamProtocolError),
        (RuntimeError("weird"), E.UnknownError),
    ]
    for exc, cls in cases:
        err = E.error_from_exception(exc, bucket_id="b")
        assert type(err) is cls, (exc, err)
        assert err.__cause__ is exc and err.bucket_id == "b"


def test_a_certificate_that_does_not_verify_is_its_own_connect_error():
    import ssl

    from urllib3.exceptions import MaxRetryError, SSLError

    verify = ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: "
                                             "self-signed certificate (_ssl.c:1006)")
    wrapped = requests.exceptions.SSLError(MaxRetryError(None, "/x", SSLError(verify)))  # as requests raises it
    for exc in (wrapped, verify):
        err = E.error_from_exception(exc, key="k")
        assert type(err) is E.TLSVerificationError and isinstance(err, E.ConnectFailedError)
        assert (err.status_code, err.code) == (1006, 1006) and err.__cause__ is exc
        assert "did not verify (self-signed certificate)" in err.message and "verify=" in err.message
        assert type(pickle.loads(pickle.dumps(err))) is E.TLSVerificationError
    other = requests.exceptions.SSLError(MaxRetryError(None, "/x", SSLError("[SSL] record layer failure")))
    assert type(E.error_from_exception(other)) is E.ConnectFailedError  # a handshake that broke off


def test_mictlanx_errors_are_never_rewrapped():
    err = E.IntegrityError("bad bytes")
    assert E.error_from_exception(err) is err


def test_retry_after_header_is_kept_for_the_retry_policy():
    class FakeResponse:
        status_code = 503
        content = b'{"detail": {"code": 666, "msg": "busy"}}'
        headers = {"Retry-After": "2"}

    err = E.error_from_response(FakeResponse(), key="k")
    assert type(err) is E.MaxAvailabilityReachedError
    assert err.detail == {"code": 666, "msg": "busy", "retry_after": "2"}

    from mictlanx_sync.protocol.policies import retry_after_seconds
    assert retry_after_seconds(err) == 2.0


@pytest.mark.parametrize("error, retryable, router_fault, retry_after", [
    (E.UnknownError("x", 500, 500), True, True, None),  # a server fault
    (E.UnknownError("x", 503, 500, {"retry_after": "2"}), True, True, 2.0),  # shutting down
    (E.MaxAvailabilityReachedError("x", 503, 666, {"retry_after": 1}), True, False, 1.0),  # a peer is down
    (E.GetChunkError("x", 502, 503), True, False, None),
    (E.NotFoundError("x"), False, False, None),
    (E.ValidationError("x"), False, False, None),
    (E.IntegrityError("x", 502, 501), False, False, None),  # never retried as such, even with a 5xx status
    (E.ResponseFormatError("x"), False, False, None),
    (E.ConnectFailedError("x"), True, True, None),
    (E.RequestTimeoutError("x"), True, True, None),
    (E.CircuitOpenError("x"), True, False, None),  # ours: never counted against a router
    (E.TLSVerificationError("x"), False, False, None),  # the same certificate fails again
    (E.ClientClosedError(), False, False, None),
    (E.LocalStorageError("x"), False, False, None),
])
def test_each_error_states_what_the_retry_layer_reads(error, retryable, router_fault, retry_after):
    assert (error.retryable, error.router_fault, error.retry_after) == (retryable, router_fault, retry_after)


def test_a_closed_client_has_one_error_type_a_validation_error_with_its_own_code():
    error = E.ClientClosedError()
    assert isinstance(error, E.ValidationError) and isinstance(error, E.MictlanXError)
    assert (error.status_code, error.code, error.message) == (1008, 1008, "client is closed")
    assert str(error) == "ClientClosedError (status=1008, code=1008): client is closed"
    assert pickle.loads(pickle.dumps(error)) == error
