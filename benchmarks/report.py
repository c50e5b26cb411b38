"""Turn results.json into results.md (medians, versions, settings, failures) and a bar chart.

    python benchmarks/report.py benchmarks/results/results.json benchmarks/results

run.py calls it with the drivers' interpreter; the chart needs matplotlib (installed in the
peers environment) and is left out, with a note, where it is missing.
"""

from __future__ import annotations

import json
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ORDER = ("aqueue", "arq", "saq", "taskiq", "streaq", "docket", "celery", "dramatiq", "raw")


@dataclass(frozen=True)
class Row:
    row: str
    metric: str
    label: str
    unit: str
    higher_is_better: bool
    scale: float = 1.0
    digits: int = 0


def rows(sizes: dict[str, Any]) -> list[Row]:
    n, io_n, io_c = sizes["n"], sizes["io_n"], sizes["io_concurrency"]
    ideal = io_n * sizes["sleep"] / io_c
    return [
        Row("enqueue", "tasks_per_s", f"Enqueue {n:,} tasks, one await at a time", "tasks/s", True),
        Row(
            "enqueue_batch",
            "tasks_per_s",
            "Enqueue through the batch API, 1,000 per call",
            "tasks/s",
            True,
        ),
        Row(
            "drain",
            "tasks_per_s",
            f"Drain {n:,} queued no-op tasks, 1 worker process, no results kept",
            "tasks/s",
            True,
        ),
        Row(
            "drain_results", "tasks_per_s", "Drain, 1 worker process, results kept", "tasks/s", True
        ),
        Row(
            "io",
            "seconds",
            f"I/O: {io_n:,} x sleep({sizes['sleep']}) at concurrency {io_c}, "
            f"wall time (ideal {ideal:g} s)",
            "s",
            False,
            digits=2,
        ),
        Row(
            "latency",
            "p50_ms",
            f"Round trip (enqueue + await result) x {sizes['latency_n']:,}: p50",
            "ms",
            False,
            digits=2,
        ),
        Row("latency", "p90_ms", "Round trip: p90", "ms", False, digits=2),
        Row("latency", "p99_ms", "Round trip: p99", "ms", False, digits=2),
        Row(
            "drain",
            "server_cpu_us_per_task",
            "Server CPU per task during the drain (used_cpu_user + sys)",
            "µs",
            False,
            digits=1,
        ),
        Row(
            "drain_results",
            "server_cpu_us_per_task",
            "Server CPU per task, results kept",
            "µs",
            False,
            digits=1,
        ),
        Row("scale2", "tasks_per_s", "Drain with 2 worker processes", "tasks/s", True),
        Row("scale4", "tasks_per_s", "Drain with 4 worker processes", "tasks/s", True),
        Row(
            "drain",
            "rss_tree_kb",
            "Worker peak RSS during the drain (VmHWM, all its processes)",
            "MiB",
            False,
            1 / 1024,
            1,
        ),
        Row(
            "drain",
            "rss_max_kb",
            "Worker peak RSS, largest single process",
            "MiB",
            False,
            1 / 1024,
            1,
        ),
        Row(
            "memory",
            "bytes_per_task",
            f"Redis memory per queued task ({sizes['memory_n']:,} queued), results kept",
            "bytes",
            False,
        ),
        Row(
            "memory_ff",
            "bytes_per_task",
            "Redis memory per queued task, no results kept",
            "bytes",
            False,
        ),
    ]


