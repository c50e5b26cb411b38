"""CHANGELOG.md tells a user what a release holds, not how its development went."""

from __future__ import annotations

import re
from pathlib import Path

CHANGELOG = Path(__file__).resolve().parent.parent / "CHANGELOG.md"


def headings(level: int) -> list[str]:
    """The titles of the changelog's headings of one level (``2``: ``## ...``)."""
    return re.findall(rf"^{'#' * level} (.+)$", CHANGELOG.read_text(), flags=re.MULTILINE)


def test_the_changelog_has_one_version_section_released_or_unreleased() -> None:
    [version] = headings(2)
    assert re.fullmatch(r"\[\d+\.\d+\.\d+\] - (Unreleased|\d{4}-\d{2}-\d{2})", version)


def test_the_first_releases_section_is_one_added_list() -> None:
    """Nothing was released before 0.1.0: a fix of a bug no release had is no change to a user."""
    assert headings(3) == ["Added"]
