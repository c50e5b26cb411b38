"""What the server spends per job: the instructions it executes (valgrind's callgrind), or
with ``--cpu`` its CPU time.

    python benchmarks/instructions.py --tree before=/tmp/e48 --tree after=. --n 5000
    python benchmarks/instructions.py --workloads kept,fire,retry --tree after=.
    python benchmarks/instructions.py --cpu --reps 3 --n 20000 --tree before=/tmp/e48 --tree after=.
    python benchmarks/instructions.py --workloads fire --processes 4 --concurrency 200 --n 20000

Server CPU time on a shared machine drifts with whatever else it runs; the instructions the
server executes do not. Each measurement starts ``redis-server`` (from the PATH) under
callgrind with counting off, enqueues ``--n`` no-op jobs, counts only while ``--processes``
(default one) ``aqueue worker -c 100`` (``--concurrency``) drain them (until the stream and the
delayed set are empty), and divides the server's total by ``--n``. Workloads: ``kept``
(``result_ttl=3600``), ``fire`` (``result_ttl=0``), ``retry`` (results kept; each job fails
once and runs again after 50 ms, so it is started and finished twice). Each ``--tree`` is an
aqueue source tree run through PYTHONPATH, so the code before a change and after it are
counted the same way. Run with aqueue's ``.venv/bin/python``; valgrind and callgrind_control
must be on the PATH.

With ``--cpu`` the server runs plainly and the same drain gives its CPU time per job
(``used_cpu_user + used_cpu_sys``, kernel time for its sockets included, which callgrind does
not count), and each command's calls per job (INFO commandstats, those inside scripts too).
``--reps`` measurements per tree, the trees taking turns, give a median each: what a shared
machine adds drifts, and alternating spreads that drift over every tree alike.

Under callgrind the server is some fifty times slower, so even one worker process saturates
it: ``--processes`` shows what each job costs a saturated server as the fleet grows (each
process's start-up counts too: a few hundred thousand instructions, so take ``--n`` 20000).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

import redis

from aqueue._redis._keys import Keys

NAMESPACE = "count"

WORKLOADS = {
    "kept": "result_ttl=3600, retries=0",
    "fire": "result_ttl=0, retries=0",
    "retry": "result_ttl=3600, retries=1",
}

# The app every process of one measurement imports (as ``countapp``); {options} from WORKLOADS.
APP = """
import aqueue
import aqueue.backoff

app = aqueue.App({url!r}, namespace={namespace!r}, result_ttl={ttl})


@app.task(name="noop", retries={retries}, backoff=aqueue.backoff.fixed(0.05))
async def noop(i: int) -> None:
    if {retries} and aqueue.current_job().attempt == 1:
        raise ValueError("fails once")
"""

ENQUEUE = """
import asyncio, countapp
async def go():
    for k in range(0, {n}, 1000):
        await countapp.noop.enqueue_many([(i,) for i in range(k, min(k + 1000, {n}))])
    await countapp.app.close()
asyncio.run(go())
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def tree(text: str) -> tuple[str, Path]:
    name, _, path = text.rpartition("=")
    return name or path, Path(path).resolve()


