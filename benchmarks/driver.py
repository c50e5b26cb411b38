"""Run one measurement of one library against a server that run.py started, and write JSON.

Started by run.py with the interpreter of the environment that has the library (the peers
virtualenv, or aqueue's own .venv for ``--only aqueue,raw``)::

    python benchmarks/driver.py --lib arq --workload drain --n 20000 --url redis://... --out f.json

The driver enqueues from this process and starts the library's worker processes with the
library's own worker entry. Every process it starts is listed in ``--pidfile`` as soon as it
runs, and killed by PID (with its descendants) before the driver exits, so run.py can clean up
too if the driver itself has to be killed. A wrong count of runs, a wrong result or a worker
that dies is a failure of this measurement: the JSON says ``"ok": false`` and why.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import importlib
import json
import os
import signal
import statistics
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import _procs

HERE = Path(__file__).resolve().parent
BATCH_SIZE = 1_000
PREFILL_CONCURRENCY = 64
PREFILL_PROCESSES = 2
"""Processes that share an untimed prefill without a batch API (one per core here)."""
PREFILL_SPLIT_FROM = 2_000
"""Smaller prefills stay in the driver: starting a process costs more than they take."""
ROUND_TRIP_TIMEOUT = 10.0
"""Seconds one measured round trip may take before the library fails the latency workload."""


class Failed(Exception):
    """The library did not do what the workload asked: fail this measurement loudly.

    ``metrics`` keeps what was measured anyway (e.g. the time of a drain in which a task ran
    twice), shown beside the failure, never as a result.
    """

    def __init__(self, message: str, metrics: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.metrics = metrics or {}


# -- processes -------------------------------------------------------------------------------


STARTED: list[Workers] = []
"""Every group of workers this driver started, killed again on the way out whatever happens."""


class Workers:
    """The library's worker processes for one measurement."""

    def __init__(self, argv: list[str], env: dict[str, str], log: Path, pidfile: Path) -> None:
        self.argv = argv
        self.env = env
        self.log = log
        self.pidfile = pidfile
        self.procs: list[subprocess.Popen[bytes]] = []
        STARTED.append(self)

    def start(self, count: int) -> None:
        with self.log.open("ab") as log:
            for _ in range(count):
                proc = subprocess.Popen(
                    self.argv,
                    cwd=HERE,
                    env=self.env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
                self.procs.append(proc)
                with self.pidfile.open("a") as pids:
                    pids.write(f"{proc.pid} {_procs.start_time(proc.pid)}\n")

    def check_alive(self) -> None:
        for proc in self.procs:
            if proc.poll() is not None:
                raise Failed(f"worker exited with {proc.returncode}:\n{self.tail()}")

    def peak_rss(self) -> dict[str, int]:
        """VmHWM of every worker process tree: the sum, the largest process, and the count."""
        trees = [_procs.tree(proc.pid) for proc in self.procs]
        sizes = [_procs.vm_hwm_kb(pid) for found in trees for pid, _ in found]
        sizes = [size for size in sizes if size]
        return {
            "rss_tree_kb": sum(sizes),
            "rss_max_kb": max(sizes, default=0),
            "processes": len(sizes),
        }

    def tail(self, lines: int = 25) -> str:
        try:
            text = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(text[-lines:])

    def kill(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                _procs.kill_tree(proc.pid)
        for proc in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)


# -- measuring ---------------------------------------------------------------------------------


class Run:
    def __init__(self, args: argparse.Namespace, module: Any) -> None:
        import redis.asyncio
        from peers._common import CLUSTER_SCHEME, connect

        self.args = args
        self.module = module
        self.client = module.Client()
        self.cluster = args.url.startswith(CLUSTER_SCHEME)
        # No socket timeout (redis-py 8 waits 5 s): a server saturated on purpose
        # (scaling.py --server-cpu) can answer the driver's look at the runs later than that.
        self.redis = connect(args.url, redis.asyncio, socket_timeout=None)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), env.get("PYTHONPATH")]))
        self.env = env
        self.workers: Workers | None = None

    @property
    def sync(self) -> bool:
        return bool(getattr(self.module, "SYNC", False))

    async def enqueue_all(self, kind: str, count: int, start: int = 0) -> None:
        """Put ``count`` tasks in the queue as fast as the library allows (not timed)."""
        if count >= PREFILL_SPLIT_FROM:
            await self.prefill_in_processes(kind, start, count)
        else:
            await self.enqueue_each(kind, count, start)

    async def enqueue_each(self, kind: str, count: int, start: int) -> None:
        """From this process: through the batch API, else one call at a time through a
        blocking client, else 64 awaits at once."""
        if self.module.HAS_BATCH:
            for at in range(start, start + count, BATCH_SIZE):
                await self.client.enqueue_batch(
                    kind, list(range(at, min(at + BATCH_SIZE, start + count)))
                )
            return
        if self.sync:
            for i in range(start, start + count):
                await self.client.enqueue(kind, i)
            return
        gate = asyncio.Semaphore(PREFILL_CONCURRENCY)

        async def one(i: int) -> None:
            async with gate:
                await self.client.enqueue(kind, i)

        for at in range(start, start + count, 10_000):
            await asyncio.gather(*(one(i) for i in range(at, min(at + 10_000, start + count))))

    async def prefill_in_processes(self, kind: str, start: int, count: int) -> None:
        """Enqueue from one process per core, each a share: the clients spend their time in
        Python (celery: 1,000 a second), so an untimed prefill of 100,000 tasks from one
        process would stretch the run by minutes. Each process's connections close when it
        exits, so none of them counts in the server's memory after the prefill."""
        share = -(-count // PREFILL_PROCESSES)
        groups = []
        for at in range(start, start + count, share):
            n = min(share, start + count - at)
            argv = [sys.executable, str(HERE / "driver.py"), *self.argv_for("prefill", n)]
            argv += ["--kind", kind, "--start", str(at)]
            log = Path(self.args.logdir) / f"{self.args.lib}-prefill-{at}-{os.getpid()}.log"
            group = Workers(argv, self.env, log, Path(self.args.pidfile))
            group.start(1)
            groups.append(group)
        for group in groups:
            [proc] = group.procs
            if await asyncio.to_thread(proc.wait) != 0:
                raise Failed(f"a prefill process exited with {proc.returncode}:\n{group.tail()}")

    def argv_for(self, workload: str, n: int) -> list[str]:
        """Driver arguments for another measurement process of this run's library."""
        args = self.args
        out = Path(args.logdir) / f"{args.lib}-{workload}-{os.getpid()}-{time.monotonic_ns()}.json"
        return [
            *("--lib", args.lib, "--workload", workload, "--n", str(n)),
            *("--concurrency", str(args.concurrency), "--results", str(args.results)),
            *("--sleep", repr(args.sleep), "--url", args.url, "--out", str(out)),
            *("--logdir", args.logdir, "--pidfile", args.pidfile),
        ]

    async def prefill(self) -> dict[str, Any]:
        """Not a measurement: a share of another process's prefill (see prefill_in_processes)."""
        await self.enqueue_each(self.args.kind, self.args.n, self.args.start)
        return {"enqueued": self.args.n}

    async def expect_queued(self, count: int) -> None:
        queued = await self.client.queued()
        if queued != count:
            raise Failed(f"{queued} tasks in the queue after enqueuing {count}")

    def start_workers(self, kind: str, count: int) -> Workers:
        argv = self.module.worker_argv(kind, self.args.concurrency)
        name = f"{self.args.lib}-{self.args.workload}-w{count}-{os.getpid()}.log"
        log, pidfile = Path(self.args.logdir) / name, Path(self.args.pidfile)
        self.workers = Workers(argv, self.env, log, pidfile)
        self.workers.start(count)
        return self.workers

    async def wait_for_runs(self, n: int, deadline: float) -> dict[str, Any]:
        """Wait until ``n`` tasks recorded a run; check each ran exactly once; return the span."""
        from peers._common import COUNT_KEY, RUNS_KEY, SPAN_KEY

        assert self.workers is not None
        count = 0
        while count < n:
            if time.monotonic() > deadline:
                raise Failed(f"only {count} of {n} tasks ran before the time limit")
            self.workers.check_alive()
            await asyncio.sleep(0.01)
            count = int(await self.redis.get(COUNT_KEY) or 0)
        await asyncio.sleep(0.1)  # a duplicate delivery would be recorded by now
        flushes = await self.redis.lrange(RUNS_KEY, 0, -1)
        runs = collections.Counter(int(i) for flush in flushes for i in flush.split(b","))
        missing = n - len(set(runs) & set(range(n)))
        twice = sum(1 for times in runs.values() if times > 1)
        strangers = len(set(runs) - set(range(n)))
        span = {k.decode(): float(v) for k, v in (await self.redis.hgetall(SPAN_KEY)).items()}
        first = min(v for k, v in span.items() if k.endswith(":first"))
        last = max(v for k, v in span.items() if k.endswith(":last"))
        measured = {"seconds": last - first, "worker_processes_used": len(span) // 2}
        if missing or twice or strangers:
            raise Failed(
                f"runs are wrong: {missing} task(s) never ran, {twice} ran more than once, "
                f"{strangers} unknown",
                {"tasks_per_s": n / (last - first), **measured},
            )
        return {**measured, **await self.wait_for_acks(first, deadline)}

    async def wait_for_acks(self, first: float, deadline: float) -> dict[str, Any]:
        """Where the library can tell: wait until every task's outcome is written, and say
        when (from the first task's start) and how many still waited after the last run.

        Workers can run tasks faster than a saturated server acks them: the rate of runs
        then overstates the drain, and the acks' server CPU would come after the measurement.
        Polled every 50 ms, and only now: each look costs the server a few calls."""
        unfinished = getattr(self.client, "unfinished", None)
        if unfinished is None:
            return {}
        backlog = left = await unfinished()
        while left:
            if time.monotonic() > deadline:
                raise Failed(f"{left} tasks ran but were not acked before the time limit")
            await asyncio.sleep(0.05)
            left = await unfinished()
        return {"acked_seconds": time.time() - first, "unacked_after_last_run": backlog}

    # -- the workloads ---------------------------------------------------------------------------

    async def enqueue(self) -> dict[str, Any]:
        n, warm = self.args.n, 100
        for i in range(warm):  # connections, scripts and keys exist before the clock starts
            await self.client.enqueue("noop", n + i)
        started = time.perf_counter()
        for i in range(n):
            await self.client.enqueue("noop", i)
        elapsed = time.perf_counter() - started
        await self.expect_queued(n + warm)
        return {"tasks_per_s": n / elapsed, "seconds": elapsed}

    async def enqueue_batch(self) -> dict[str, Any]:
        if not self.module.HAS_BATCH:
            return {"skipped": "no batch enqueue API"}
        n = self.args.n
        await self.client.enqueue_batch("noop", list(range(n, n + 100)))
        indices = list(range(n))
        started = time.perf_counter()
        for at in range(0, n, BATCH_SIZE):
            await self.client.enqueue_batch("noop", indices[at : at + BATCH_SIZE])
        elapsed = time.perf_counter() - started
        await self.expect_queued(n + 100)
        return {"tasks_per_s": n / elapsed, "seconds": elapsed, "batch": BATCH_SIZE}

    async def drain(self, kind: str = "noop") -> dict[str, Any]:
        n = self.args.n
        if not self.args.prefilled:
            await self.enqueue_all(kind, n)
        await self.expect_queued(n)
        if self.args.save:
            # The queued tasks, for run.py to start the next measurement of them from.
            await self.redis.save()
        deadline = time.monotonic() + self.args.timeout
        cpu_before = await self.server_cpu()
        reads_before = await self.socket_reads()
        commands_before = await self.command_stats()
        workers = self.start_workers(kind, self.args.workers)
        try:
            span = await self.wait_for_runs(n, deadline)
        except Failed as exc:
            exc.metrics.update(workers.peak_rss())
            raise
        cpu = await self.server_cpu()
        reads = await self.socket_reads() - reads_before
        server_us = {name: (cpu[name] - cpu_before[name]) * 1e6 / n for name in cpu}
        commands = await self.command_stats()
        for name, (calls, usec) in commands_before.items():
            calls_now, usec_now = commands.get(name, (calls, usec))
            commands[name] = (calls_now - calls, usec_now - usec)
        busiest = sorted(commands.items(), key=lambda item: -item[1][1])
        metrics = {
            "tasks_per_s": n / span["seconds"],
            **({"acked_tasks_per_s": n / span["acked_seconds"]} if "acked_seconds" in span else {}),
            **span,
            **workers.peak_rss(),
            "server_cpu_us_per_task": sum(server_us.values()),
            "socket_reads_per_task": reads / n,
            # On a cluster, each master's share (named by the slots it serves).
            **({"server_cpu_us_per_task_by_master": server_us} if self.cluster else {}),
            # What grows with the workers shows here: calls and server µs of each command
            # (those inside scripts too) per task.
            "commands_per_task": {
                name: {"calls": calls / n, "us": usec / n}
                for name, (calls, usec) in busiest
                if calls
            },
        }
        if kind == "sleep":
            ideal = n * self.args.sleep / self.args.concurrency
            metrics.update(ideal_seconds=ideal, vs_ideal=span["seconds"] / ideal)
        return metrics

    async def server_cpu(self) -> dict[str, float]:
        """Seconds of CPU the server has used (all its threads), or each master of a cluster:
        what each task costs the Redis cores a fleet shares. Over a drain it also counts the
        workers' idle polling before the first task and the run recorder's few commands, both
        small and alike for everyone."""
        return {
            name: float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
            for name, info in (await self.node_info("cpu")).items()
        }

    async def socket_reads(self) -> int:
        """Reads of client sockets the server made so far (summed over a cluster's masters):
        one per round trip, a pipeline's commands arriving together, and one more for each
        16 KiB a call sends beyond the first (a finish call of 200 jobs takes two)."""
        stats = await self.node_info("stats")
        return sum(int(info.get("total_reads_processed", 0)) for info in stats.values())

    async def command_stats(self) -> dict[str, tuple[int, int]]:
        """Calls and µs of server time of each command so far (INFO commandstats), summed over
        a cluster's masters."""
        totals: dict[str, tuple[int, int]] = {}
        for stats in (await self.node_info("commandstats")).values():
            for name, value in stats.items():
                calls, usec = totals.get(name.removeprefix("cmdstat_"), (0, 0))
                totals[name.removeprefix("cmdstat_")] = (
                    calls + int(value["calls"]),
                    usec + int(value["usec"]),
                )
        return totals

    async def node_info(self, section: str) -> dict[str, dict[str, Any]]:
        """INFO ``section`` of the server, or of each master of a cluster by the slots it
        serves (``"slots 0-5460"``): replicas are left out, as they run no command of ours."""
        if not self.cluster:
            return {"server": await self.redis.info(section)}
        served: dict[tuple[str, int], list[str]] = {}
        for (first, last), node in sorted((await self.redis.cluster_slots()).items()):
            served.setdefault(tuple(node["primary"]), []).append(f"{first}-{last}")
        return {
            "slots " + ",".join(ranges): await self.redis.info(
                section, target_nodes=self.redis.get_node(host=host, port=port)
            )
            for (host, port), ranges in served.items()
        }

    async def io(self) -> dict[str, Any]:
        return await self.drain("sleep")

    async def latency(self) -> dict[str, Any]:
        n = self.args.n
        deadline = time.monotonic() + self.args.timeout
        self.start_workers("echo", 1)
        # The first round trips wait for the worker to start and warm up; they are not counted.
        # One lost while the worker starts (saq sweeps such a job) is retried and reported.
        warm, lost = 0, 0
        while warm < 20:
            try:
                first = warm + lost == 0  # may wait for the worker to start
                wait = min(deadline - time.monotonic(), 60) if first else ROUND_TRIP_TIMEOUT
                await self.round_trip(n + 1000 + warm + lost, max(wait, 1))
                warm += 1
            except Failed:
                lost += 1
                if lost > 5:
                    raise
        times: list[float] = []
        cap = time.monotonic() + self.args.latency_cap
        try:
            for i in range(n):
                started = time.perf_counter()
                await self.round_trip(i, ROUND_TRIP_TIMEOUT)
                times.append(time.perf_counter() - started)
                # A library that needs far more than the others stops early, after 100 at least.
                if i >= 99 and time.monotonic() > cap:
                    break
        except Failed as exc:
            if len(times) > 1:
                exc.metrics = {**_percentiles(times), "warmup_lost": lost}
            raise
        return {**_percentiles(times), "warmup_lost": lost}

    async def round_trip(self, i: int, timeout: float) -> None:
        handle = await self.client.enqueue("echo", i)
        try:
            value = await self.client.result(handle, timeout)
        except Exception as exc:
            assert self.workers is not None
            self.workers.check_alive()
            raise Failed(
                f"no result for echo({i}) within {timeout:.0f} s ({type(exc).__name__} {exc})"
            ) from exc
        if value != i + 1:
            raise Failed(f"echo({i}) returned {value!r}, expected {i + 1}")

    async def memory(self) -> dict[str, Any]:
        n = self.args.n
        await self.enqueue_all("noop", 1, start=n)  # the queue's own keys exist before "before"
        before = (await self.redis.info("memory"))["used_memory"]
        await self.enqueue_all("noop", n)
        await self.expect_queued(n + 1)
        after = (await self.redis.info("memory"))["used_memory"]
        return {"bytes_per_task": (after - before) / n, "used_memory_delta": after - before}

    async def main(self) -> dict[str, Any]:
        await self.redis.ping()
        await self.client.open()
        try:
            workload = getattr(self, self.args.workload.replace("-", "_"))
            return dict(await workload())
        finally:
            if self.workers is not None:
                self.workers.kill()
            try:
                await self.client.close()
            finally:
                await self.redis.aclose()


def _percentiles(times: list[float]) -> dict[str, Any]:
    cuts = statistics.quantiles(times, n=100, method="inclusive")
    return {
        "p50_ms": cuts[49] * 1000,
        "p90_ms": cuts[89] * 1000,
        "p99_ms": cuts[98] * 1000,
        "mean_ms": statistics.fmean(times) * 1000,
        "round_trips": len(times),
    }


def versions(module: Any) -> dict[str, str]:
    from importlib import metadata

    found = {}
    for name in module.DISTRIBUTIONS:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "?"
    found["python"] = sys.version.split()[0]
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lib", required=True)
    parser.add_argument("--workload", required=True)
    parser.add_argument("--n", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--results", type=int, choices=[0, 1], default=1)
    parser.add_argument("--sleep", type=float, default=0.05)
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--latency-cap", type=float, default=10.0)
    parser.add_argument("--url", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--logdir", required=True)
    parser.add_argument("--pidfile", required=True)
    parser.add_argument(
        "--save", action="store_true", help="drain and io: SAVE the dataset once prefilled"
    )
    parser.add_argument(
        "--prefilled", action="store_true", help="drain and io: the server loaded the snapshot"
    )
    parser.add_argument("--kind", default="noop", help="prefill only: the task to enqueue")
    parser.add_argument("--start", type=int, default=0, help="prefill only: the first index")
    args = parser.parse_args()

    # The adapters read their settings from the environment, in this process and the workers.
    os.environ.update(
        BENCH_REDIS_URL=args.url,
        BENCH_CONCURRENCY=str(args.concurrency),
        BENCH_RESULTS=str(args.results),
        BENCH_SLEEP=repr(args.sleep),
    )
    sys.path.insert(0, str(HERE))
    _procs.become_subreaper()
    # run.py stops us with SIGTERM on its time limit: unwind, so the workers are killed too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("stopped by run.py (SIGTERM)"))

    report: dict[str, Any] = {"lib": args.lib, "workload": args.workload, "ok": False}
    try:
        module = importlib.import_module(f"peers.{args.lib}")
        report["versions"] = versions(module)
        kind = {"io": "sleep", "latency": "echo"}.get(args.workload, "noop")
        report["settings"] = module.settings(kind, args.concurrency)
        from peers._common import use_uvloop

        use_uvloop()
        run = Run(args, module)
        report["metrics"] = asyncio.run(run.main())
        report["ok"] = True
    except Failed as exc:
        report["error"] = str(exc)
        if exc.metrics:
            report["metrics"] = exc.metrics
    except BaseException as exc:  # any failure is reported, never hidden
        report["error"] = f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=8)}"
    finally:
        for workers in STARTED:
            workers.kill()
        _procs.kill_descendants()  # anything a worker left behind (orphans come to us)
    Path(args.out).write_text(json.dumps(report, indent=1))
    sys.exit(0 if report["ok"] else 1)


if __name__ == "__main__":
    main()
