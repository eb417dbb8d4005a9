import random

import attrs
import pytest

from mictlanx_sync.protocol.errors import (
    AlreadyExistsError,
    CircuitOpenError,
    ConnectFailedError,
    GetChunkError,
    IntegrityError,
    MaxAvailabilityReachedError,
    NotFoundError,
    PeerOperationError,
    PreconditionFailedError,
    PutChunksError,
    RequestTimeoutError,
    ResponseFormatError,
    TLSVerificationError,
    UnknownError,
    UpstreamProtocolError,
    ValidationError,
)
from mictlanx_sync.protocol.policies import (
    BreakerPolicy,
    RetryPolicy,
    is_retryable,
    retry_after_seconds,
    wait_seconds,
)


def test_retry_policy_defaults_match_the_spec():
    policy = RetryPolicy()
    assert (policy.retries, policy.initial_delay, policy.backoff_factor) == (5, 0.5, 2.0)
    assert (policy.max_delay, policy.jitter, policy.deadline) == (10.0, True, 300.0)


def test_policies_are_frozen_and_comparable():
    policy = RetryPolicy()
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        policy.retries = 3  # type: ignore[misc]
    assert policy == RetryPolicy() and hash(policy) == hash(RetryPolicy())
    assert BreakerPolicy() == BreakerPolicy(fail_max=5, reset_timeout=30.0)


@pytest.mark.parametrize("kwargs", [
    {"retries": 0}, {"retries": -1}, {"retries": 2.5}, {"initial_delay": -0.1},
    {"backoff_factor": 0}, {"max_delay": -1}, {"deadline": 0}, {"deadline": float("inf")},
    {"max_delay": float("nan")},
])
def test_retry_policy_rejects_bad_numbers(kwargs):
    with pytest.raises(ValidationError):
        RetryPolicy(**kwargs)


@pytest.mark.parametrize("kwargs", [{"retries": "5"}, {"retries": True}, {"jitter": 1}, {"deadline": None}])
def test_retry_policy_rejects_wrong_types(kwargs):
    with pytest.raises(TypeError):
        RetryPolicy(**kwargs)


def test_whole_floats_are_accepted_as_attempt_counts():
    assert RetryPolicy(retries=3.0).retries == 3
    assert isinstance(RetryPolicy(initial_delay=1).initial_delay, float)


@pytest.mark.parametrize("kwargs", [{"fail_max": 0}, {"reset_timeout": 0}, {"reset_timeout": -5}])
def test_breaker_policy_rejects_bad_numbers(kwargs):
    with pytest.raises(ValidationError):
        BreakerPolicy(**kwargs)


def test_from_options_keeps_defaults_for_none():
    base = RetryPolicy(retries=7, deadline=60.0)
    assert RetryPolicy.from_options(base) is base
    assert RetryPolicy.from_options(base, max_tries=None, jitter=None) == base
    assert RetryPolicy.from_options() == RetryPolicy()


def test_from_options_applies_aliases():
    policy = RetryPolicy.from_options(
        max_tries=3, delay=0.25, backoff=3.0, max_backoff=4.0, jitter=False, deadline=9.0,
    )
    assert policy == RetryPolicy(retries=3, initial_delay=0.25, backoff_factor=3.0,
                                 max_delay=4.0, jitter=False, deadline=9.0)
    for name in ("retries", "max_retries", "max_tries", "tries"):
        assert RetryPolicy.from_options(**{name: 2}).retries == 2
    assert RetryPolicy().with_overrides(max_delay=1.0).max_delay == 1.0


def test_aliases_with_different_values_are_rejected():
    with pytest.raises(ValidationError):
        RetryPolicy.from_options(max_delay=1.0, max_backoff=2.0)
    with pytest.raises(ValidationError):
        RetryPolicy.from_options(max_retries=2, max_tries=3)
    # The same value under two names is fine.
    assert RetryPolicy.from_options(max_delay=2, max_backoff=2.0).max_delay == 2.0


def test_from_options_validates_the_result():
    with pytest.raises(ValidationError):
        RetryPolicy.from_options(max_tries=0)


@pytest.mark.parametrize("error", [
    ConnectFailedError(), RequestTimeoutError(), UpstreamProtocolError(), CircuitOpenError(),
    UnknownError(), UnknownError("shutting down", 503, 500),
    MaxAvailabilityReachedError("peer down", 503, 666), GetChunkError("x", 502, 503),
    PutChunksError(), PeerOperationError("x", 504, 504), UnknownError("slow down", 429, 500),
])
def test_retried_errors(error):
    assert is_retryable(error)


@pytest.mark.parametrize("error", [
    NotFoundError(), ValidationError(), AlreadyExistsError(), PreconditionFailedError(),
    MaxAvailabilityReachedError(), IntegrityError(), IntegrityError("bad", 500, 501),
    ResponseFormatError(), ResponseFormatError("bad", 503), ValueError("not ours"), None,
    TLSVerificationError("the TLS certificate of r:1 did not verify"),
])
def test_never_retried_errors(error):
    assert not is_retryable(error)


def test_wait_grows_exponentially_and_is_capped():
    policy = RetryPolicy(initial_delay=0.5, backoff_factor=2.0, max_delay=10.0, jitter=False)
    assert [wait_seconds(policy, n) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0]
    assert wait_seconds(policy, 10_000) == 10.0  # no overflow


def test_jitter_is_uniform_below_the_unjittered_value_without_compounding():
    policy = RetryPolicy(initial_delay=1.0, backoff_factor=2.0, max_delay=100.0, jitter=True)
    rng = random.Random(7)
    for n in range(1, 6):
        ceiling = 2.0 ** (n - 1)
        samples = [wait_seconds(policy, n, rng=rng) for _ in range(200)]
        assert all(0.0 <= s <= ceiling for s in samples)
        assert max(samples) > ceiling * 0.8  # spread over the whole range, not shrunk


def test_retry_after_is_honoured_and_capped():
    policy = RetryPolicy(max_delay=10.0, jitter=True)
    assert wait_seconds(policy, 1, retry_after=3.0) == 3.0
    assert wait_seconds(policy, 1, retry_after=60.0) == 10.0
    assert wait_seconds(policy, 1, retry_after=-1.0) == 0.0


def test_retry_after_is_read_from_429_and_503_details_only():
    assert retry_after_seconds(UnknownError("x", 429, 500, {"retry_after": "4"})) == 4.0
    assert retry_after_seconds(MaxAvailabilityReachedError("x", 503, 666, {"retry_after": 2})) == 2.0
    assert retry_after_seconds(UnknownError("x", 500, 500, {"retry_after": "4"})) is None
    assert retry_after_seconds(UnknownError("x", 503, 500, {"retry_after": "Wed, 21 Oct 2015"})) is None
    assert retry_after_seconds(UnknownError("x", 503, 500)) is None
    assert retry_after_seconds(ConnectFailedError()) is None