def callgrind(pid: int, *args: str) -> None:
    subprocess.run(
        ["callgrind_control", *args, str(pid)],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def drained(client: redis.Redis) -> bool:
    keys = Keys(NAMESPACE, "default")
    return client.xlen(keys.stream) == 0 and client.zcard(keys.delayed) == 0


def started(argv: list[str], client: redis.Redis) -> subprocess.Popen[bytes]:
    """The server of ``argv``, once ``client`` reaches it."""
    server = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while True:
        try:
            client.ping()
            return server
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                server.kill()
                raise
            time.sleep(0.1)


def server_cpu(client: redis.Redis) -> tuple[float, float]:
    """Seconds of CPU the server has used: its own, and the kernel's for it (its sockets)."""
    info = client.info("cpu")
    return float(info["used_cpu_user"]), float(info["used_cpu_sys"])


def command_calls(client: redis.Redis) -> dict[str, int]:
    """Calls of each command so far, those inside scripts too (INFO commandstats)."""
    return {
        name.removeprefix("cmdstat_"): int(stats["calls"])
        for name, stats in client.info("commandstats").items()
    }


class Drain(NamedTuple):
    """What the server spent per job while one worker drained the jobs."""

    per_job: float
    """Instructions (callgrind), or µs of server CPU."""
    calls: dict[str, float]
    """Calls of each command per job (with ``--cpu`` only: callgrind slows the server)."""
    kernel: float = 0.0
    """With ``--cpu``: µs per job of the kernel's time for the server (``used_cpu_sys``),
    which ``per_job`` includes: a round trip's reads and writes, not in callgrind's count."""


def drain(
    source: Path, workload: str, n: int, scratch: Path, cpu: bool, processes: int, concurrency: int
) -> Drain:
    """What the server spent per job while ``processes`` workers drained ``n`` jobs:
    instructions (counted by callgrind), or with ``cpu`` µs of CPU (the server run plainly)."""
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    out = scratch / f"callgrind.{port}"
    ttl, retries = re.findall(r"=(\d+)", WORKLOADS[workload])
    (scratch / "countapp.py").write_text(
        APP.format(url=url, namespace=NAMESPACE, ttl=ttl, retries=retries)
    )
    # Run in `scratch`: `python -m` puts the working directory first on the path, which would
    # import the aqueue of whatever checkout it is started from.
    env = {**os.environ, "PYTHONPATH": f"{scratch}:{source}"}
    argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no"]  # fmt: skip
    if not cpu:
        argv[:0] = ["valgrind", "--tool=callgrind", "--instr-atstart=no",
                    f"--callgrind-out-file={out}"]  # fmt: skip
    client = redis.Redis.from_url(url)
    server = started(argv, client)
    workers: list[subprocess.Popen[bytes]] = []
    try:
        subprocess.run(
            [sys.executable, "-c", ENQUEUE.format(n=n)], check=True, env=env, cwd=scratch
        )
        if cpu:
            cpu_before, calls_before = server_cpu(client), command_calls(client)
        else:
            callgrind(server.pid, "-i", "on")
        argv = [sys.executable, "-m", "aqueue", "worker", "countapp:app",
                "-c", str(concurrency), "--log-level", "ERROR"]  # fmt: skip
        workers = [
            subprocess.Popen(argv, env=env, cwd=scratch, stderr=subprocess.DEVNULL)
            for _ in range(processes)
        ]
        while not drained(client):
            time.sleep(0.2)
        if cpu:
            (user, kernel), (user_before, kernel_before) = server_cpu(client), cpu_before
            calls = command_calls(client)
            return Drain(
                (user - user_before + kernel - kernel_before) * 1e6 / n,
                {
                    name: (count - calls_before.get(name, 0)) / n
                    for name, count in sorted(calls.items(), key=lambda item: -item[1])
                    if count > calls_before.get(name, 0)
                },
                (kernel - kernel_before) * 1e6 / n,
            )
        callgrind(server.pid, "-i", "off")
        callgrind(server.pid, "-d")
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.wait()
        client.close()
        server.terminate()
        server.wait()
    # The dump and the file written at exit each hold the totals so far: the greatest is ours.
    totals = [
        int(found.group(1))
        for dump in scratch.glob(f"callgrind.{port}*")
        for found in re.finditer(r"^(?:summary|totals): (\d+)", dump.read_text(), re.M)
    ]
    return Drain(max(totals) / n, {})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tree", action="append", type=tree, help="name=path of an aqueue tree")
    parser.add_argument("--workloads", default="kept,fire,retry")
    parser.add_argument("--n", type=int, default=5000, help="jobs per measurement")
    parser.add_argument(
        "--cpu", action="store_true", help="µs of server CPU per job instead of instructions"
    )
    parser.add_argument("--reps", type=int, default=1, help="measurements per tree (median)")
    parser.add_argument("--processes", type=int, default=1, help="worker processes")
    parser.add_argument("--concurrency", type=int, default=100, help="each worker's -c")
    args = parser.parse_args()
    trees = args.tree or [tree(f"this={Path(__file__).resolve().parent.parent}")]
    if not shutil.which("redis-server") or not (args.cpu or shutil.which("valgrind")):
        raise SystemExit("needs redis-server (and without --cpu valgrind) on the PATH")
    unit = "µs of server CPU" if args.cpu else "instructions"
    unit += f", {args.processes} x aqueue worker -c {args.concurrency}"
    shown_reps = f", median of {args.reps} (each measurement in brackets)" if args.reps > 1 else ""
    print(f"{unit} per job{shown_reps}\n")
    print(f"| workload | {' | '.join(name for name, _ in trees)} |")
    print(f"|---|{'--:|' * len(trees)}")
    calls: dict[tuple[str, str], dict[str, float]] = {}
    kernel: dict[tuple[str, str], list[float]] = {}
    for workload in args.workloads.split(","):
        measured: dict[str, list[float]] = {name: [] for name, _ in trees}
        # The trees take turns, so each shares the drift of a busy machine alike.
        for _ in range(args.reps):
            for name, source in trees:
                with tempfile.TemporaryDirectory(prefix="aqueue-instructions-") as scratch:
                    done = drain(
                        source,
                        workload,
                        args.n,
                        Path(scratch),
                        args.cpu,
                        args.processes,
                        args.concurrency,
                    )
                measured[name].append(done.per_job)
                calls[workload, name] = done.calls
                kernel.setdefault((workload, name), []).append(done.kernel)
        shown = ".1f" if args.cpu else ",.0f"
        cells = [
            f"{statistics.median(values):{shown}}"
            + (f" ({', '.join(f'{v:{shown}}' for v in values)})" if len(values) > 1 else "")
            for values in measured.values()
        ]
        print(f"| {workload} | {' | '.join(cells)} |", flush=True)
    if args.cpu:
        print("\nOf which the kernel's (used_cpu_sys), µs per job, median:\n")
        for (workload, name), values in kernel.items():
            print(f"- {workload}, {name}: {statistics.median(values):.1f}")
        print("\nCommands per job, those inside scripts too (the last measurement of each):\n")
        for (workload, name), per_job in calls.items():
            busiest = ", ".join(
                f"{command} {count:.2f}" for command, count in per_job.items() if count >= 0.005
            )
            print(f"- {workload}, {name}: {busiest}")


if __name__ == "__main__":
    main()
