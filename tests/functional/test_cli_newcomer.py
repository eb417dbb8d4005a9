"""Issue 14 §9 and §6: the command line a newcomer meets (exit codes, --version, flag names)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import pytest

import mictlanx_sync
from mictlanx_sync import LocalVSS
from mictlanx_sync.cli import main

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def vss() -> Iterator[LocalVSS]:
    with LocalVSS(peers=1) as instance:
        yield instance


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    try:
        code = main(list(argv))
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "--version")
    assert code == 0 and out.strip() == f"mictlanx-sync {mictlanx_sync.__version__}"


def test_bad_chunk_size_is_a_bad_argument(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "f.txt"
    path.write_text("x")
    code, _, err = _run(capsys, "put", str(path), "--chunk-size", "1XB", "--uri", "mictlanx://r@127.0.0.1:9/")
    assert code == 2, err  # was 1: found only when the upload started
    assert "--chunk-size expects a positive size" in err and "chunk_size" not in err


def test_unknown_flag_shows_the_subcommands_usage(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, "put", "x", "--bogus")
    assert code == 2
    assert err.startswith("usage: mictlanx-sync put ") and "unrecognized arguments: --bogus" in err


def test_messages_name_flags_and_counts_agree(capsys: pytest.CaptureFixture[str], vss: LocalVSS,
                                             tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MICTLANX_URI", vss.uri)
    monkeypatch.chdir(tmp_path)
    one = tmp_path / "one.txt"
    one.write_text("1")
    assert _run(capsys, "put", str(one), "-b", "flags", "--no-progress")[0] == 0
    code, out, _ = _run(capsys, "ls", "flags")
    assert code == 0 and out.strip().splitlines()[-1] == "1 object, 1 byte in flags"  # not "1 objects"
    one.write_text("2")
    code, _, err = _run(capsys, "put", str(one), "-b", "flags", "--no-progress")
    assert code == 1 and "use --update to replace it" in err and "update=True" not in err
    (tmp_path / "got.txt").write_text("other")
    code, _, err = _run(capsys, "get", "one.txt", "-b", "flags", "-o", str(tmp_path / "got.txt"), "--no-progress")
    assert code == 1 and "--overwrite replaces it" in err and "overwrite=True" not in err
    code, out, _ = _run(capsys, "stat", "one.txt", "-b", "flags", "--json")
    doc = json.loads(out)
    assert doc["updated_at"] is None and doc["content_type"] == "text/plain"  # was -1 and octet-stream


def test_one_shot_commands_leave_the_user_cache_alone(capsys: pytest.CaptureFixture[str], vss: LocalVSS,
                                                     tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / "cache"))
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("MICTLANX_URI", vss.uri)
    data = tmp_path / "data.bin"
    data.write_bytes(b"d" * 300_000)
    assert _run(capsys, "put", str(data), "-b", "cachetest", "--no-progress")[0] == 0
    assert _run(capsys, "get", "data.bin", "-b", "cachetest", "-o", str(tmp_path / "out.bin"), "--no-progress")[0] == 0
    assert not home.exists() or not any(p.is_file() for p in home.rglob("*"))
    assert _run(capsys, "get", "data.bin", "-b", "cachetest", "-o", str(tmp_path / "o2.bin"), "--no-progress",
                "--cache")[0] == 0
    assert any(p.is_file() for p in home.rglob("*"))  # --cache opts in
