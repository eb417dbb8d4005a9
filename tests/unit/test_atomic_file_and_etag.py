"""The one atomic-file helper and the one ETag parser of the library (issue 15)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mictlanx_sync.protocol.atomic_file import AtomicFile
from mictlanx_sync.protocol.etag import etag_checksum


def test_a_committed_file_replaces_the_target_whole(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with AtomicFile(str(target), size=6) as part:
        assert Path(part.path).name.startswith(".out.bin.") and part.path.endswith(".part")
        os.pwrite(part.fd, b"def", 3)  # positional writes, in any order
        os.pwrite(part.fd, b"abc", 0)
        assert target.read_bytes() == b"old"  # nothing visible before the commit
        part.commit()
    assert target.read_bytes() == b"abcdef"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]


@pytest.mark.parametrize("interrupt", [ValueError, KeyboardInterrupt])
def test_leaving_without_a_commit_leaves_no_part(tmp_path: Path, interrupt: type[BaseException]) -> None:
    target = tmp_path / "out.bin"
    with pytest.raises(interrupt), AtomicFile(str(target)) as part:
        os.write(part.fd, b"partial")
        raise interrupt()
    assert list(tmp_path.iterdir()) == []


def test_etags_name_a_lowercase_checksum() -> None:
    assert etag_checksum('"ABCDEF"') == "abcdef"
    assert etag_checksum(' W/"abc" ') == "abc"
    assert etag_checksum("abc") == "abc"
    assert etag_checksum(None) is None and etag_checksum("") is None and etag_checksum('""') is None
