"""The framework examples: Flask under 8 threads, Django views, and the quickstart notebook.

Flask and Django run in this process against the module's ``LocalVSS``; the notebook is
executed cell by cell in a real IPython kernel by nbclient and starts its own LocalVSS.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
import threading
from pathlib import Path
from types import ModuleType
from typing import Any, Iterator

import pytest

from mictlanx_sync import Client
from mictlanx_sync.server.local import LocalVSS
from tests.support.servers import REPO_ROOT

EXAMPLES = REPO_ROOT / "examples"


def load_example(name: str) -> ModuleType:
    """Import ``examples/<name>.py`` as the module ``name``."""
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(autouse=True)
def _cache_in_tmp(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.getbasetemp() / "cache"))


# --- Flask --------------------------------------------------------------------------------------
@pytest.fixture()
def flask_app(vss: LocalVSS) -> Iterator[Any]:
    pytest.importorskip("flask")
    app = load_example("flask_app").create_app(vss.uri)
    app.config.update(TESTING=True)
    yield app
    app.extensions["mictlanx"].close()


def test_flask_app_shares_one_client_across_8_threads(flask_app: Any, bucket: str) -> None:
    shared = flask_app.extensions["mictlanx"]
    assert isinstance(shared, Client)
    failures: list[str] = []
    barrier = threading.Barrier(8)

    def worker(n: int) -> None:
        http = flask_app.test_client()
        try:
            barrier.wait(timeout=30)
            for round_ in range(3):
                data = os.urandom(700_000 * (n % 4) + 1000 * round_ + n)  # 1 to 3 chunks of 1MB
                key = f"t{n}-r{round_}"
                put = http.put(f"/buckets/{bucket}/objects/{key}", data=data, query_string={"rf": 2})
                if put.status_code != 201 or put.get_json() != {"bucket_id": bucket, "key": key, "size": len(data)}:
                    failures.append(f"{key}: put {put.status_code} {put.get_data(as_text=True)}")
                    continue
                got = http.get(f"/buckets/{bucket}/objects/{key}")
                if got.status_code != 200 or hashlib.sha256(got.data).digest() != hashlib.sha256(data).digest():
                    failures.append(f"{key}: get {got.status_code}, {len(got.data)} bytes")
        except Exception as exc:  # reported below, with the thread that failed
            failures.append(f"thread {n}: {exc!r}")

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not any(thread.is_alive() for thread in threads)
    assert failures == []
    assert flask_app.extensions["mictlanx"] is shared  # still the one client
    listed = shared.get_bucket_metadata(bucket).unwrap()
    assert listed.len() == 24


def test_flask_app_errors_are_http_statuses(flask_app: Any, bucket: str) -> None:
    http = flask_app.test_client()
    missing = http.get(f"/buckets/{bucket}/objects/missing")
    assert missing.status_code == 404 and missing.get_json()["error"] == "NotFoundError"
    assert http.put(f"/buckets/{bucket}/objects/k", data=b"one").status_code == 201
    assert http.put(f"/buckets/{bucket}/objects/k", data=b"one").status_code == 201  # idempotent
    conflict = http.put(f"/buckets/{bucket}/objects/k", data=b"two")
    assert conflict.status_code == 409 and conflict.get_json()["error"] == "AlreadyExistsError"
    invalid = http.put(f"/buckets/{bucket}/objects/metadata", data=b"x")  # a reserved key
    assert invalid.status_code == 400 and invalid.get_json()["error"] == "ValidationError"


# --- Django -------------------------------------------------------------------------------------
@pytest.fixture()
def django_views(vss: LocalVSS, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    pytest.importorskip("django")
    import django

    monkeypatch.setenv("MICTLANX_URI", vss.uri)  # read once, by the module-level Client
    module = load_example("django_views")
    django.setup()
    yield module
    module.client.close()
    sys.modules.pop("django_views", None)


def test_django_views(django_views: ModuleType, bucket: str) -> None:
    from django.test import Client as DjangoClient
    from django.test import RequestFactory
    from django.urls import clear_url_caches

    clear_url_caches()
    http = DjangoClient()
    data = os.urandom(2_500_000)  # 3 chunks of 1MB
    put = http.put(f"/buckets/{bucket}/objects/video.bin", data=data, content_type="application/octet-stream")
    assert put.status_code == 201 and put.json() == {"bucket_id": bucket, "key": "video.bin", "size": len(data)}
    got = http.get(f"/buckets/{bucket}/objects/video.bin")  # streamed
    assert got.status_code == 200 and b"".join(got.streaming_content) == data
    assert django_views.client.get_metadata(bucket, "video.bin").unwrap().chunks[2].size == 500_000

    missing = http.get(f"/buckets/{bucket}/objects/missing")
    assert missing.status_code == 404 and missing.json()["error"] == "NotFoundError"
    conflict = http.put(f"/buckets/{bucket}/objects/video.bin", data=b"other", content_type="text/plain")
    assert conflict.status_code == 409
    assert http.post(f"/buckets/{bucket}/objects/video.bin").status_code == 405

    request = RequestFactory().get(f"/buckets/{bucket}/objects/video.bin")  # the view on its own
    response = django_views.object_view(request, bucket, "video.bin")
    assert b"".join(response.streaming_content) == data
    response.close()


# --- the notebook -------------------------------------------------------------------------------
@pytest.mark.timeout(240)
def test_quickstart_notebook_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    monkeypatch.setenv("JUPYTER_PLATFORM_DIRS", "1")  # jupyter_core's path migration warning
    monkeypatch.setenv("PYTHONPATH", str(REPO_ROOT))
    notebook = nbformat.read(EXAMPLES / "quickstart.ipynb", as_version=4)
    runner = nbclient.NotebookClient(notebook, timeout=120, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    runner.execute()  # raises CellExecutionError if any cell fails

    outputs = [out for cell in notebook.cells if cell.cell_type == "code" for out in cell.outputs]
    assert not [out for out in outputs if out.output_type == "error"]
    text = "".join(out.get("text", "") for out in outputs if out.output_type == "stream")
    results = [out["data"]["text/plain"] for out in outputs if out.output_type == "execute_result"]
    assert "mictlanx://mictlanx-router-0@127.0.0.1:" in text
    assert results == ["b'hello, MictlanX'"]
    assert "verified: True" in text
    assert "data         16000000 bytes  16 chunks" in text
    assert "data_0 is on ['mictlanx-peer-0', 'mictlanx-peer-1']" in text
    assert "17 keys deleted" in text
    widgets = [out for out in outputs if "application/vnd.jupyter.widget-view+json" in out.get("data", {})]
    assert "put data:" in text or widgets  # the progress bar: text, or a widget with ipywidgets
    # issue 14 point 5: no bar for the 15-byte put/get, and no tqdm warning without ipywidgets
    assert "put greeting" not in text and "get greeting" not in text
    assert "IProgress" not in text and "TqdmWarning" not in text and "TqdmExperimentalWarning" not in text


# --- 50 MB through each web example (issue 14 point 4) ----------------------------------------
BIG = 50_000_000


@pytest.mark.timeout(180)
def test_flask_app_streams_50_mb_both_ways(flask_app: Any, bucket: str) -> None:
    data = os.urandom(BIG)
    http = flask_app.test_client()
    put = http.put(f"/buckets/{bucket}/objects/big.bin", data=data)
    assert put.status_code == 201 and put.get_json()["size"] == BIG
    got = http.get(f"/buckets/{bucket}/objects/big.bin", buffered=False)
    assert got.status_code == 200 and got.headers["Content-Length"] == str(BIG)
    digest = hashlib.sha256()
    pieces = 0
    for piece in got.response:  # the body as the app streams it
        digest.update(piece)
        pieces += 1
    got.close()  # removes the temporary file
    assert digest.digest() == hashlib.sha256(data).digest()
    assert pieces >= BIG // 1_000_000  # 1 MB pieces, never one 50 MB body


@pytest.mark.timeout(180)
def test_django_views_stream_50_mb_both_ways(django_views: ModuleType, bucket: str) -> None:
    from django.conf import settings
    from django.test import Client as DjangoClient
    from django.urls import clear_url_caches

    clear_url_caches()
    assert settings.DATA_UPLOAD_MAX_MEMORY_SIZE < BIG  # Django's default 2.5 MB limit still applies elsewhere
    data = os.urandom(BIG)
    http = DjangoClient()
    put = http.put(f"/buckets/{bucket}/objects/big.bin", data=data, content_type="application/octet-stream")
    assert put.status_code == 201, put.content[:300]
    assert put.json()["size"] == BIG
    got = http.get(f"/buckets/{bucket}/objects/big.bin")
    assert got.status_code == 200 and got.streaming and got["Content-Length"] == str(BIG)
    digest = hashlib.sha256()
    for piece in got.streaming_content:
        assert len(piece) <= 1_000_000
        digest.update(piece)
    got.close()
    assert digest.digest() == hashlib.sha256(data).digest()
