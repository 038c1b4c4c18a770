"""The docs name only what the code has: log events, status fields, files to link to.

Events are written `event=NAME` (or "logs `NAME`") in README.md and docs/*.md; each must be
a string literal somewhere in hlstream/, common/ or services/. The bus's status fields
(docs/bus.md) must be fields of the status map; the `hlstream status --json` fields are held
to docs/status.md by tests/unit/test_health.py. Every relative link must reach an existing
file (and heading), and the README stays short enough to read: at most 250 lines.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from hlstream.common.status import FeedStatus, StageStatus

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = [README, *sorted((ROOT / "docs").glob("*.md"))]
LINKED = [*DOCS, ROOT / "CHANGELOG.md"]  # the changelog may name old events, not dead links
CODE_DIRS = ("hlstream",)
README_MAX_LINES = 250

EVENT = re.compile(r"\bevent=([a-z][a-z0-9_]*)")
LOGGED = re.compile(r"\blog(?:s|ged)?(?:\s+as)?\s+`(?:event=)?([a-z][a-z0-9_]*)`")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
PLACEHOLDER = re.compile(r"^[A-Z][A-Z_]*$")  # STAGE, COIN, FILE: a name, not a field
# Report maps keyed by a name rather than a field, and the placeholder the docs write.
REPORT_KEYED = {"stages": "STAGE", "coins": "COIN", "files": "FILE", "counters.malformed": "STAGE"}


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def code_files() -> Iterator[Path]:
    seen: set[Path] = set()
    for top in CODE_DIRS:
        for folder, _, names in os.walk(ROOT / top):  # hlstream/'s links are walked as themselves
            for name in names:
                path = Path(folder, name).resolve()
                if name.endswith(".py") and path not in seen:
                    seen.add(path)
                    yield path


CODE = "\n".join(path.read_text(encoding="utf-8") for path in code_files())


def in_code_as_string(name: str) -> bool:
    return f'"{name}"' in CODE or f"'{name}'" in CODE


def in_code_as_field(name: str) -> bool:
    return (
        in_code_as_string(name) or re.search(rf"^\s+{re.escape(name)}\s*:", CODE, re.M) is not None
    )


def events_named(text: str) -> set[str]:
    return set(EVENT.findall(text)) | set(LOGGED.findall(text))


def section(text: str, heading: str) -> str:
    """The body of the `## heading` section, up to the next `## `."""
    match = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert match, f"no '## {heading}' section"
    return match.group(1)


def first_cells(table_text: str) -> Iterator[str]:
    for line in table_text.splitlines():
        if line.startswith("| `"):
            yield line.split(" | ")[0]


@pytest.mark.parametrize("doc", DOCS, ids=rel)
def test_every_event_the_docs_name_is_logged_by_the_code(doc: Path) -> None:
    named = events_named(doc.read_text(encoding="utf-8"))

    missing = sorted(name for name in named if not in_code_as_string(name))

    assert not missing, f"{rel(doc)} names events the code never logs: {', '.join(missing)}"


def test_the_docs_name_events_at_all() -> None:
    named = set().union(*(events_named(doc.read_text(encoding="utf-8")) for doc in DOCS))

    assert {"csv_write_failed", "gap_after_close", "ingest_behind"} <= named


def test_bus_status_fields_are_fields_of_the_status_map() -> None:
    row = next(
        line
        for line in (ROOT / "docs/bus.md").read_text(encoding="utf-8").splitlines()
        if line.startswith("| `service`")
    )
    top = set(re.findall(r"`([a-z_]+)`", row.split(" | ")[0]))
    feed_map = re.search(r"`feed`[^`]*`\{(.*?)\}`", row)
    assert feed_map, "docs/bus.md: the status row does not spell out the `feed` map"
    feed = {
        key.split(":")[0].strip() for key in re.sub(r"\{[^{}]*\}", "", feed_map.group(1)).split(",")
    }
    wire = msgspec.to_builtins(sample_status_with_feed())

    assert top == set(wire), f"docs/bus.md status fields {sorted(top)} != wire {sorted(wire)}"
    assert feed == set(wire["feed"]), (
        f"docs/bus.md feed fields {sorted(feed)} != {sorted(wire['feed'])}"
    )


def sample_status_with_feed() -> StageStatus:
    return StageStatus("ingest", 1, 1, "s", {}, feed=FeedStatus(True, 1, 1, (), 0.0, {}, 0))


def test_bus_payload_field_names_exist_in_the_code() -> None:
    text = section((ROOT / "docs/bus.md").read_text(encoding="utf-8"), "Topics and payloads")
    names = {name for cell in first_cells(text) for name in re.findall(r"`([a-z_]+)`", cell)}

    missing = sorted(name for name in names if not in_code_as_field(name))

    assert not missing, f"docs/bus.md names payload fields not in the code: {missing}"


def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(doc: Path) -> set[str]:
    return {
        slug(line.lstrip("#"))
        for line in doc.read_text(encoding="utf-8").splitlines()
        if line.startswith("#")
    }


@pytest.mark.parametrize("doc", LINKED, ids=rel)
def test_every_relative_link_reaches_a_file_and_heading(doc: Path) -> None:
    broken = []
    for target in LINK.findall(doc.read_text(encoding="utf-8")):
        if re.match(r"^[a-z]+:", target):
            continue  # http:, https:, mailto:
        path_part, _, anchor = target.partition("#")
        path = (doc.parent / path_part).resolve() if path_part else doc
        if not path.exists():
            broken.append(f"{target} (no such file)")
        elif anchor and path.suffix == ".md" and anchor not in anchors(path):
            broken.append(f"{target} (no such heading)")

    assert not broken, f"{rel(doc)} has broken links: {', '.join(broken)}"


def test_readme_is_at_most_250_lines() -> None:
    lines = README.read_text(encoding="utf-8").count("\n")

    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; move depth to docs/"


def test_event_names_are_found_in_both_spellings() -> None:
    text = "it logs `tape_pruned` and then event=ws_connected"

    assert events_named(text) == {"tape_pruned", "ws_connected"}
