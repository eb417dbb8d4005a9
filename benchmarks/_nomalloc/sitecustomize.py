"""Loaded by the benchmark's server subprocesses when this directory is on PYTHONPATH.

With ``MICTLANX_BENCH_NO_TUNE_MALLOC=1`` it replaces
``mictlanx_sync.server.serving.tune_malloc`` by a no-op before the server CLI imports it,
so the malloc comparison can run the servers with glibc's defaults (or with only the
``MALLOC_*`` environment variables) without editing the package.
"""
import os

if os.environ.get("MICTLANX_BENCH_NO_TUNE_MALLOC") == "1":
    try:
        import mictlanx_sync.server.serving as _serving

        _serving.tune_malloc = lambda: None
    except Exception:  # never break the server over a benchmark helper
        pass
