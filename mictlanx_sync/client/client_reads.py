"""The read half of ``Client``: ``get``, ``get_to_file``, ``get_chunks`` and ``get_chunk``
(client-api §8.3).

Each method turns upstream's many retry and parallelism arguments into one
:class:`~.fetch.ReadOptions` and hands it to the :class:`~.reads.Reader`, where chunks
are fetched, verified and cached. ``Client`` inherits these methods from :class:`ClientReads`.
"""

from __future__ import annotations

from typing import Any, Dict, Generator, Optional, Tuple

from ..protocol.errors import MictlanXError, ValidationError
from ..protocol.ids import validate_id, validate_key
from ..protocol.models import Chunk, GetResponse, Metadata
from ..protocol.result import Err, Ok, Result
from .client_base import ClientBase, Timeout
from .options import merge_alias
from .progress import ProgressCallback, check_callback, reporting
from .read_options import ReadOptions, read_options

__all__ = ["ClientReads"]

_DEFAULT_PARALLEL_GETS = 10


class ClientReads(ClientBase):
    """Reads of ``Client``: an object into memory or a file, or chunk by chunk."""

    def _read_options(self, max_parallel: Optional[int], headers: Optional[Dict[str, str]], chunk_size: Any,
                      timeout: Timeout, max_retries: Optional[int], delay: Optional[float],
                      backoff_factor: Optional[float], force: bool, max_backoff: Optional[float],
                      max_delay: Optional[float], jitter: Optional[bool], verify_full: bool) -> ReadOptions:
        return read_options(self._dispatcher.retry, self.timeout, self.inline_max, max_parallel=max_parallel,
                            headers=headers, chunk_size=chunk_size, timeout=timeout, max_retries=max_retries,
                            delay=delay, backoff_factor=backoff_factor, force=force, max_backoff=max_backoff,
                            max_delay=max_delay, jitter=jitter, verify_full=verify_full)

    def get(
        self, bucket_id: str, key: str, max_paralell_gets: Optional[int] = None,
        headers: Optional[Dict[str, str]] = None,
        chunk_size: Any = "256kb", timeout: Timeout = None, http2: bool = False, max_retries: Optional[int] = None,
        delay: Optional[float] = None, backoff_factor: Optional[float] = None, force: bool = False,
        max_backoff: Optional[float] = None, chunk_index: int = 0, max_delay: Optional[float] = None,
        jitter: Optional[bool] = None, *, verify_full: bool = True, max_parallel_gets: Optional[int] = None,
        progress: Optional[ProgressCallback] = None,
    ) -> Result[GetResponse, MictlanXError]:
        """Read the object ``bucket_id/key`` into memory, every chunk and the whole verified.

        ``chunk_index=-1`` reads the single ball ``key`` instead. → ``Ok(GetResponse)``

        Most callers need only ``bucket_id``, ``key`` and perhaps ``timeout``. Parallelism is
        ``max_parallel_gets`` (upstream's spelling ``max_paralell_gets`` is accepted too);
        retries are ``max_retries``, ``delay``, ``backoff_factor``, ``max_delay`` (alias
        ``max_backoff``) and ``jitter``; ``force`` skips the chunk cache. Accepted for
        upstream compatibility and ignored: ``http2`` (always HTTP/1.1) and ``chunk_index``
        values other than 0 and -1.

        ``progress(n)`` is called with the bytes received since its previous call; on
        success the calls add up to the object's size. It runs in the client's transfer
        threads, one call at a time (see :mod:`mictlanx_sync.client.progress`).
        """
        check_callback(progress)
        if (closed := self._ready()) is not None:
            return closed
        try:
            validate_id(bucket_id, "bucket_id")
            validate_key(key, "key")
            # None means "not given" (default 10), so max_parallel_gets=2 alone is not a disagreement.
            parallel = merge_alias("max_paralell_gets", max_paralell_gets, "max_parallel_gets", max_parallel_gets)
            parallel = _DEFAULT_PARALLEL_GETS if parallel is None else parallel
            options = self._read_options(parallel, headers, chunk_size, timeout, max_retries, delay, backoff_factor,
                                         force, max_backoff, max_delay, jitter, verify_full)
        except ValidationError as error:
            return Err(error)
        with reporting(self.progress, progress, f"get {key}") as reporter:
            result = self._reader.get(bucket_id, key, options, single=chunk_index == -1, progress=reporter)
            if result.is_ok and reporter is not None:
                reporter.finish()
        return self._logged("get", bucket_id, key, result)

    def get_to_file(
        self, bucket_id: str, ball_id: str, output_path: str = "", fullname: str = "",
        max_paralell_gets: Optional[int] = None, headers: Optional[Dict[str, str]] = None, chunk_size: Any = "256kb",
        timeout: Timeout = None, http2: bool = False, max_retries: Optional[int] = None, delay: Optional[float] = None,
        backoff_factor: Optional[float] = None, force: bool = False, chunk_index: int = 0,
        max_delay: Optional[float] = None, jitter: Optional[bool] = None, *, overwrite: bool = False,
        verify_full: bool = True, max_parallel_gets: Optional[int] = None, progress: Optional[ProgressCallback] = None,
    ) -> Result[str, MictlanXError]:
        """Download the object into ``output_path`` through a ``.part`` file; → ``Ok(path)``.

        A same-content file already there is kept; other content is ``AlreadyExistsError``
        unless ``overwrite=True``. No partial file is ever left behind. Options as in
        :meth:`get`; ``http2`` and ``chunk_index`` are accepted for upstream compatibility
        and ignored (the whole object is always written).

        ``progress(n)``: bytes received since the previous call, adding up to the object's
        size on success (a same-content file already there counts as one call); called
        from transfer threads, one call at a time, as in :meth:`get`.
        """
        check_callback(progress)
        if (closed := self._ready()) is not None:
            return closed
        try:
            validate_id(bucket_id, "bucket_id")
            validate_key(ball_id, "ball_id")
            # None means "not given" (default 10), so max_parallel_gets=2 alone is not a disagreement.
            parallel = merge_alias("max_paralell_gets", max_paralell_gets, "max_parallel_gets", max_parallel_gets)
            parallel = _DEFAULT_PARALLEL_GETS if parallel is None else parallel
            options = self._read_options(parallel, headers, chunk_size, timeout, max_retries, delay, backoff_factor,
                                         force, None, max_delay, jitter, verify_full)
        except ValidationError as error:
            return Err(error)
        with reporting(self.progress, progress, f"get {ball_id}") as reporter:
            result = self._reader.get_to_file(bucket_id, ball_id, output_path, fullname, options, overwrite, reporter)
            if result.is_ok and reporter is not None:
                reporter.finish()
        return self._logged("get_to_file", bucket_id, ball_id, result)

    def get_chunks(
        self, bucket_id: str, key: str, max_parallel_gets: int = 10, headers: Optional[Dict[str, str]] = None,
        chunk_size: Any = "256kb", timeout: Timeout = None, http2: bool = False, max_retries: Optional[int] = None,
        delay: Optional[float] = None, backoff_factor: Optional[float] = None, force: bool = False,
        max_backoff: Optional[float] = None, chunk_index: int = 0, max_delay: Optional[float] = None,
        jitter: Optional[bool] = None, order: bool = False, *, verify_full: bool = True,
    ) -> Generator[Tuple[Metadata, memoryview], None, None]:
        """A generator of verified ``(Metadata, memoryview)`` chunks; raises typed errors.

        ``order=True`` yields in index order (and checks ``full_checksum`` after the last).
        """
        self._lifecycle.check()  # ClientClosedError once closed
        validate_id(bucket_id, "bucket_id")
        validate_key(key, "key")
        options = self._read_options(max_parallel_gets, headers, chunk_size, timeout, max_retries, delay,
                                     backoff_factor, force, max_backoff, max_delay, jitter, verify_full)
        return self._reader.iter_chunks(bucket_id, key, options, order)

    def get_chunk(
        self, bucket_id: str, ball_id: str, index: int, max_parallel_gets: int = 10,
        headers: Optional[Dict[str, str]] = None, chunk_size: Any = "256kb", timeout: Timeout = None,
        http2: bool = False, max_retries: Optional[int] = None, delay: Optional[float] = None,
        backoff_factor: Optional[float] = None, force: bool = False, max_backoff: Optional[float] = None,
        max_delay: Optional[float] = None, jitter: Optional[bool] = None,
    ) -> Result[Tuple[Chunk, Metadata], MictlanXError]:
        """One chunk ``{ball_id}_{index}``, verified against its checksum. → ``Ok((Chunk, Metadata))``"""
        if (closed := self._ready()) is not None:
            return closed
        key = f"{ball_id}_{index}"
        try:
            validate_id(bucket_id, "bucket_id")
            validate_key(key, "key")
            options = self._read_options(max_parallel_gets, headers, chunk_size, timeout, max_retries, delay,
                                         backoff_factor, force, max_backoff, max_delay, jitter, True)
        except ValidationError as error:
            return Err(error)
        got = self._reader.get(bucket_id, key, options, single=True)
        if got.is_err:
            return Err(got.unwrap_err())
        response = got.unwrap()
        meta = response.metadatas[0]
        return Ok((Chunk(ball_id, index, response.data.tobytes(), chunk_id=key, checksum=meta.checksum), meta))
