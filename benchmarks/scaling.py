"""How aqueue's drain scales with worker processes on one Redis, and what each task costs it.

    python benchmarks/scaling.py                       # this checkout: 1, 2, 4 processes on 2 cores
    python benchmarks/scaling.py --processes 1,2,4,8,12 --queues 1,8 --n 300000
    python benchmarks/scaling.py --tree before=/tmp/old-checkout --tree after=.
    python benchmarks/scaling.py --cluster             # 1 and 4 queues on a 3-master cluster
    python benchmarks/scaling.py --server-cpu 0.1 --processes 1,2,4,8 --n 300000  # as root

One Redis core is the ceiling of every fleet until Cluster. Each point drains ``--n`` queued
no-op tasks (``result_ttl=0``) with K ``aqueue worker -c C`` processes serving Q queues (the
tasks spread evenly), on a fresh server started from the same prefilled dataset, and reports
the drain rate (first task's start to the last task's ack, every task checked to run exactly
once; beside it the rate to the last run, and how many tasks had run and were not yet acked
then: a saturated server's acks can trail the runs) and the server's CPU per task
(``used_cpu_user + used_cpu_sys`` over the drain and its acks). Several
``--tree`` checkouts (aqueue source trees, run through PYTHONPATH) are measured point by point
in turn, so "today's code beside the new" share the machine's drift. With ``--cluster`` each
point runs on a fresh local Redis Cluster instead (:class:`aqueue.testing.LocalCluster`: 3
masters and 3 replicas of ``redis-server``, prefilled each time), the server CPU is summed over
the masters and shown for each, and the results say which master serves each queue's slot. Run
with aqueue's ``.venv/bin/python``; the results go to ``--out`` (results.md and results.json).

What explains the curve is shown beside it, per task: the server's reads of client sockets
(one per round trip, and one per 16 KiB a call sends beyond the first), each command's calls
and server time (those inside scripts too), tasks per read (XREADGROUP) and per finish call
(one XACK each), and how many finish calls deleted entries by id (XDEL: entries acked above
another worker's pending one, which XTRIM cannot drop). Past the server's saturation the rate
is 1 / (server CPU per task), so a per-task cost that grows with the processes is what makes
more processes slower. On a machine too small to saturate the server,
``benchmarks/instructions.py --processes`` counts that cost under callgrind, where one process
saturates it.

``--server-cpu FRACTION`` measures the rate itself past saturation on such a machine: each
point's server runs in a Linux cgroup capped at that fraction of one core (0.1: a tenth;
``_cgroup.py``; needs root), once it has loaded its dataset. The cap stands in fairly for a
bigger machine's saturated core: the server's work per task is the same code and data
whatever core runs it, and a saturated server's rate is its CPU divided by its CPU per task,
here cap / (server CPU per task). So whatever grows per task with the processes (the
callgrind counts above) shows as a falling rate, as it would past a real core's saturation.
Choose the cap so that the server bounds every point: its share of a core (reported per
point) stays at the cap, and the 1-process rate is well under an uncapped 1-process drain's,
so the workers had CPU to spare. The cap is CPU time, not a slower clock: a task's latency
under it is not a slower server's, and the commands' wall-clock µs count the stops.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _cgroup import LEAST_FRACTION, period_us  # noqa: E402
from peers.aqueue import queue_names  # noqa: E402
from redis.crc import key_slot  # noqa: E402
from run import FULL, Unit, machine, run_unit  # noqa: E402


def numbers(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def tree(text: str) -> tuple[str, Path]:
    """``LABEL=PATH`` or ``PATH`` (labelled by its directory name)."""
    label, _, path = text.rpartition("=")
    where = Path(path).resolve()
    if not (where / "aqueue" / "__init__.py").exists():
        raise argparse.ArgumentTypeError(f"{where} holds no aqueue package")
    return label or where.name, where


def fraction(text: str) -> float:
    """A cap on the server: a fraction of one core, from ``LEAST_FRACTION`` to 1."""
    value = float(text)
    if not LEAST_FRACTION <= value <= 1:
        raise argparse.ArgumentTypeError(
            f"{text} is not a fraction of one core from {LEAST_FRACTION} to 1 (0.1: a tenth)"
        )
    return value


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    cores = os.cpu_count() or 1
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--processes",
        type=numbers,
        default=[1, 2, 4] if cores <= 4 else [1, 2, 4, 8, 12],
        help="worker process counts (default: 1,2,4 up to 4 cores, else 1,2,4,8,12)",
    )
    parser.add_argument(
        "--queues", type=numbers, help="queue counts (default: 1,8; with --cluster 1,4)"
    )
    parser.add_argument("--n", type=int, default=40_000 if cores <= 4 else 300_000)
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument(
        "--tree", type=tree, action="append", help="LABEL=PATH of an aqueue checkout to measure"
    )
    parser.add_argument(
        "--cluster",
        action="store_true",
        help="on a local 3-master Redis Cluster (needs redis-server and redis-cli)",
    )
    parser.add_argument(
        "--server-cpu",
        type=fraction,
        metavar="FRACTION",
        help="cap each point's server at this fraction of one core (a cgroup; needs root)",
    )
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    if args.cluster and args.server_cpu is not None:
        parser.error("--server-cpu caps one server: leave it out with --cluster")
    # Four queues cover the three masters (q0..q3 hash to all three shards' slots).
    args.queues = args.queues or ([1, 4] if args.cluster else [1, 8])
    return args


def measure(
    args: argparse.Namespace, label: str, where: Path, queues: int, processes: int, logdir: Path
) -> dict[str, Any]:
    """One point; the tree and the queue count go to the driver and workers by environment."""
    os.environ["PYTHONPATH"] = str(where)
    os.environ["BENCH_QUEUES"] = str(queues)
    # Each (tree, queue count) prefills once; its other points start from the saved dataset.
    prefills = logdir / f"{label}-q{queues}"
    prefills.mkdir(parents=True, exist_ok=True)
    unit = Unit(
        "aqueue", f"scale{processes}", "drain", args.n, processes, args.concurrency, results=0
    )
    sizes = FULL.__class__(**{**vars(FULL), "timeout": args.timeout})
    load = os.getloadavg()[0]
    report = run_unit(
        unit,
        Path(sys.executable),
        sizes,
        prefills,
        cluster=args.cluster,
        server_cpu=args.server_cpu,
    )
    metrics = report.get("metrics", report)
    return {
        "tree": label,
        "queues": queues,
        "processes": processes,
        "ok": report.get("ok", False),
        "tasks_per_s": metrics.get("tasks_per_s"),
        "acked_tasks_per_s": metrics.get("acked_tasks_per_s"),
        "unacked_after_last_run": metrics.get("unacked_after_last_run"),
        "server_cpu_us_per_task": metrics.get("server_cpu_us_per_task"),
        "server_cpu_us_per_task_by_master": metrics.get("server_cpu_us_per_task_by_master", {}),
        "socket_reads_per_task": metrics.get("socket_reads_per_task"),
        "commands_per_task": metrics.get("commands_per_task", {}),
        "load_before": round(load, 2),
        "error": report.get("error"),
    }


def cell(point: dict[str, Any] | None) -> str:
    if point is None:
        return ""
    if not point["ok"]:
        return "failed"
    return f"{drained(point):,.0f}/s, {point['server_cpu_us_per_task']:.1f} µs"


def table(points: list[dict[str, Any]], processes: list[int]) -> str:
    head = "| tree | queues | " + " | ".join(f"{k} proc" for k in processes) + " |"
    lines = [head, "|---|--:|" + "--:|" * len(processes)]
    keys = sorted({(p["tree"], p["queues"]) for p in points}, key=lambda k: (k[1], k[0]))
    for label, queues in keys:
        row = {p["processes"]: p for p in points if (p["tree"], p["queues"]) == (label, queues)}
        cells = " | ".join(cell(row.get(k)) for k in processes)
        lines.append(f"| {label} | {queues} | {cells} |")
    return "\n".join(lines)


def drained(point: dict[str, Any]) -> float:
    """The drain rate: to the last task's ack where the driver could tell, else its run."""
    return float(point.get("acked_tasks_per_s") or point["tasks_per_s"])


