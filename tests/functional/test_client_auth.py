"""Bearer tokens through the high-level Client (issue: reliability and security, auth)."""

from __future__ import annotations

import re

import pytest

from mictlanx_sync import Client, LocalVSS
from mictlanx_sync.errors import AuthenticationError

TOKEN = "s3cret-token"


@pytest.fixture(scope="module")
def secured_vss(tmp_path_factory):
    with LocalVSS(peers=2, data_dir=tmp_path_factory.mktemp("vss"), token=TOKEN) as vss:
        yield vss


def test_token_from_the_uri_or_the_argument_works(secured_vss, tmp_path):
    assert "token=" in secured_vss.uri
    with Client(secured_vss.uri, cache_path=str(tmp_path / "c"), progress=False) as client:
        client.put("auth", "a", b"hello", rf=2).unwrap()
        assert client.get("auth", "a").unwrap().data.tobytes() == b"hello"
    bare = re.sub(r"[&?]token=[^&]*", "", secured_vss.uri)
    with Client(bare, token=TOKEN, capacity_storage="0", progress=False) as client:
        assert client.get("auth", "a").unwrap().data.tobytes() == b"hello"


def test_missing_or_wrong_token_is_401_and_not_retried(secured_vss):
    bare = re.sub(r"[&?]token=[^&]*", "", secured_vss.uri)
    for client in (Client(bare, capacity_storage="0", progress=False),
                   Client(secured_vss.uri, token="wrong", capacity_storage="0", progress=False)):
        with client:
            error = client.get("auth", "a").unwrap_err()
            assert type(error) is AuthenticationError
            assert (error.status_code, error.code) == (401, 401)
            assert client.breaker_state(client.routers[0]) == "closed"


def test_an_empty_token_is_rejected_at_construction(secured_vss):
    with pytest.raises(ValueError):
        Client(secured_vss.uri, token="")
