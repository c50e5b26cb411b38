"""The typed API, as a type checker sees it: tests/typing is checked by mypy --strict."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent


def test_mypy_accepts_good_calls_and_rejects_bad_ones() -> None:
    """Each wrong call in tests/typing carries a `type: ignore`; an unused one fails mypy."""
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--warn-unused-ignores", "tests/typing"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
