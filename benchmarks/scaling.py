"""How aqueue's drain scales with worker processes on one Redis, and what each task costs it.

    python benchmarks/scaling.py                       # this checkout: 1, 2, 4 processes on 2 cores
    python benchmarks/scaling.py --processes 1,2,4,8,12 --queues 1,8 --n 300000
    python benchmarks/scaling.py --tree before=/tmp/old-checkout --tree after=.

One Redis core is the ceiling of every fleet until Cluster. Each point drains ``--n`` queued
no-op tasks (``result_ttl=0``) with K ``aqueue worker -c C`` processes serving Q queues (the
tasks spread evenly), on a fresh server started from the same prefilled dataset, and reports
the drain rate (first task's start to last task's end, every task checked to run exactly once)
and the server's CPU per task (``used_cpu_user + used_cpu_sys`` over the drain). Several
``--tree`` checkouts (aqueue source trees, run through PYTHONPATH) are measured point by point
in turn, so "today's code beside the new" share the machine's drift. Run with aqueue's
``.venv/bin/python``; the results go to ``--out`` (results.md and results.json).
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


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    cores = os.cpu_count() or 1
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--processes",
        type=numbers,
        default=[1, 2, 4] if cores <= 4 else [1, 2, 4, 8, 12],
        help="worker process counts (default: 1,2,4 up to 4 cores, else 1,2,4,8,12)",
    )
    parser.add_argument("--queues", type=numbers, default=[1, 8], help="queue counts")
    parser.add_argument("--n", type=int, default=40_000 if cores <= 4 else 300_000)
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument(
        "--tree", type=tree, action="append", help="LABEL=PATH of an aqueue checkout to measure"
    )
    parser.add_argument("--out", type=Path)
    return parser.parse_args(argv)


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
    report = run_unit(unit, Path(sys.executable), sizes, prefills)
    metrics = report.get("metrics", report)
    return {
        "tree": label,
        "queues": queues,
        "processes": processes,
        "ok": report.get("ok", False),
        "tasks_per_s": metrics.get("tasks_per_s"),
        "server_cpu_us_per_task": metrics.get("server_cpu_us_per_task"),
        "commands_per_task": metrics.get("commands_per_task", {}),
        "error": report.get("error"),
    }


def cell(point: dict[str, Any] | None) -> str:
    if point is None:
        return ""
    if not point["ok"]:
        return "failed"
    return f"{point['tasks_per_s']:,.0f}/s, {point['server_cpu_us_per_task']:.1f} µs"


def table(points: list[dict[str, Any]], processes: list[int]) -> str:
    head = "| tree | queues | " + " | ".join(f"{k} proc" for k in processes) + " |"
    lines = [head, "|---|--:|" + "--:|" * len(processes)]
    keys = sorted({(p["tree"], p["queues"]) for p in points}, key=lambda k: (k[1], k[0]))
    for label, queues in keys:
        row = {p["processes"]: p for p in points if (p["tree"], p["queues"]) == (label, queues)}
        cells = " | ".join(cell(row.get(k)) for k in processes)
        lines.append(f"| {label} | {queues} | {cells} |")
    return "\n".join(lines)


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
                    f"{point['tasks_per_s']:,.0f} tasks/s, server "
                    f"{point['server_cpu_us_per_task']:.1f} µs/task"
                    if point["ok"]
                    else f"failed: {point['error']}"
                )
                print(
                    f"[{time.monotonic() - started:6.0f} s] {label:10s} {queues} queue(s) "
                    f"{processes:2d} process(es): {shown}",
                    flush=True,
                )
    text = (
        f"# Drain scaling: {args.n:,} no-op tasks, `aqueue worker -c {args.concurrency}`, "
        "result_ttl=0\n\nEach cell: drain rate, and the server's CPU per task.\n\n"
        f"{table(points, args.processes)}\n\n"
        "What the server spent its time on, by command (those inside scripts too):\n\n"
        f"{by_command(points)}\n"
    )
    (out / "results.md").write_text(text)
    (out / "results.json").write_text(
        json.dumps({"machine": machine(), "points": points}, indent=2)
    )
    print(f"\n{text}\nresults: {out / 'results.md'}; logs in {logdir}")


if __name__ == "__main__":
    main()