def server_share(point: dict[str, Any]) -> float:
    """The share of one core the server used over the drain: its CPU per task times the rate
    (about the cap, where a capped server is what bounds the rate)."""
    return float(point["server_cpu_us_per_task"] * drained(point) / 1e6)


def rates(points: list[dict[str, Any]]) -> str:
    """Each point's drain rate beside the fewest processes' of the same tree and queues; the
    rate of runs, with what was still unacked after the last one; and the server CPU behind
    it, per task and as a share of a core."""
    lines = [
        "| tree | queues | processes | tasks/s to the last ack | vs fewest processes "
        "| tasks/s to the last run | unacked after the last run | server CPU per task "
        "| server CPU, share of a core |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for point in points:
        where = f"| {point['tree']} | {point['queues']} | {point['processes']} "
        if not point["ok"]:
            lines.append(where + "| failed |||||||")
            continue
        base = min(
            (
                p
                for p in points
                if p["ok"] and (p["tree"], p["queues"]) == (point["tree"], point["queues"])
            ),
            key=lambda p: p["processes"],
        )
        lines.append(
            where + f"| {drained(point):,.0f} | {drained(point) / drained(base):.2f} "
            f"| {point['tasks_per_s']:,.0f} | {point.get('unacked_after_last_run') or 0:,} "
            f"| {point['server_cpu_us_per_task']:.1f} µs | {server_share(point):.0%} |"
        )
    return "\n".join(lines)


def capped(server_cpu: float | None) -> str:
    """What the report says of the server's cap."""
    if server_cpu is None:
        return ""
    period = period_us(server_cpu)
    return (
        f"**The server ran capped at {server_cpu:g} of one core** (a cgroup: "
        f"{round(period * server_cpu):,} µs of CPU every {period:,} µs), so that it is what "
        "bounds the rate: its CPU per task is then what the rate shows. The commands' µs "
        "below (INFO commandstats) are wall-clock time, so they also count the time the "
        "server was stopped in a command by the cap: read them as shares, not costs.\n\n"
    )


def by_command(points: list[dict[str, Any]], most: int = 8) -> str:
    """Each point's busiest commands (by server time): calls and µs per task."""
    lines = [
        "| tree | queues | processes | command: calls per task, µs per task |",
        "|---|--:|--:|---|",
    ]
    for point in points:
        busiest = list(point.get("commands_per_task", {}).items())[:most]
        cells = ", ".join(f"{name} {c['calls']:.3f} / {c['us']:.2f}" for name, c in busiest)
        lines.append(f"| {point['tree']} | {point['queues']} | {point['processes']} | {cells} |")
    return "\n".join(lines)


def explained(points: list[dict[str, Any]]) -> str:
    """What each point's server did per task: socket reads, tasks per read and per finish
    call, the share of finish calls that deleted entries by id, and those deletions' time."""
    lines = [
        "| tree | queues | processes | socket reads per task | tasks per read "
        "| tasks per finish | finishes calling XDEL | XDEL µs per task | load before |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for point in points:
        commands = point.get("commands_per_task", {})
        reads, finishes, deletes = (
            float(commands.get(name, {}).get("calls", 0.0))
            for name in ("xreadgroup", "xack", "xdel")
        )
        lines.append(
            f"| {point['tree']} | {point['queues']} | {point['processes']} "
            f"| {point.get('socket_reads_per_task') or 0:.3f} "
            f"| {1 / reads if reads else 0:.0f} | {1 / finishes if finishes else 0:.0f} "
            f"| {deletes / finishes if finishes else 0:.0%} "
            f"| {commands.get('xdel', {}).get('us', 0.0):.2f} | {point.get('load_before', '')} |"
        )
    return "\n".join(lines)


def by_master(points: list[dict[str, Any]], queues: list[int]) -> str:
    """Which master serves each queue's slot (a queue's name is its keys' hash tag), and
    each point's server CPU per task on each master."""
    names = dict.fromkeys(name for count in queues for name in queue_names(count))
    # In the driver's order: by slot.
    masters = list(dict.fromkeys(m for p in points for m in p["server_cpu_us_per_task_by_master"]))
    lines = ["| queue | slot | master |", "|---|--:|---|"]
    for name in names:
        slot = key_slot(name.encode())
        lines.append(f"| {name} | {slot} | {next((m for m in masters if serves(m, slot)), '?')} |")
    lines += [
        "",
        "| tree | queues | processes | " + " | ".join(masters) + " |",
        "|---|--:|--:|" + "--:|" * len(masters),
    ]
    for point in points:
        shares = point["server_cpu_us_per_task_by_master"]
        cells = " | ".join(f"{shares[m]:.1f} µs" if m in shares else "" for m in masters)
        lines.append(f"| {point['tree']} | {point['queues']} | {point['processes']} | {cells} |")
    return (
        "Where each queue lives, and the server CPU per task on each master:\n\n"
        + "\n".join(lines)
        + "\n\n"
    )


def serves(master: str, slot: int) -> bool:
    """Whether ``master`` (named ``"slots 0-5460,..."`` by the driver) serves ``slot``."""
    ranges = (part.split("-") for part in master.removeprefix("slots ").split(","))
    return any(int(first) <= slot <= int(last) for first, last in ranges)


def main() -> None:
    args = parse()
    trees = args.tree or [tree(str(HERE.parent))]
    out = args.out or Path(tempfile.mkdtemp(prefix="aqueue-scaling-"))
    out.mkdir(parents=True, exist_ok=True)
    logdir = Path(tempfile.mkdtemp(prefix="aqueue-scaling-logs-"))
    started = time.monotonic()
    points = []
    for queues in args.queues:
        for processes in args.processes:
            for label, where in trees:
                point = measure(args, label, where, queues, processes, logdir)
                points.append(point)
                shown = (
                    f"{drained(point):,.0f} tasks/s, server "
                    f"{point['server_cpu_us_per_task']:.1f} µs/task, "
                    f"{server_share(point):.0%} of a core"
                    if point["ok"]
                    else f"failed: {point['error']}"
                )
                print(
                    f"[{time.monotonic() - started:6.0f} s] {label:10s} {queues} queue(s) "
                    f"{processes:2d} process(es): {shown}",
                    flush=True,
                )
    server = "a local 3-master Redis Cluster" if args.cluster else "one Redis"
    text = (
        f"# Drain scaling on {server}: {args.n:,} no-op tasks, "
        f"`aqueue worker -c {args.concurrency}`, result_ttl=0\n\n"
        f"{capped(args.server_cpu)}"
        "Each cell: drain rate (to the last task's ack), and the server's CPU per task"
        f"{' (summed over the masters)' if args.cluster else ''}.\n\n"
        f"{table(points, args.processes)}\n\n"
        "Each point's drain rate (to the last task's ack) beside the fewest processes' of "
        "the same tree; the rate of runs, which a saturated server's acks can trail (the "
        "tasks run and not yet acked after the last run, whose leases the workers renew); "
        "and the server CPU behind it:\n\n"
        f"{rates(points)}\n\n"
        f"{by_master(points, args.queues) if args.cluster else ''}"
        "What explains it, per task (a finish call that leaves nothing pending calls XDEL "
        "once, for one id; the others call it for each entry acked above the oldest pending "
        "one, if any):\n\n"
        f"{explained(points)}\n\n"
        "What the server spent its time on, by command (those inside scripts too):\n\n"
        f"{by_command(points)}\n"
    )
    (out / "results.md").write_text(text)
    (out / "results.json").write_text(
        json.dumps(
            {"machine": machine(), "server_cpu": args.server_cpu, "points": points}, indent=2
        )
    )
    print(f"\n{text}\nresults: {out / 'results.md'}; logs in {logdir}")


if __name__ == "__main__":
    main()
