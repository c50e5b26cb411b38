"""The benchmark harness's own set-up (the measurements are benchmarks/run.py's)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).parent.parent


def _server_module() -> Any:
    spec = importlib.util.spec_from_file_location("bench_server", ROOT / "benchmarks/_server.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_benchmarks_run_on_the_embedded_valkey_without_redis_server(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # a PATH that holds no redis-server
    server = _server_module().redis_server()
    try:
        assert Path(server.binary).name == "valkey-server"
    finally:
        server.close()
