"""aqueue.pytest_plugin, run as users run it: pytest in a project of its own, in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # each test starts a pytest of its own, a second or two

ROOT = Path(__file__).resolve().parent.parent

TASKS = """
import asyncio
import aqueue

app = aqueue.App(namespace="project")

@app.task
async def add(x: int, y: int) -> int:
    return x + y

@app.task
async def hang() -> None:
    await asyncio.sleep(60)
"""

PLUGIN_ON = "addopts = -p aqueue.pytest_plugin\naqueue_app = tasks:app\n"


def run_pytest(project: Path, tests: str, ini: str = PLUGIN_ON) -> subprocess.CompletedProcess[str]:
    """pytest run on ``tests`` in ``project``, next to a module ``tasks`` that holds ``app``."""
    (project / "tasks.py").write_text(TASKS)
    (project / "test_it.py").write_text(textwrap.dedent(tests))
    (project / "pytest.ini").write_text(f"[pytest]\nasyncio_mode = auto\n{ini}")
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(project)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=project,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def test_the_testing_guides_example_passes_under_the_plugin() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "examples/testing"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 passed" in result.stdout


def test_a_failed_assert_enqueued_shows_the_jobs_that_were_enqueued(tmp_path: Path) -> None:
    result = run_pytest(
        tmp_path,
        """
        import tasks

        async def test_it(aqueue_jobs):
            await tasks.add.enqueue(1, 2)
            aqueue_jobs.assert_enqueued(tasks.add, 1, 3)
        """,
    )
    assert result.returncode == 1
    assert (
        "no job of tasks.add was enqueued with args=(1, 3) kwargs={}; its jobs: [((1, 2), {})]"
        in result.stdout
    )


def test_run_until_empty_gives_up_on_a_job_that_does_not_end_and_says_where_it_is(
    tmp_path: Path,
) -> None:
    result = run_pytest(
        tmp_path,
        """
        import tasks

        async def test_it(aqueue_jobs):
            await tasks.hang.enqueue()
            await aqueue_jobs.run_until_empty(timeout=0.5)
        """,
    )
    assert result.returncode == 1
    assert "TimeoutError: jobs are left after 0.5 s: default: 0 queued" in result.stdout
    assert "1 running" in result.stdout


def test_jobs_of_one_test_are_not_seen_by_the_next(tmp_path: Path) -> None:
    result = run_pytest(
        tmp_path,
        """
        import tasks

        async def test_first(aqueue_app, aqueue_jobs):
            await tasks.add.enqueue(1, 2)
            assert (await aqueue_app.queue().stats()).queued == 1

        async def test_second(aqueue_app, aqueue_jobs):
            assert aqueue_jobs.enqueued == []
            assert (await aqueue_app.queue().stats()).queued == 0
        """,
    )
    assert result.returncode == 0, result.stdout
    assert "2 passed" in result.stdout


def test_the_plugin_without_an_app_setting_says_how_to_name_the_app(tmp_path: Path) -> None:
    result = run_pytest(
        tmp_path,
        """
        async def test_it(aqueue_app):
            pass
        """,
        ini="addopts = -p aqueue.pytest_plugin\n",
    )
    assert result.returncode != 0
    assert "name your app with aqueue_app = 'module:attribute'" in result.stdout + result.stderr


def test_a_misspelt_app_setting_suggests_the_app_without_the_commands_wording(
    tmp_path: Path,
) -> None:
    result = run_pytest(
        tmp_path,
        """
        async def test_it(aqueue_app):
            pass
        """,
        ini="addopts = -p aqueue.pytest_plugin\naqueue_app = tasks:ap\n",
    )
    output = result.stdout + result.stderr
    assert "aqueue_app = 'tasks:ap': tasks.ap is missing, not an aqueue.App" in output
    assert "did you mean 'tasks:app'?" in output


def test_the_plugin_is_not_loaded_unless_a_project_enables_it(tmp_path: Path) -> None:
    result = run_pytest(
        tmp_path,
        """
        def test_it(aqueue_jobs):
            pass
        """,
        ini="",
    )
    assert result.returncode == 1
    assert "fixture 'aqueue_jobs' not found" in result.stdout
