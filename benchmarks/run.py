"""Side-by-side benchmarks of aqueue and its peers, in one command.

    python benchmarks/run.py [--quick] [--only aqueue,arq,...] [--workloads drain,latency,...]

Installs the peers from PyPI into ``benchmarks/.venv-peers`` (with aqueue itself, editable),
starts a fresh ``redis-server`` (the embedded Valkey where there is none) on a free loopback
port for every measurement, runs each one in a driver process (``driver.py``) bounded by a time
limit, and writes the median of the repetitions as a Markdown table and a bar chart.
``--only aqueue,raw`` needs no peers environment: it runs with the interpreter that runs this
script, which must have aqueue (CI's smoke test:
``.venv/bin/python benchmarks/run.py --quick --only aqueue,raw``).

Standard library only, so any Python 3.11+ can start it; see README.md beside it.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import _procs  # noqa: E402
from _cgroup import cpu_cap  # noqa: E402
from _server import local_cluster, redis_server  # noqa: E402
from peers import (  # noqa: E402
    COMMON_REQUIREMENTS,
    LIBRARIES,
    PEERS,
    REQUIREMENTS,
    RESULTS_CHANGE_ENQUEUE,
)

VENV = HERE / ".venv-peers"
RESULTS = HERE / "results"
WORKLOADS = (
    "enqueue",
    "enqueue_batch",
    "drain",
    "drain_results",
    "io",
    "latency",
    "scaling",
    "memory",
)
FULL_RUN = tuple(name for name in WORKLOADS if name != "drain_results")
"""What a run without ``--workloads`` measures (``--quick`` measures everything). A drain with
results kept takes 3 of a full run's 15 minutes (celery drains about 550 tasks a second), and
without it a full run has room for repetitions; ``--workloads drain_results`` measures it."""
BATCH_APIS = {"aqueue", "streaq", "docket", "raw"}
"""Libraries with a batch enqueue API (the others skip ``enqueue_batch``)."""
PRIORITY = (
    "drain",
    "enqueue",
    "latency",
    "io",
    "scale2",
    "scale4",
    "enqueue_batch",
    "drain_results",
    "memory",
    "memory_ff",
)
"""Which measurements get their repetitions first when the time budget is short."""
ALWAYS_REPEATED = frozenset({"aqueue/enqueue", "raw/enqueue", "aqueue/latency", "raw/latency"})
"""Repeated whatever the budget: about 2 s each, and their targets are the floor's own single
round trip and absolute latencies, where one measurement varies by 15% from run to run."""


@dataclasses.dataclass(frozen=True)
class Sizes:
    n: int = 20_000
    io_n: int = 5_000
    io_concurrency: int = 500
    latency_n: int = 1_000
    memory_n: int = 100_000
    concurrency: int = 100
    sleep: float = 0.05
    reps: int = 3
    timeout: float = 240.0
    latency_cap: float = 10.0
    """Round trips stop after this many seconds (with at least 100 done)."""
    budget: float = 13.5 * 60
    """Seconds the whole run should take: repetitions 2 and 3 go, cheapest and most important
    first, to the measurements that fit in what is left after the first round; 0: no limit."""


FULL = Sizes()
QUICK = Sizes(
    n=500,
    io_n=500,
    io_concurrency=50,
    latency_n=100,
    memory_n=2_000,
    reps=1,
    timeout=60.0,
    latency_cap=10.0,
)


@dataclasses.dataclass(frozen=True)
class Unit:
    """One measurement: a library, a row of the results table, and how to drive it."""

    lib: str
    row: str
    workload: str
    n: int
    workers: int = 1
    concurrency: int = 100
    results: int = 1
    once: bool = False

    @property
    def key(self) -> str:
        return f"{self.lib}/{self.row}"


def plan(libs: list[str], workloads: list[str], sizes: Sizes) -> dict[str, list[Unit]]:
    units: dict[str, list[Unit]] = {}
    c = sizes.concurrency
    for lib in libs:
        todo: list[Unit] = []
        if "enqueue" in workloads:
            todo.append(Unit(lib, "enqueue", "enqueue", sizes.n, concurrency=c))
        if "enqueue_batch" in workloads and lib in BATCH_APIS:
            todo.append(Unit(lib, "enqueue_batch", "enqueue_batch", sizes.n, concurrency=c))
        if "drain" in workloads:
            todo.append(Unit(lib, "drain", "drain", sizes.n, concurrency=c, results=0))
        if "drain_results" in workloads and lib != "raw":
            todo.append(Unit(lib, "drain_results", "drain", sizes.n, concurrency=c, results=1))
        if "io" in workloads:
            todo.append(
                Unit(lib, "io", "io", sizes.io_n, concurrency=sizes.io_concurrency, results=0)
            )
        if "latency" in workloads:
            todo.append(Unit(lib, "latency", "latency", sizes.latency_n, concurrency=c))
        if "scaling" in workloads:
            todo += [Unit(lib, f"scale{k}", "drain", sizes.n, k, c, results=0) for k in (2, 4)]
        if "memory" in workloads:
            todo.append(Unit(lib, "memory", "memory", sizes.memory_n, concurrency=c, once=True))
            if lib in RESULTS_CHANGE_ENQUEUE:
                todo.append(
                    Unit(
                        lib,
                        "memory_ff",
                        "memory",
                        sizes.memory_n,
                        concurrency=c,
                        results=0,
                        once=True,
                    )
                )
        units[lib] = todo
    return units


# -- environments ----------------------------------------------------------------------------


def _pip(python: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q", *args]
    return subprocess.run(command, capture_output=True, text=True, cwd=ROOT)


def _tail(text: str, lines: int = 6) -> str:
    # pip on this kind of machine warns about unreachable extra indexes: not the error.
    kept = [line for line in text.splitlines() if "is ignored: it is neither" not in line]
    return "\n".join(kept[-lines:])


def ensure_peers_env(reinstall: bool) -> tuple[Path, dict[str, str]]:
    """Create or update the peers virtualenv; return its python and each peer's status."""
    python = VENV / "bin" / "python"
    stamp = VENV / ".bench-installed.json"
    wanted = hashlib.sha256(
        json.dumps([REQUIREMENTS, COMMON_REQUIREMENTS]).encode()
        + (ROOT / "pyproject.toml").read_bytes()
    ).hexdigest()
    if not python.exists():
        print(f"creating {VENV.relative_to(ROOT)} ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    try:
        saved = json.loads(stamp.read_text())
    except (OSError, ValueError):
        saved = {}
    if saved.get("hash") == wanted and not reinstall:
        return python, saved["status"]

    print("installing aqueue (editable) and the peers from PyPI ...", flush=True)
    _pip(python, "--upgrade", "pip")
    done = _pip(python, "-e", str(ROOT), *COMMON_REQUIREMENTS)
    if done.returncode != 0:
        raise SystemExit(f"cannot install aqueue into {VENV}:\n{_tail(done.stderr)}")
    status: dict[str, str] = {}
    everything = [req for peer in PEERS for req in REQUIREMENTS[peer]]
    if _pip(python, *everything).returncode == 0:
        status = dict.fromkeys(PEERS, "ok")
    else:  # one at a time, so one peer that cannot install does not stop the others
        for peer in PEERS:
            done = _pip(python, *REQUIREMENTS[peer])
            status[peer] = "ok" if done.returncode == 0 else f"pip failed: {_tail(done.stderr)}"
            print(f"  {peer}: {status[peer]}", flush=True)
    stamp.write_text(json.dumps({"hash": wanted, "status": status}))
    return python, status


def check_imports(python: Path, libs: list[str]) -> dict[str, str]:
    """Import each adapter in the chosen interpreter: 'ok' or the error it raised."""
    probe = (
        "import importlib, json, sys\n"
        f"sys.path.insert(0, {str(HERE)!r})\n"
        "found = {}\n"
        "for lib in sys.argv[1:]:\n"
        "    try:\n"
        "        importlib.import_module('peers.' + lib)\n"
        "        found[lib] = 'ok'\n"
        "    except BaseException as exc:\n"
        "        found[lib] = f'import failed: {type(exc).__name__}: {exc}'\n"
        "print(json.dumps(found))\n"
    )
    env = {**os.environ, "BENCH_REDIS_URL": "redis://127.0.0.1:1/0"}
    done = subprocess.run(
        [str(python), "-c", probe, *libs], capture_output=True, text=True, env=env, cwd=HERE
    )
    if done.returncode != 0:
        return {lib: f"import check failed: {_tail(done.stderr, 3)}" for lib in libs}
    found: dict[str, str] = json.loads(done.stdout.strip().splitlines()[-1])
    return found


def choose_python(libs: list[str], peers_venv: bool, reinstall: bool) -> tuple[Path, dict]:
    """The interpreter the drivers run under, and the install status of each library."""
    if peers_venv or any(lib in PEERS for lib in libs):
        python, status = ensure_peers_env(reinstall)
        return python, {**status, "aqueue": "ok", "raw": "ok"}
    here = Path(sys.executable)
    if check_imports(here, ["aqueue"]).get("aqueue") == "ok":
        return here, {"aqueue": "ok", "raw": "ok"}
    peers_python = VENV / "bin" / "python"
    if peers_python.exists():
        return peers_python, {"aqueue": "ok", "raw": "ok"}
    raise SystemExit(
        f"{here} cannot import aqueue: run this with aqueue's .venv/bin/python, "
        "or without --only to build the peers environment"
    )


# -- running ---------------------------------------------------------------------------------


def snapshot_of(unit: Unit, logdir: Path) -> Path | None:
    """Where the dataset of a prefilled workload is kept between its measurements.

    ``drain``, ``drain_results``, ``scale2``, ``scale4`` and ``io`` start from tasks already
    queued (not timed). The first measurement of each kind of queue saves it; the others, and
    the repetitions, start their fresh server from that file instead of enqueuing the same
    tasks again (scaling and repetitions would otherwise spend minutes on prefills)."""
    if unit.workload not in ("drain", "io"):
        return None
    return logdir / f"{unit.lib}-{unit.workload}-n{unit.n}-results{unit.results}.rdb"


def run_unit(
    unit: Unit,
    python: Path,
    sizes: Sizes,
    logdir: Path,
    *,
    cluster: bool = False,
    server_cpu: float | None = None,
) -> dict[str, Any]:
    """One measurement against a fresh server (with ``cluster``, a fresh local Redis Cluster,
    prefilled each time: its dataset is spread over the masters); every process started for
    it is gone after. With ``server_cpu``, the server runs capped at that fraction of a core
    once it has loaded its dataset (see _cgroup.py)."""
    if cluster:
        with local_cluster() as nodes:
            pids = frozenset(node.process.pid for node in nodes.nodes if node.process)
            return drive(unit, python, sizes, logdir, nodes.url, pids)
    server = redis_server()
    snapshot = snapshot_of(unit, logdir)
    prefilled = snapshot is not None and snapshot.exists()
    if snapshot is not None and prefilled:
        shutil.copyfile(snapshot, server.directory / "dump.rdb")  # loaded at start
    with cpu_cap(server_cpu) as cap:
        server.start()
        assert server.process is not None
        try:
            cap(server.process.pid)
            snapshot_args = ["--save"] if snapshot and not prefilled else []
            snapshot_args += ["--prefilled"] if prefilled else []
            return drive(
                unit,
                python,
                sizes,
                logdir,
                server.url,
                frozenset({server.process.pid}),
                snapshot_args,
            )
        finally:
            saved = server.directory / "dump.rdb"  # only once the prefill was checked
            if snapshot is not None and not prefilled and saved.exists():
                shutil.copyfile(saved, snapshot)
            server.close()  # before the cap's group goes: a group is removed empty


def drive(
    unit: Unit,
    python: Path,
    sizes: Sizes,
    logdir: Path,
    url: str,
    server_pids: frozenset[int],
    extra: list[str] | None = None,
) -> dict[str, Any]:
    """Run the driver of ``unit`` against the server(s) at ``url`` (processes ``server_pids``,
    which outlive it); then kill whatever it left behind."""
    tag = f"{unit.lib}-{unit.row}-{time.monotonic_ns()}"
    out, pidfile, log = logdir / f"{tag}.json", logdir / f"{tag}.pids", logdir / f"{tag}.log"
    command = [
        str(python),
        str(HERE / "driver.py"),
        "--lib",
        unit.lib,
        "--workload",
        unit.workload,
        "--n",
        str(unit.n),
        "--workers",
        str(unit.workers),
        "--concurrency",
        str(unit.concurrency),
        "--results",
        str(unit.results),
        "--sleep",
        repr(sizes.sleep),
        "--timeout",
        repr(sizes.timeout),
        "--latency-cap",
        repr(sizes.latency_cap),
        "--url",
        url,
        "--out",
        str(out),
        "--logdir",
        str(logdir),
        "--pidfile",
        str(pidfile),
        *(extra or []),
    ]
    started = time.monotonic()
    returncode: int | str
    try:
        with log.open("wb") as output:
            driver = subprocess.Popen(
                command,
                cwd=HERE,
                stdout=output,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
            try:
                returncode = driver.wait(sizes.timeout + 60)
            except subprocess.TimeoutExpired:
                driver.terminate()  # the driver kills its workers on SIGTERM
                try:
                    driver.wait(15)
                except subprocess.TimeoutExpired:
                    _procs.kill_tree(driver.pid)
                    driver.wait()
                returncode = "killed at the time limit"
    finally:
        # Whatever the driver could not clean up: its workers by PID (with their start
        # time), then anything orphaned that this process (a subreaper) adopted.
        try:
            for line in pidfile.read_text().splitlines():
                pid, start = line.split()
                _procs.kill_tree(int(pid), start)
        except OSError:
            pass
        _procs.kill_descendants(keep=server_pids)
    elapsed = time.monotonic() - started
    try:
        report: dict[str, Any] = json.loads(out.read_text())
    except (OSError, ValueError):
        text = log.read_text(errors="replace") if log.exists() else ""
        report = {
            "ok": False,
            "error": f"driver ended ({returncode}) without a report:\n"
            + "\n".join(text.splitlines()[-15:]),
        }
    report["elapsed"] = elapsed
    return report


def schedule(units: dict[str, list[Unit]]) -> list[Unit]:
    """The order of one round: each of aqueue's measurements right before the floor's of the
    same row, then the peers'. The machine's speed drifts over a run (seen here: 20% within
    minutes), and the aqueue / floor ratios should not measure the drift."""
    ours, floor = units.get("aqueue", []), units.get("raw", [])
    floor_rows = {unit.row: unit for unit in floor}
    paired: list[Unit] = []
    for unit in ours:
        paired.append(unit)
        if unit.row in floor_rows:
            paired.append(floor_rows.pop(unit.row))
    paired += floor_rows.values()
    peers = [unit for lib, todo in units.items() if lib not in ("aqueue", "raw") for unit in todo]
    return paired + peers


def repeat(
    units: dict[str, list[Unit]],
    first: dict[str, dict[str, Any]],
    sizes: Sizes,
    spent: float,
    data: dict[str, Any],
) -> set[str]:
    """The measurements to repeat: all that fit in the time budget, most important first."""
    if sizes.reps < 2:
        return set()
    candidates = [
        unit
        for todo in units.values()
        for unit in todo
        if not unit.once and first[unit.key].get("ok")
    ]
    # aqueue and the floor first (they are what is measured, and cheap), then by importance.
    candidates.sort(
        key=lambda u: (
            u.lib not in ("aqueue", "raw"),
            PRIORITY.index(u.row),
            first[u.key]["elapsed"],
        )
    )
    left = sizes.budget - spent if sizes.budget else float("inf")
    chosen: set[str] = set()
    for unit in candidates:
        cost = (sizes.reps - 1) * first[unit.key]["elapsed"]
        if cost <= left or unit.key in ALWAYS_REPEATED:
            chosen.add(unit.key)
            left -= cost
        else:
            data["units"][unit.key]["note"] = (
                f"1 repetition: {sizes.reps} would not fit the time budget of "
                f"{sizes.budget / 60:.1f} min (one took {first[unit.key]['elapsed']:.0f} s)"
            )
    return chosen


def summary(report: dict[str, Any]) -> str:
    if not report.get("ok"):
        return "FAILED: " + report.get("error", "?").strip().splitlines()[0][:150]
    m = report["metrics"]
    if "skipped" in m:
        return f"skipped ({m['skipped']})"
    if "p50_ms" in m:
        return f"p50 {m['p50_ms']:.2f} ms, p90 {m['p90_ms']:.2f} ms, p99 {m['p99_ms']:.2f} ms"
    if "bytes_per_task" in m:
        return f"{m['bytes_per_task']:.0f} bytes per queued task"
    if "vs_ideal" in m:
        return f"{m['seconds']:.3f} s ({m['vs_ideal']:.2f}x the ideal {m['ideal_seconds']} s)"
    text = f"{m['tasks_per_s']:,.0f} tasks/s"
    if "rss_tree_kb" in m:
        text += f", worker peak RSS {m['rss_tree_kb'] / 1024:.0f} MiB"
    return text


def machine() -> dict[str, Any]:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    server = redis_server()
    version = server.version()
    server.close()  # never started: this only removes its data directory
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "-C", str(ROOT), "status", "--porcelain", "--", "aqueue"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    return {
        "cores": os.cpu_count(),
        "cpu": cpu,
        "kernel": platform.release(),
        "server": Path(server.binary).name,  # redis-server, or valkey-server when it is absent
        "redis_server": version,
        "aqueue_commit": commit + (" + uncommitted changes in aqueue/" if dirty else ""),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "load_before": round(os.getloadavg()[0], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description="Side-by-side benchmarks of aqueue and its peers (see benchmarks/README.md)."
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="small counts and one repetition (a smoke test, under a minute)",
    )
    parser.add_argument("--only", help=f"comma-separated libraries (of {','.join(LIBRARIES)})")
    parser.add_argument("--workloads", help=f"comma-separated workloads (of {','.join(WORKLOADS)})")
    parser.add_argument("--reps", type=int, help="repetitions (default 3, 1 with --quick)")
    parser.add_argument(
        "--budget",
        type=float,
        help="minutes the run should take (default 13.5; 0: no limit): "
        "repetitions that do not fit are left out, and the results say so",
    )
    parser.add_argument(
        "--out",
        type=Path,
        help="where results go (default: benchmarks/results for a full run of "
        "everything, otherwise a new temporary directory)",
    )
    parser.add_argument(
        "--peers-venv",
        action="store_true",
        help="use the peers environment even for --only aqueue,raw",
    )
    parser.add_argument(
        "--reinstall", action="store_true", help="reinstall the peers environment (newest releases)"
    )
    args = parser.parse_args()

    libs = args.only.split(",") if args.only else list(LIBRARIES)
    workloads = (
        args.workloads.split(",") if args.workloads else list(WORKLOADS if args.quick else FULL_RUN)
    )
    for name, known in (("library", LIBRARIES), ("workload", WORKLOADS)):
        chosen = libs if name == "library" else workloads
        unknown = [x for x in chosen if x not in known]
        if unknown:
            parser.error(f"unknown {name}(s) {', '.join(unknown)}; known: {', '.join(known)}")
    sizes = QUICK if args.quick else FULL
    if args.reps:
        sizes = dataclasses.replace(sizes, reps=args.reps)
    if args.budget is not None:
        sizes = dataclasses.replace(sizes, budget=args.budget * 60)
    everything = not args.quick and not args.only and not args.workloads
    out = args.out or (RESULTS if everything else Path(tempfile.mkdtemp(prefix="aqueue-bench-")))
    out.mkdir(parents=True, exist_ok=True)
    logdir = Path(tempfile.mkdtemp(prefix="aqueue-bench-logs-"))

    _procs.become_subreaper()
    began = time.monotonic()
    python, status = choose_python(libs, args.peers_venv, args.reinstall)
    imports = check_imports(python, [lib for lib in libs if status.get(lib) == "ok"])
    for lib in libs:
        if status.get(lib) == "ok" and imports.get(lib) != "ok":
            status[lib] = imports.get(lib, "import failed")
    for lib in libs:
        if status.get(lib) != "ok":
            print(f"{lib}: not run: {status[lib]}", flush=True)

    units = plan([lib for lib in libs if status.get(lib) == "ok"], workloads, sizes)
    data: dict[str, Any] = {
        "meta": {
            **machine(),
            "python": subprocess.run(
                [str(python), "-c", "import sys; print(sys.version.split()[0])"],
                capture_output=True,
                text=True,
            ).stdout.strip(),
            "driver_python": str(python),
            "command": " ".join(["python", "benchmarks/run.py", *sys.argv[1:]]),
            "quick": args.quick,
            "sizes": dataclasses.asdict(sizes),
            "libraries": libs,
            "workloads": workloads,
            # Their memory with no results kept is the results-kept measurement (see peers).
            "memory_once": [
                lib for lib in libs if lib not in RESULTS_CHANGE_ENQUEUE and lib != "raw"
            ],
        },
        "status": {lib: status.get(lib, "?") for lib in libs},
        "units": {},
    }
    print(
        f"{len(libs)} libraries, {sum(map(len, units.values()))} measurements x up to "
        f"{sizes.reps} repetition(s); logs in {logdir}",
        flush=True,
    )

    def measure(unit: Unit, rep: int) -> dict[str, Any]:
        entry = data["units"].setdefault(
            unit.key, {"unit": dataclasses.asdict(unit), "reps": [], "note": ""}
        )
        report = run_unit(unit, python, sizes, logdir)
        entry["reps"].append(report)
        clock = time.monotonic() - began
        print(
            f"[{clock:6.0f} s] {unit.lib:9} {unit.row:14} rep {rep + 1}: {summary(report)}",
            flush=True,
        )
        if not report.get("ok"):
            print("    " + report.get("error", "").strip().replace("\n", "\n    "), flush=True)
        (out / "results.json").write_text(json.dumps(data, indent=1))
        return report

    order = schedule(units)
    first = {unit.key: measure(unit, 0) for unit in order}
    again = repeat(units, first, sizes, time.monotonic() - began, data)
    for rep in range(1, sizes.reps):
        for unit in order:
            if unit.key in again:
                measure(unit, rep)
    data["meta"]["total_seconds"] = time.monotonic() - began
    data["meta"]["load_after"] = round(os.getloadavg()[0], 2)
    (out / "results.json").write_text(json.dumps(data, indent=1))

    done = subprocess.run(
        [str(python), str(HERE / "report.py"), str(out / "results.json"), str(out)],
        capture_output=True,
        text=True,
    )
    sys.stdout.write(done.stdout)
    if done.returncode != 0:
        sys.stderr.write(done.stderr)
        raise SystemExit("writing the report failed")
    failed = [k for k, e in data["units"].items() if not all(r.get("ok") for r in e["reps"])]
    if not failed:
        shutil.rmtree(logdir, ignore_errors=True)
    print(
        f"\nresults: {out / 'results.md'}"
        + (f" (logs of the failures: {logdir})" if failed else "")
        + f"; {data['meta']['total_seconds'] / 60:.1f} min"
    )
    if failed or any(status.get(lib) != "ok" for lib in libs):
        print(
            f"failed: {', '.join(failed) or 'none'}; not run: "
            f"{', '.join(lib for lib in libs if status.get(lib) != 'ok') or 'none'}"
        )
        if "aqueue" in libs and any(
            k.startswith("aqueue/") or k.startswith("raw/") for k in failed
        ):
            raise SystemExit(1)


if __name__ == "__main__":
    main()