class Results:
    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data
        self.meta = data["meta"]
        present = {key.split("/")[0] for key in data["units"]} | set(data["status"])
        self.libs = [lib for lib in ORDER if lib in present]

    def entry(self, lib: str, row: str) -> dict[str, Any] | None:
        entry: dict[str, Any] | None = self.data["units"].get(f"{lib}/{row}")
        if entry is None and row == "memory_ff" and lib in self.meta.get("memory_once", []):
            # Its enqueue writes the same bytes with or without results: one measurement.
            entry = self.data["units"].get(f"{lib}/memory")
        return entry

    def value(self, lib: str, row: str, metric: str) -> float | str | None:
        """The median over the successful repetitions, 'FAILED', or None (not measured)."""
        entry = self.entry(lib, row)
        if entry is None:
            return None
        if not all(rep.get("ok") for rep in entry["reps"]):
            return "FAILED"
        values = [rep["metrics"][metric] for rep in entry["reps"] if metric in rep["metrics"]]
        return statistics.median(values) if values else None

    def cell(self, lib: str, row: Row) -> str:
        value = self.value(lib, row.row, row.metric)
        if value is None:
            if self.data["status"].get(lib, "ok") != "ok":
                return "not run"
            if row.row == "enqueue_batch" and lib in self.libs:
                return "no API"
            return "—"
        if isinstance(value, str):
            # What was measured anyway, in brackets: never a result, but telling.
            entry = self.entry(lib, row.row) or {"reps": []}
            anyway = [
                r["metrics"][row.metric]
                for r in entry["reps"]
                if row.metric in r.get("metrics", {})
            ]
            if anyway:
                return f"**{value}** ({anyway[0] * row.scale:,.{row.digits}f})"
            return f"**{value}**"
        return f"{value * row.scale:,.{row.digits}f}"

    def ratio(self, row: Row) -> tuple[str, str]:
        """aqueue divided by the best peer, and which peer that is."""
        ours = self.value("aqueue", row.row, row.metric)
        peers = {
            lib: v
            for lib in self.libs
            if lib not in ("aqueue", "raw")
            and isinstance(v := self.value(lib, row.row, row.metric), float | int)
        }
        if not isinstance(ours, float | int) or not peers:
            return "", ""
        pick = max if row.higher_is_better else min
        best = pick(peers, key=lambda lib: peers[lib])
        if not peers[best]:
            return "", best
        return f"{ours / peers[best]:.2f}", best

    def floor_ratio(self, row: Row) -> str:
        """aqueue divided by the floor: the median of the ratios of repetitions run one after
        the other (run.py runs each of aqueue's right before the floor's), so the machine's
        drift over a run cancels out; "" where either was not measured or failed."""
        pairs = []
        for lib in ("aqueue", "raw"):
            entry = self.entry(lib, row.row)
            if entry is None or not all(rep.get("ok") for rep in entry["reps"]):
                return ""
            pairs.append([rep["metrics"].get(row.metric) for rep in entry["reps"]])
        ratios = [ours / floor for ours, floor in zip(*pairs, strict=False) if ours and floor]
        return f"{statistics.median(ratios):.2f}" if ratios else ""


