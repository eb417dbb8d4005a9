"""Every ``client-api §N.M`` citation in the repository leads to a section of docs/client-api.md.

As tests/unit/test_protocol_doc.py holds docs/protocol.md to the routing tables, this holds
docs/client-api.md to the code's citations of it: the package, the tests, the notes in docs/
and the README. A section is a numbered heading (``## 3. Errors``, ``### 8.6 Reads``) or, in
a section without subheadings, an item of its one numbered list (``client-api §1.3`` is rule 3
of section 1, as the code cites it). The document's own ``§8.2``-style references to itself
are checked the same way.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "client-api.md"

#: where citations are looked for: every Python and Markdown file below these, and the README
SOURCES = ("mictlanx_sync", "tests", "docs")

_NUMBER = r"\d+(?:\.\d+)*"
_REF = rf"§{_NUMBER}(?:[-–]{_NUMBER})?"
#: ``client-api §8.1``, ``client-api.md §3``, ``client-api §8.5-8.6``, ``client-api §8.1, §8.4``
_CITATION = re.compile(rf"client-api(?:\.md)?\s+({_REF}(?:(?:,\s*|\s+and\s+){_REF})*)", re.IGNORECASE)
#: the document citing itself: a bare ``§8.2``, not protocol's ``§P5`` nor another note's
#: ``x.md §3.1`` or ``[x](x.md) §3.1``
_SELF_REF = re.compile(rf"(?<!protocol )(?<!\.md )(?<!\.md\) )({_REF})")
_HEADING = re.compile(r"^#{2,4} (\d+(?:\.\d+)*)\.? ")
_ITEM = re.compile(r"^(\d+)\. ")


def _sections(text: str) -> set[str]:
    """The section numbers of the document: headings, and the items of a leaf section's list."""
    sections: set[str] = set()
    bodies: dict[str, list[str]] = {}
    current = None
    fenced = False
    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
            continue
        heading = None if fenced else _HEADING.match(line)
        if heading:
            current = heading.group(1)
            assert current not in sections, f"section {current} is numbered twice"
            sections.add(current)
            bodies[current] = []
        elif line.startswith("#"):
            current = None  # an unnumbered heading ends the section before it
        elif current is not None and not fenced:
            bodies[current].append(line)
    for number, body in bodies.items():
        if any(other.startswith(number + ".") for other in sections):
            continue  # a section with subheadings is cited by them, never by list items
        items = [int(m.group(1)) for m in map(_ITEM.match, body) if m]
        assert items == sorted(set(items)), f"section {number}'s numbered items are ambiguous: {items}"
        sections.update(f"{number}.{item}" for item in items)
    return sections


def _expand(ref: str) -> list[str]:
    """``§1.6-7`` → 1.6 and 1.7; ``§8.5-8.6`` → 8.5 and 8.6; ``§8.1`` → 8.1."""
    first, _, last = ref.lstrip("§").replace("–", "-").partition("-")
    if not last:
        return [first]
    head = first.split(".")
    tail = head[: len(head) - len(last.split("."))] + last.split(".")
    assert tail[:-1] == head[:-1] and int(head[-1]) < int(tail[-1]), f"not a range of one level: {ref}"
    return [".".join([*head[:-1], str(n)]) for n in range(int(head[-1]), int(tail[-1]) + 1)]


def _refs(group: str) -> list[str]:
    return [number for ref in re.findall(_REF, group) for number in _expand(ref)]


def _source_files() -> list[Path]:
    files = [ROOT / "README.md"]
    for top in SOURCES:
        files += sorted(p for p in (ROOT / top).rglob("*") if p.suffix in (".py", ".md") and p.is_file())
    return files


def _citations() -> list[tuple[str, str]]:
    """``(where, section)`` for every section cited as ``client-api §…`` outside the document."""
    found = []
    for path in _source_files():
        if path in (DOC, Path(__file__).resolve()):  # this file's examples are not citations
            continue
        text = path.read_text(encoding="utf-8")
        for match in _CITATION.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            where = f"{path.relative_to(ROOT)}:{line}"
            found += [(where, number) for number in _refs(match.group(1))]
    return found


CITATIONS = _citations()


def test_the_citations_are_found() -> None:
    # A pattern that stopped matching would make the next test pass vacuously.
    assert len(CITATIONS) >= 50
    assert {"1.3", "1.6", "1.7", "3", "8.1", "8.4", "8.6", "9"} <= {number for _, number in CITATIONS}


@pytest.mark.parametrize(("where", "number"), CITATIONS, ids=[f"{w} §{n}" for w, n in CITATIONS])
def test_every_citation_resolves(where: str, number: str) -> None:
    assert number in _sections(DOC.read_text(encoding="utf-8")), f"{where} cites client-api §{number}"


def test_the_document_resolves_its_own_references() -> None:
    text = DOC.read_text(encoding="utf-8")
    sections = _sections(text)
    cited = {number for group in _SELF_REF.findall(text) for number in _refs(group)}
    assert cited, "no § references found in docs/client-api.md"
    assert cited <= sections, sorted(cited - sections)


def test_sections_and_rules_are_told_apart() -> None:
    text = "## 1. Rules\n1. one\n2. two\n## 8. Client\n### 8.1 Retries\n1. a step\n```\n3. code\n```\n"
    assert _sections(text) == {"1", "1.1", "1.2", "8", "8.1", "8.1.1"}
    assert _refs("§1.6-7, §8.5-8.6 and §3") == ["1.6", "1.7", "8.5", "8.6", "3"]
