"""Every code block of the docs and of README.md is run or checked, so none can go stale
unnoticed.

- **python**: a page's blocks run in order as one module, with top-level ``await`` allowed,
  against a real server: ``AQUEUE_URL`` and ``AQUEUE_NAMESPACE`` point ``aqueue.App()`` at
  it, and ``redis://localhost:6379/0`` written in a block means it too. Workers and apps the
  blocks leave running are stopped and closed after the page.
- **bash**: each block is parsed by ``bash -n``; each ``aqueue ...`` command is parsed by the
  click commands themselves (so a flag or subcommand that does not exist fails), extras in
  ``pip install 'aqueue-redis[...]'`` (or in a clone's path) must be extras of the
  distribution, and scripts and files named must exist.
- **ini**, **yaml**, **toml**, **json**: parsed; the ``aqueue`` commands of a systemd unit's
  ``ExecStart`` and of a Kubernetes manifest are checked like bash's.
- **text** and **console** blocks are output, not code: nothing to run.

An HTML comment right before a block (readers do not see it) says how to run it:

- ``<!-- docs-test: compile-only (why) -->``: compiled only, e.g. another library's code.
- ``<!-- docs-test: tested-by test_name -->``: run by that test of ``tests/test_docs*.py``
  (e.g. a script the quickstart runs as a process).
- ``<!-- docs-test`` then Python lines then ``-->``: code run before the block, for what the
  page leaves to the reader (a function the block calls, a worker to take its jobs). It may
  enter context managers into ``stack``, an ``AsyncExitStack`` closed after the page.
"""

from __future__ import annotations

import ast
import configparser
import contextlib
import dataclasses
import inspect
import json
import logging
import os
import re
import shlex
import subprocess
import sys
import textwrap
import tomllib
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest
import yaml  # type: ignore[import-untyped]  # mkdocs's dependency: no stubs in the dev set

import aqueue
from aqueue.cli import main as aqueue_cli
from aqueue.testing import RedisServer

ONE_LOOP = True  # the blocks run on the loop a reader's program picks; one is enough here

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
"""The README is a newcomer's first page: its blocks are held to the docs' rule."""
DEFAULT_URL = "redis://localhost:6379/0"
OUTPUT = {"text", "console"}
"""Languages of blocks that show output, not code."""

_FENCE = re.compile(r"^(?P<indent> *)```(?P<language>\w*)\s*$")
_DIRECTIVE = re.compile(r"<!-- docs-test(?::\s*(?P<kind>[\w-]+)\s*(?P<arg>.*?))?\s*-->\s*$")


@dataclasses.dataclass(frozen=True)
class Block:
    page: Path
    line: int
    """The line of the opening fence, counted from 1."""
    language: str
    code: str
    kind: str = "run"
    """``run``, ``compile-only`` or ``tested-by`` (from the comment before the block)."""
    argument: str = ""
    """The test of ``tested-by``; the reason of ``compile-only``."""
    setup: str = ""
    """Code the comment before the block runs first."""

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"

    @property
    def included(self) -> bool:
        """A block that includes a file of the repository (``--8<--``): tested as that file."""
        return "--8<--" in self.code


def blocks_of(page: Path) -> list[Block]:
    """The fenced blocks of ``page``, each with the docs-test comment right before it."""
    lines = page.read_text().splitlines()
    found: list[Block] = []
    index = 0
    while index < len(lines):
        opening = _FENCE.match(lines[index])
        if opening is None:
            index += 1
            continue
        end = next(
            i for i in range(index + 1, len(lines)) if lines[i].strip() == "```"
        )  # a block without its closing fence fails here, as mkdocs would mangle it
        code = textwrap.dedent("\n".join(lines[index + 1 : end])) + "\n"
        found.append(Block(page, index + 1, opening["language"], code, *_directive(lines, index)))
        index = end + 1
    return found


def _directive(lines: list[str], fence: int) -> tuple[str, str, str]:
    """The kind, argument and setup code that a comment ending on the line before says."""
    before = fence - 1
    if before < 0 or not lines[before].strip().endswith("-->"):
        return "run", "", ""
    start = next(i for i in range(before, -1, -1) if "<!--" in lines[i])
    comment = lines[start : before + 1]
    if len(comment) > 1 and comment[0].strip() == "<!-- docs-test":
        return "run", "", textwrap.dedent("\n".join(comment[1:-1])) + "\n"
    directive = _DIRECTIVE.search(" ".join(line.strip() for line in comment))
    if directive is None:
        return "run", "", ""
    assert directive["kind"] in {"compile-only", "tested-by"}, f"line {start + 1}: {comment}"
    return directive["kind"], directive["arg"].strip(), ""


