"""The public surface: every name of ``__all__`` resolves, and importing is light."""

import subprocess
import sys

import mictlanx_sync

EXPECTED = {
    "Client", "Peer", "Router", "MictlanXURI", "LocalVSS", "Result", "Ok", "Err", "RetryPolicy", "BreakerPolicy",
    "errors", "models", "__version__",
}


def test_all_lists_exactly_the_public_names():
    assert set(mictlanx_sync.__all__) == EXPECTED
    for name in mictlanx_sync.__all__:
        assert getattr(mictlanx_sync, name) is not None


def test_errors_and_models_are_importable_modules():
    from mictlanx_sync.errors import MictlanXError, NotFoundError
    from mictlanx_sync.models import Chunks, Metadata

    assert issubclass(NotFoundError, MictlanXError)
    assert mictlanx_sync.errors.NotFoundError is NotFoundError
    assert mictlanx_sync.models.Metadata is Metadata and Chunks is mictlanx_sync.models.Chunks


def test_import_does_no_io_and_loads_neither_requests_nor_the_server_stack():
    code = (
        "import sys, threading, logging\n"
        "before = threading.active_count()\n"
        "import mictlanx_sync\n"
        "assert 'requests' not in sys.modules, 'requests imported'\n"
        "assert 'uvicorn' not in sys.modules and 'httpx' not in sys.modules, 'server stack imported'\n"
        "assert threading.active_count() == before, 'thread started'\n"
        "assert all(type(h) is logging.NullHandler for h in logging.getLogger('mictlanx_sync').handlers), "
        "'handler added'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
