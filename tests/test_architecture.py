"""The layers of docs/architecture.md: every module imports only its layer and those above;
and no module but ``_app.py`` reads an App's private attributes."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "aqueue"


def _layers() -> list[set[str]]:
    """The modules of each layer, foundation first, as the architecture page's table says."""
    page = (ROOT / "docs" / "architecture.md").read_text()
    table = page.split("## Layers", 1)[1]
    rows = re.findall(r"^\| [a-z ]+ \| (`.*`) \|$", table, flags=re.MULTILINE)
    return [set(re.findall(r"`([\w]+)`", row)) for row in rows]


def _top(module: str) -> str:
    """The name the table knows a module by: its package's, or its own."""
    return module.split(".")[1] if "." in module else "__init__"


def _runtime_imports(path: Path, module: str) -> set[str]:
    """The aqueue modules ``path`` imports when it runs (not under ``if TYPE_CHECKING:``)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            for branch in node.orelse:
                visit(branch)
            return
        if isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                targets = (
                    [f"{base}.{node.module}"]
                    if node.module
                    else [f"{base}.{alias.name}" for alias in node.names]
                )
            else:
                targets = [node.module or ""]
            found.update(t for t in targets if t.startswith("aqueue."))
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("aqueue."))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text()))
    return found


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = ["aqueue", *path.relative_to(PACKAGE).with_suffix("").parts]
        if parts[-1] == "__init__" and len(parts) > 1:
            parts.pop()
        found[".".join(parts)] = path
    return found


def test_every_module_is_in_one_layer() -> None:
    layers = _layers()
    placed = [name for layer in layers for name in layer]
    assert len(placed) == len(set(placed))
    assert {_top(module) for module in _modules()} == set(placed)


def test_no_module_imports_a_layer_below_its_own() -> None:
    layer_of = {name: n for n, layer in enumerate(_layers()) for name in layer}
    wrong = sorted(
        f"{module} imports {target}"
        for module, path in _modules().items()
        for target in _runtime_imports(path, module)
        if layer_of[_top(target)] > layer_of[_top(module)]
    )
    assert wrong == []


def test_the_walk_finds_runtime_imports_and_leaves_type_checking_ones(tmp_path: Path) -> None:
    source = tmp_path / "_spy.py"
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "from .._worker import Worker\n"
        "from . import _keys\n"
        "if TYPE_CHECKING:\n"
        "    from ..cli import main\n"
        "def later() -> None:\n"
        "    import aqueue.contrib.otel\n"
    )
    assert _runtime_imports(source, "aqueue._redis._spy") == {
        "aqueue._worker",
        "aqueue._redis._keys",
        "aqueue.contrib.otel",
    }


_APP_NAMES = frozenset({"app", "_app"})
"""What aqueue's code calls an App it holds: a name, or an attribute (``self._app``)."""


def _app_internals_read(path: Path) -> list[str]:
    """Each ``app._x`` (or ``self._app._x``) in ``path``: a private attribute read through a
    name aqueue gives an App."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.Attribute) or not node.attr.startswith("_"):
            continue
        if node.attr.startswith("__"):
            continue  # dunders (__class__, ...) are every object's
        held = node.value
        name = held.id if isinstance(held, ast.Name) else getattr(held, "attr", None)
        if name in _APP_NAMES:
            found.append(f"{path}:{node.lineno}: {ast.unparse(node)}")
    return found


def test_no_module_but_the_apps_reads_an_apps_private_attributes() -> None:
    """Connections, the write path, middleware and hooks reach the rest of aqueue as objects
    handed over, or through the seam at the end of ``_app.py``, never by reaching into App."""
    reads = [
        read
        for path in sorted(PACKAGE.rglob("*.py"))
        if path != PACKAGE / "_app.py"
        for read in _app_internals_read(path)
    ]
    assert reads == []


def test_the_walk_finds_private_reads_through_an_apps_names(tmp_path: Path) -> None:
    source = tmp_path / "_spy.py"
    source.write_text(
        "app._direct.run()\n"
        "self._app._writer\n"
        "self.app._lifecycle\n"
        "self._app.url\n"
        "task._app\n"
        "app.__class__\n"
    )
    found = _app_internals_read(source)
    assert sorted(read.split(": ", 1)[1] for read in found) == [
        "app._direct",
        "self._app._writer",
        "self.app._lifecycle",
    ]