def table(results: Results) -> list[str]:
    libs = results.libs
    head = ["Workload", "Unit", *libs, "aqueue ÷ best peer", "best peer", "aqueue ÷ floor"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows(results.meta["sizes"]):
        cells = [results.cell(lib, row) for lib in libs]
        if all(cell in ("—", "no API", "not run") for cell in cells):
            continue
        ratio, best = results.ratio(row)
        floor = results.floor_ratio(row)
        arrow = "↑" if row.higher_is_better else "↓"
        lines.append(
            "| " + " | ".join([row.label, f"{row.unit} {arrow}", *cells, ratio, best, floor]) + " |"
        )
    return lines


def ratios(results: Results) -> list[str]:
    lines = []
    for row in rows(results.meta["sizes"]):
        ratio, best = results.ratio(row)
        if not ratio:
            continue
        value = float(ratio)
        ahead = value >= 1 if row.higher_is_better else value <= 1
        if row.higher_is_better:
            how = f"{value:.2f}x the best peer's {row.unit}"
        else:
            how = f"{value:.2f}x the best peer's {row.unit} (lower is better)"
        verdict = "ahead of" if ahead else "behind"
        lines.append(f"- {row.label}: aqueue is {verdict} {best}: {how}.")
    return lines


def settings(results: Results) -> list[str]:
    lines = ["| Library | Drain / latency worker | I/O worker |", "|---|---|---|"]
    for lib in results.libs:
        found = {}
        for row in ("drain", "io", "latency"):
            entry = results.entry(lib, row)
            if entry:
                found[row] = next((r["settings"] for r in entry["reps"] if "settings" in r), "")
        if found:
            lines.append(f"| {lib} | {found.get('drain', '')} | {found.get('io', '')} |")
    return lines


def versions(results: Results) -> list[str]:
    lines = ["| Library | Versions |", "|---|---|"]
    for lib in results.libs:
        found: dict[str, str] = {}
        for key, entry in results.data["units"].items():
            if key.startswith(lib + "/"):
                for rep in entry["reps"]:
                    found.update(rep.get("versions", {}))
        if found:
            text = ", ".join(f"{name} {version}" for name, version in found.items())
            lines.append(f"| {lib} | {text} |")
    return lines


def problems(results: Results) -> list[str]:
    lines = []
    for lib, status in results.data["status"].items():
        if status != "ok":
            lines.append(f"- **{lib}** was not run: {status.splitlines()[0]}")
    for key, entry in results.data["units"].items():
        for number, rep in enumerate(entry["reps"], 1):
            if not rep.get("ok"):
                error = rep.get("error", "?").strip()
                lines.append(
                    f"- **{key}** (repetition {number}) failed:\n\n  ```\n  "
                    + "\n  ".join(error.splitlines()[:12])
                    + "\n  ```"
                )
    return lines


def notes(results: Results) -> list[str]:
    lines = []
    sizes = results.meta["sizes"]
    single = [
        key
        for key, entry in results.data["units"].items()
        if len(entry["reps"]) == 1
        and not entry["unit"].get("once")
        and all(rep.get("ok") for rep in entry["reps"])
    ]
    if sizes["reps"] > 1:
        lines.append(
            f"- Median of {sizes['reps']} repetitions, except: Redis memory (one run, it is "
            "deterministic), failures (not repeated), and these, run once because "
            f"{sizes['reps']} runs of them would not fit the time budget of "
            f"{sizes['budget'] / 60:.1f} min (the most important and cheapest were repeated "
            f"first): {', '.join(single) or 'none'}."
        )
    once = [lib for lib in results.meta.get("memory_once", []) if lib in results.libs]
    if once and "memory" in results.meta["workloads"]:
        lines.append(
            "- Redis memory with no results kept is the results-kept measurement for "
            f"{', '.join(once)}: their enqueue writes the same bytes either way."
        )
    for key, entry in results.data["units"].items():
        for rep in entry["reps"]:
            metrics = rep.get("metrics", {})
            if metrics.get("warmup_lost"):
                lines.append(
                    f"- {key}: {metrics['warmup_lost']} warm-up round trip(s) lost while the "
                    "worker started (not counted; retried)."
                )
                break
            if metrics.get("round_trips", sizes["latency_n"]) < sizes["latency_n"]:
                lines.append(
                    f"- {key}: {metrics['round_trips']} round trips instead of "
                    f"{sizes['latency_n']:,}: they took longer than {sizes['latency_cap']:.0f} s."
                )
                break
    return lines


def markdown(results: Results, chart: str | None) -> str:
    meta = results.meta
    sizes = meta["sizes"]
    out = [
        "# aqueue and its peers, side by side",
        "",
        f"{meta['date']}; `{meta['command']}`"
        + (" (quick: small counts, not for comparison)" if meta.get("quick") else ""),
        "",
        f"Machine: {meta['cores']} cores ({meta['cpu']}), Linux {meta['kernel']}; "
        f"{meta.get('server', 'redis-server')} {meta['redis_server']} "
        "(a fresh one per measurement, no persistence); "
        f"Python {meta.get('python', '?')}; aqueue at {meta['aqueue_commit']}. "
        f"Whole run: {meta.get('total_seconds', 0) / 60:.1f} min; load average (1 min) "
        f"{meta.get('load_before', '?')} before, {meta.get('load_after', '?')} after.",
        "",
        "## Results",
        "",
        "Medians. ↑: higher is better, ↓: lower is better. *aqueue ÷ best peer* divides "
        "aqueue's value by the best peer's (raw is the floor, not a peer): above 1 is ahead "
        "for ↑ rows, below 1 is ahead for ↓ rows. *aqueue ÷ floor* is the median of the "
        "ratios of aqueue's and the floor's repetitions, each pair measured one right after "
        "the other.",
        "",
        *table(results),
        "",
    ]
    if chart:
        out += [f"![results]({chart})", ""]
    out += ["## aqueue against the best peer", "", *ratios(results), ""]
    out += [
        "## How each library ran",
        "",
        f"Async libraries run on uvloop; drain and latency use concurrency "
        f"{sizes['concurrency']} per worker process (celery and dramatiq: their process/thread "
        f"pools as stated), the I/O workload {sizes['io_concurrency']}. No results kept: each "
        "library's mode that stores no result where it has one (aqueue `result_ttl=0`). "
        "Every task records its index in the worker (a list append, flushed to Redis with one "
        "string per 5 ms); a run counts only if every index ran exactly once, and its time "
        "is from the first task's start to the last task's end (worker start-up excluded). "
        "Round trips check each returned value. Redis memory: `used_memory` before and after "
        "queuing, no worker running.",
        "",
        *settings(results),
        "",
        "## Versions",
        "",
        *versions(results),
        "",
    ]
    trouble = problems(results)
    out += ["## Failures", "", *(trouble or ["None."]), ""]
    remarks = notes(results)
    if remarks:
        out += ["## Notes", "", *remarks, ""]
    return "\n".join(out)


def draw(results: Results, path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    panels = [
        row
        for row in rows(results.meta["sizes"])
        if row.metric != "rss_max_kb" and row.metric != "p90_ms"
    ]
    panels = [
        row
        for row in panels
        if any(
            isinstance(results.value(lib, row.row, row.metric), float | int) for lib in results.libs
        )
    ]
    if not panels:
        return False
    columns = 3
    lines = -(-len(panels) // columns)
    figure, axes = plt.subplots(lines, columns, figsize=(15, 3.2 * lines), squeeze=False)
    for ax, row in zip(axes.flat, panels, strict=False):
        names, values, colors = [], [], []
        for lib in results.libs:
            value = results.value(lib, row.row, row.metric)
            if isinstance(value, float | int):
                names.append(lib)
                values.append(value * row.scale)
                colors.append(
                    "#d62728" if lib == "aqueue" else "#7f7f7f" if lib == "raw" else "#1f77b4"
                )
        ax.barh(names[::-1], values[::-1], color=colors[::-1])
        arrow = "higher is better" if row.higher_is_better else "lower is better"
        spread = max(values) / max(min(values), 1e-9)
        if spread > 30:  # one bar would flatten the others: compare on a log axis
            ax.set_xscale("log")
            arrow += ", log scale"
        title = row.label if len(row.label) < 60 else row.label[:57] + "..."
        ax.set_title(f"{title}\n{row.unit}, {arrow}", fontsize=9)
        ax.tick_params(labelsize=8)
        for y, value in enumerate(values[::-1]):
            ax.text(value, y, f" {value:,.{row.digits}f}", va="center", fontsize=7)
        ax.margins(x=0.25)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    figure.suptitle(
        f"aqueue (red) and its peers; raw redis-py floor in grey. {results.meta['cores']} cores, "
        f"{results.meta.get('server', 'redis-server')} {results.meta['redis_server']}",
        fontsize=11,
    )
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return True


def main() -> None:
    source, target = Path(sys.argv[1]), Path(sys.argv[2])
    results = Results(json.loads(source.read_text()))
    chart = target / "results.png"
    drawn = draw(results, chart)
    text = markdown(results, chart.name if drawn else None)
    if not drawn:
        text += "\n(No chart: matplotlib is not installed in this environment.)\n"
    (target / "results.md").write_text(text)
    print("\n".join(table(results)))


if __name__ == "__main__":
    main()
