"""Issue 14 §11: the wheel carries the MIT LICENSE, classifiers and no unused requirements."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def metadata(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, list[str]], list[str]]:
    pytest.importorskip("wheel")
    src = tmp_path_factory.mktemp("src")
    for name in ("setup.cfg", "setup.py", "pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "mictlanx_sync", src / "mictlanx_sync",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(out)], check=True, capture_output=True, timeout=170)
    wheel = next(out.glob("mictlanx_sync-*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        text = archive.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    message = Parser().parsestr(text)
    fields: dict[str, list[str]] = {}
    for key, value in message.items():
        fields.setdefault(key, []).append(value)
    return fields, names


def test_license_is_in_the_wheel_metadata(metadata: tuple[dict[str, list[str]], list[str]]) -> None:
    fields, names = metadata
    assert fields["License"] == ["MIT"]
    assert "License :: OSI Approved :: MIT License" in fields["Classifier"]
    # .dist-info/LICENSE, or .dist-info/licenses/LICENSE with setuptools that write metadata 2.4
    licenses = [n for n in names if ".dist-info/" in n and n.endswith("/LICENSE")]
    assert licenses, names
    assert "Programming Language :: Python :: 3.10" in fields["Classifier"]
    assert "Typing :: Typed" in fields["Classifier"]
    assert fields.get("Project-URL"), fields.keys()


def test_requirements_are_the_ones_the_code_uses(metadata: tuple[dict[str, list[str]], list[str]]) -> None:
    requires = " ".join(metadata[0].get("Requires-Dist", []))
    assert "humanfriendly" not in requires and "starlette" not in requires
    assert "flask" in requires and 'extra == "examples"' in requires


def test_license_file_matches_setup_cfg() -> None:
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    assert (ROOT / "CHANGELOG.md").is_file()
