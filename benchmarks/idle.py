"""What an idle fleet costs Redis: commands per second per (worker, queue) pair, beside arq and saq.

    .venv/bin/python benchmarks/idle.py                   # 4 workers on 5 queues, 30 s each
    .venv/bin/python benchmarks/idle.py --seconds 60 --only aqueue

A worker fleet sits idle most of the day, and what it sends then is paid for on the one Redis
core every worker shares. For each library, a fresh server, then 4 workers on each of 5 queues
with nothing to do: aqueue's 4 ``aqueue worker`` processes each serve all 5 queues; arq and saq
serve one queue per worker process, so they run 4 processes per queue (20). After the workers
settle (``--warmup``), the server counts for ``--seconds``:

- *sent*: the commands clients sent (MONITOR; a script call is one command), and
- *run*: the commands the server ran, those inside scripts too (INFO commandstats),

each per second and per (worker, queue) pair. arq runs at its default poll delay (0.5 s) and at
the 5 ms the drain benchmark gives it. The peers come from ``benchmarks/.venv-peers`` (run.py
builds it); the results go to ``--out`` (idle.md and idle.json).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import _procs  # noqa: E402
from _server import redis_server  # noqa: E402
from run import ensure_peers_env  # noqa: E402

WORKERS = 4
QUEUES = 5
OWN = {"INFO", "CONFIG", "MONITOR"}
"""The commands of the count itself."""


class Fleet:
    """One library's idle fleet: the adapter, its settings, and how its workers spread."""

    def __init__(self, label: str, adapter: str, env: dict[str, str], *, all_queues: bool):
        self.label = label
        self.adapter = adapter
        self.env = env
        self.all_queues = all_queues
        """Whether one worker process serves every queue (else one queue per process)."""

    def processes(self) -> list[dict[str, str]]:
        """The environment of each worker process to start."""
        if self.all_queues:
            return [{**self.env, "BENCH_QUEUES": str(QUEUES)}] * WORKERS
        return [{**self.env, "BENCH_QUEUE": f"q{q}"} for q in range(QUEUES) for _ in range(WORKERS)]


FLEETS = [
    Fleet("aqueue", "aqueue", {}, all_queues=True),
    Fleet("arq (poll 0.5 s, its default)", "arq", {"BENCH_ARQ_POLL": "0.5"}, all_queues=False),
    Fleet("arq (poll 5 ms, as in the drains)", "arq", {}, all_queues=False),
    Fleet("saq", "saq", {}, all_queues=False),
]


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="counting time per library")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds to settle first")
    parser.add_argument("--only", help="adapters to run, comma-separated (aqueue,arq,saq)")
    parser.add_argument("--out", type=Path)
    return parser.parse_args()


def worker_argv(python: Path, adapter: str, env: dict[str, str]) -> list[str]:
    """The adapter's own worker command, as it builds it in the library's environment."""
    probe = (
        "import json, sys\n"
        f"sys.path.insert(0, {str(HERE)!r})\n"
        f"from peers import {adapter} as peer\n"
        "print(json.dumps(peer.worker_argv('noop', 100)))\n"
    )
    done = subprocess.run(
        [str(python), "-c", probe], capture_output=True, text=True, env=env, cwd=HERE, check=True
    )
    argv: list[str] = json.loads(done.stdout.strip().splitlines()[-1])
    return argv


async def count(url: str, seconds: float) -> tuple[Counter[str], Counter[str]]:
    """The commands sent (MONITOR) and run (commandstats) by name, over ``seconds``."""
    from redis.asyncio import Redis

    client, watcher = Redis.from_url(url), Redis.from_url(url)
    sent: Counter[str] = Counter()

    async def listen() -> None:
        async with watcher.monitor() as monitor:
            async for command in monitor.listen():
                if command["client_type"] != "lua":
                    sent[command["command"].split()[0].upper()] += 1

    listening = asyncio.create_task(listen())
    await client.ping()
    await asyncio.sleep(0.5)  # both connections made: neither's setup is counted
    await client.config_resetstat()
    await asyncio.sleep(seconds)
    listening.cancel()
    stats = await client.info("commandstats")
    await client.aclose()
    await watcher.aclose()
    run: Counter[str] = Counter()
    for name, value in stats.items():
        command = name.removeprefix("cmdstat_").upper()
        if command.split("|")[0] not in OWN:
            run[command] += int(value["calls"])
    for own in OWN:
        sent.pop(own, None)
    return sent, run


def measure(fleet: Fleet, python: Path, args: argparse.Namespace) -> dict[str, Any]:
    server = redis_server()
    server.start()
    started: list[subprocess.Popen[bytes]] = []
    try:
        for extra in fleet.processes():
            env = {**os.environ, **extra, "BENCH_REDIS_URL": server.url, "BENCH_RESULTS": "0"}
            argv = worker_argv(python, fleet.adapter, env)
            started.append(
                subprocess.Popen(
                    argv, cwd=HERE, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
                )
            )
        time.sleep(args.warmup)
        dead = [proc.args for proc in started if proc.poll() is not None]
        if dead:
            raise SystemExit(f"{fleet.label}: a worker exited during the warm-up: {dead[0]}")
        sent, run = asyncio.run(count(server.url, args.seconds))
    finally:
        for proc in started:
            _procs.kill_tree(proc.pid)
        server.stop()
    pairs = WORKERS * QUEUES
    return {
        "library": fleet.label,
        "processes": len(started),
        "sent_per_pair_s": sent.total() / args.seconds / pairs,
        "run_per_pair_s": run.total() / args.seconds / pairs,
        "sent": dict(sent.most_common()),
        "run": dict(run.most_common()),
    }


def table(rows: list[dict[str, Any]], args: argparse.Namespace) -> str:
    lines = [
        f"Idle: {WORKERS} workers on each of {QUEUES} queues, {args.seconds:.0f} s counted after "
        f"{args.warmup:.0f} s to settle. Per (worker, queue) pair and second:",
        "",
        "| library | processes | commands sent | commands run (scripts' too) | sent, by name |",
        "|---|--:|--:|--:|---|",
    ]
    for row in rows:
        names = ", ".join(
            f"{name} {calls / args.seconds:.2f}/s" for name, calls in list(row["sent"].items())[:4]
        )
        lines.append(
            f"| {row['library']} | {row['processes']} | {row['sent_per_pair_s']:.3f} "
            f"| {row['run_per_pair_s']:.3f} | {names} |"
        )
    return "\n".join(lines)


def main() -> None:
    args = parse()
    only = set(args.only.split(",")) if args.only else None
    fleets = [fleet for fleet in FLEETS if only is None or fleet.adapter in only]
    peers_python = None
    if any(fleet.adapter != "aqueue" for fleet in fleets):
        peers_python, _ = ensure_peers_env(reinstall=False)
    rows = []
    for fleet in fleets:
        python = Path(sys.executable) if fleet.adapter == "aqueue" else peers_python
        assert python is not None
        print(f"{fleet.label} ...", flush=True)
        rows.append(measure(fleet, python, args))
    out = args.out or Path(tempfile.mkdtemp(prefix="aqueue-idle-"))
    out.mkdir(parents=True, exist_ok=True)
    text = table(rows, args)
    (out / "idle.md").write_text(text + "\n")
    (out / "idle.json").write_text(json.dumps(rows, indent=2) + "\n")
    print(text)
    print(f"\nwritten to {out}")


if __name__ == "__main__":
    main()
