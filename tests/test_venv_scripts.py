"""What ./scripts/demo and ./scripts/test install into .venv, in either order.

The scripts run in a copy of the repository's scripts and pyproject.toml whose
``.venv/bin/python`` only writes down how it was called: pip's own work is not under test.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RECORDER = '#!/bin/sh\necho "$*" >> "$(dirname "$0")/../calls"\n'


def checkout(tmp_path: Path) -> Path:
    """A copy of the scripts and pyproject.toml, with a .venv whose python records its calls."""
    shutil.copytree(ROOT / "scripts", tmp_path / "scripts")
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    python = tmp_path / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(RECORDER)
    python.chmod(0o755)
    return tmp_path


def run(repo: Path, script: str) -> list[str]:
    """Run a script with a pytest argument (the tests then skip the checks); what it installed:
    the project's requirement of each editable install, in order."""
    calls = repo / ".venv" / "calls"
    before = calls.read_text().splitlines() if calls.exists() else []
    subprocess.run([repo / "scripts" / script, "-q"], cwd=repo, check=True, capture_output=True)
    made = calls.read_text().splitlines()[len(before) :]
    return [call.split()[-1] for call in made if call.startswith("-m pip install --quiet -e ")]


def test_the_demo_installs_only_aqueue_and_the_embedded_server(tmp_path: Path) -> None:
    assert run(checkout(tmp_path), "demo") == [".[embedded]"]


def test_the_tests_after_the_demo_install_only_the_dev_set(tmp_path: Path) -> None:
    repo = checkout(tmp_path)
    run(repo, "demo")
    assert run(repo, "test") == [".[dev]"]


def test_the_demo_after_the_tests_installs_nothing(tmp_path: Path) -> None:
    repo = checkout(tmp_path)
    assert run(repo, "test") == [".[dev,embedded]"]
    assert run(repo, "demo") == []


def test_a_changed_pyproject_installs_again(tmp_path: Path) -> None:
    repo = checkout(tmp_path)
    run(repo, "demo")
    with (repo / "pyproject.toml").open("a") as pyproject:
        pyproject.write("# a new dependency\n")
    assert run(repo, "demo") == [".[embedded]"]