def all_blocks() -> Iterator[Block]:
    for page in PAGES:
        yield from blocks_of(page)


def pages_with(language: str) -> list[Path]:
    return [page for page in PAGES if any(b.language == language for b in blocks_of(page))]


def page_id(page: Path) -> str:
    return str(page.relative_to(ROOT))


# ---------------------------------------------------------------------------------- python


@pytest.fixture(scope="module")
def docs_server() -> Iterator[RedisServer]:
    with RedisServer.valkey() as running:
        yield running


async def _run(code: str, where: str, scope: dict[str, Any]) -> None:
    compiled = compile(code, where, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    outcome = eval(compiled, scope)  # a coroutine when the block awaits at its top level
    if inspect.iscoroutine(outcome):
        await outcome


@pytest.mark.parametrize("page", pages_with("python"), ids=page_id)
async def test_the_python_blocks_of_a_page_run_in_order(
    page: Path, docs_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AQUEUE_URL", docs_server.url)
    monkeypatch.setenv("AQUEUE_NAMESPACE", f"docs-{page.stem}")
    # A module of its own, as a reader's file is: dataclasses and annotations look names up
    # in sys.modules[__module__].
    module = types.ModuleType(f"docs_{page.stem}")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    scope = module.__dict__
    # A block may configure logging, as a reader's program does: not for the tests after.
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", list(root.handlers))
    apps: dict[int, aqueue.App] = {}
    async with contextlib.AsyncExitStack() as stack:
        scope["stack"] = stack
        for block in blocks_of(page):
            if block.language != "python" or block.included:
                continue
            if block.kind != "run":
                compile(block.code, block.where, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
                continue
            if block.setup:
                await _run(block.setup, f"{block.where} (setup)", scope)
            await _run(block.code.replace(DEFAULT_URL, docs_server.url), block.where, scope)
            # Looked for after each block: a later one may give the name to another app.
            apps.update({id(v): v for v in scope.values() if isinstance(v, aqueue.App)})
    for app in apps.values():
        await app.close()


def test_a_block_tested_elsewhere_names_a_test_that_exists() -> None:
    tests = "".join(path.read_text() for path in Path(__file__).parent.glob("test_docs*.py"))
    named = [block for block in all_blocks() if block.kind == "tested-by"]
    assert named
    for block in named:
        assert f"def {block.argument}(" in tests, f"{block.where}: no test {block.argument}"


# ---------------------------------------------------------------------------------- shell


def _extras() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return set(project["optional-dependencies"])


def check_aqueue_command(args: list[str], where: str) -> None:
    """Parse ``aqueue ARGS`` with the click commands, as the command line would, running
    nothing: an unknown command or flag, a missing argument or a bad value fails."""
    line = f"aqueue {shlex.join(args)}"
    command: click.Command = aqueue_cli
    parent: click.Context | None = None
    name = "aqueue"
    try:
        while True:
            context = command.make_context(name, list(args), parent=parent)
            if not isinstance(command, click.Group):
                return
            rest = [*context._protected_args, *context.args]
            resolved, sub, args = command.resolve_command(context, rest)
            assert sub is not None, f"{where}: {line}"
            command, parent, name = sub, context, resolved or sub.name or ""
    except click.exceptions.Exit as done:  # --version, --help
        if done.exit_code != 0:
            pytest.fail(f"{where}: {line}: exit status {done.exit_code}")
    except click.ClickException as exc:
        pytest.fail(f"{where}: {line}: {exc.format_message()}")


def _commands(code: str) -> Iterator[list[str]]:
    """The words of each command of a shell block, less leading variable assignments."""
    for line in code.replace("\\\n", " ").splitlines():
        # "[-q Q]" shows an option one may add: check it given.
        line = re.sub(r"\s\[(-[^\]]*)\]", r" \1", line)
        lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|")
        lexer.whitespace_split = True
        words: list[str] = []
        for token in [*lexer, ";"]:
            if token not in {";", "&&", "||", "|", "&"}:
                words.append(token)
                continue
            while words and re.fullmatch(r"\w+=.*", words[0]):
                words.pop(0)
            if words:
                yield words
            words = []


def check_shell_command(words: list[str], where: str) -> None:
    program, args = words[0], words[1:]
    if program == "aqueue":
        check_aqueue_command(args, where)
    elif program == "pip" and args[:1] == ["install"]:
        for requirement in args[1:]:
            name, _, extras = requirement.partition("[")
            if (name == "aqueue-redis" or "/" in name) and extras:  # from PyPI, or a clone
                unknown = set(extras.rstrip("]").split(",")) - _extras()
                assert not unknown, f"{where}: no extra {unknown} of aqueue-redis"
    elif program.startswith("./"):
        assert (ROOT / program).is_file(), f"{where}: no {program}"
    elif program == "python" and args[:1] == ["-c"]:
        compile(args[1], where, "exec")
    elif program == "python" and args and args[0].endswith(".py") and "/" in args[0]:
        assert (ROOT / args[0]).is_file(), f"{where}: no {args[0]}"


def without_aqueue_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """The commands' own variables would fill in what a command line lacks."""
    for variable in [name for name in os.environ if name.startswith("AQUEUE_")]:
        monkeypatch.delenv(variable)


def shell_blocks() -> list[Block]:
    return [b for b in all_blocks() if b.language == "bash"]


@pytest.mark.parametrize("block", shell_blocks(), ids=lambda block: block.where)
def test_a_shell_block_parses_and_its_commands_exist(
    block: Block, monkeypatch: pytest.MonkeyPatch
) -> None:
    without_aqueue_variables(monkeypatch)
    syntax = subprocess.run(["bash", "-n"], input=block.code, capture_output=True, text=True)
    assert syntax.returncode == 0, f"{block.where}: {syntax.stderr}"
    for words in _commands(block.code):
        check_shell_command(words, block.where)


# ------------------------------------------------------------------------------ the rest


def _configuration(block: Block) -> Any:
    if block.language == "ini":
        parser = configparser.ConfigParser(interpolation=None)
        parser.optionxform = str  # type: ignore[assignment,method-assign]
        parser.read_string(block.code)
        return parser
    if block.language == "yaml":
        return yaml.safe_load(block.code)
    if block.language == "toml":
        return tomllib.loads(block.code)
    return json.loads(block.code)


@pytest.mark.parametrize(
    "block",
    [b for b in all_blocks() if b.language in {"ini", "yaml", "toml", "json"} and not b.included],
    ids=lambda block: block.where,
)
def test_a_configuration_block_parses_and_its_aqueue_commands_exist(
    block: Block, monkeypatch: pytest.MonkeyPatch
) -> None:
    without_aqueue_variables(monkeypatch)
    parsed = _configuration(block)
    for command in _aqueue_commands(parsed):
        check_aqueue_command(command, block.where)


def _aqueue_commands(parsed: Any) -> Iterator[list[str]]:
    """``aqueue`` command lines in a systemd unit (``ExecStart``) or a manifest
    (``command:`` lists)."""
    if isinstance(parsed, configparser.ConfigParser):
        for section in parsed.values():
            if "ExecStart" in section:
                words = shlex.split(section["ExecStart"])
                if Path(words[0]).name == "aqueue":
                    yield words[1:]
    elif isinstance(parsed, dict):
        for key, value in parsed.items():
            if key == "command" and isinstance(value, list) and value[:1] == ["aqueue"]:
                yield [str(word) for word in value[1:]]
            else:
                yield from _aqueue_commands(value)
    elif isinstance(parsed, list):
        for item in parsed:
            yield from _aqueue_commands(item)


def test_every_block_has_a_language_that_is_run_or_checked() -> None:
    checked = {"python", "bash", "ini", "yaml", "toml", "json"} | OUTPUT
    for block in all_blocks():
        assert block.language in checked, f"{block.where}: no check for {block.language!r}"


def test_the_readmes_links_to_files_of_the_repository_name_files_that_exist() -> None:
    """mkdocs checks the links of docs/, not those of the README, which it does not build."""
    readme = ROOT / "README.md"
    links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", readme.read_text())
    local = [link for link in links if "://" not in link]
    assert local
    missing = [link for link in local if not (ROOT / link).exists()]
    assert not missing, f"README.md links to files that do not exist: {missing}"
