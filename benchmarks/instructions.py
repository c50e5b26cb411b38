"""How many instructions the server executes per job, counted by valgrind's callgrind.

    python benchmarks/instructions.py --tree before=/tmp/e48 --tree after=. --n 5000
    python benchmarks/instructions.py --workloads kept,fire,retry --tree after=.

Server CPU time on a shared machine drifts with whatever else it runs; the instructions the
server executes do not. Each measurement starts ``redis-server`` (from the PATH) under
callgrind with counting off, enqueues ``--n`` no-op jobs, counts only while one ``aqueue
worker -c 100`` drains them (until the stream and the delayed set are empty), and divides the
server's total by ``--n``. Workloads: ``kept`` (``result_ttl=3600``), ``fire``
(``result_ttl=0``), ``retry`` (results kept; each job fails once and runs again after 50 ms,
so it is started and finished twice). Each ``--tree`` is an aqueue source tree run through
PYTHONPATH, so the code before a change and after it are counted the same way. Run with
aqueue's ``.venv/bin/python``; valgrind and callgrind_control must be on the PATH.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

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


def count(source: Path, workload: str, n: int, scratch: Path) -> float:
    """Instructions the server executed per job while one worker drained ``n`` jobs."""
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
    server = subprocess.Popen(
        ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}",
         "redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    client = redis.Redis.from_url(url)
    worker = None
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        subprocess.run(
            [sys.executable, "-c", ENQUEUE.format(n=n)], check=True, env=env, cwd=scratch
        )
        callgrind(server.pid, "-i", "on")
        worker = subprocess.Popen(
            [sys.executable, "-m", "aqueue", "worker", "countapp:app", "-c", "100",
             "--log-level", "ERROR"],
            env=env, cwd=scratch, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        while not drained(client):
            time.sleep(0.2)
        callgrind(server.pid, "-i", "off")
        callgrind(server.pid, "-d")
    finally:
        if worker is not None:
            worker.terminate()
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
    return max(totals) / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tree", action="append", type=tree, help="name=path of an aqueue tree")
    parser.add_argument("--workloads", default="kept,fire,retry")
    parser.add_argument("--n", type=int, default=5000, help="jobs per measurement")
    args = parser.parse_args()
    trees = args.tree or [tree(f"this={Path(__file__).resolve().parent.parent}")]
    if not shutil.which("valgrind") or not shutil.which("redis-server"):
        raise SystemExit("needs valgrind and redis-server on the PATH")
    print(f"| workload | {' | '.join(name for name, _ in trees)} |")
    print(f"|---|{'--:|' * len(trees)}")
    for workload in args.workloads.split(","):
        cells = []
        for _, source in trees:
            with tempfile.TemporaryDirectory(prefix="aqueue-instructions-") as scratch:
                cells.append(f"{count(source, workload, args.n, Path(scratch)):,.0f}")
        print(f"| {workload} | {' | '.join(cells)} |", flush=True)


if __name__ == "__main__":
    main()
