"""A CPU cap for a server process: a Linux cgroup of its own with a CFS bandwidth quota.

``benchmarks/scaling.py --server-cpu`` runs each point's server in one, so that the workers of
a small machine saturate it (see scaling.py's docstring for why that stands in for a bigger
machine). cgroup v1's ``cpu`` controller (``cpu.cfs_period_us`` and ``cpu.cfs_quota_us``) or
cgroup v2's (``cpu.max``); making the group needs root. Standard library only, as run.py is.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

MOUNTS = Path("/proc/self/mounts")
MIN_QUOTA_US = 1_000
"""The kernel refuses a quota under 1 ms."""
SHORT_PERIOD_US = 5_000
LONGEST_PERIOD_US = 100_000
LEAST_FRACTION = MIN_QUOTA_US / LONGEST_PERIOD_US
"""The smallest cap whose period is still no longer than the kernel's default."""


class Controller(NamedTuple):
    """Where the ``cpu`` controller is mounted, and the cgroup version of that mount."""

    root: Path
    version: int


def period_us(fraction: float) -> int:
    """The CFS period of a cap of ``fraction`` of a core.

    Short, so that the server runs a slice of every few milliseconds: under the default 100 ms
    period a 0.1 cap runs it 10 ms and stops it 90 ms, and the workers would drain in bursts
    between stalls that a slower server (what the cap stands for) never makes. Long enough that
    the quota is not under the kernel's 1 ms minimum.
    """
    return max(SHORT_PERIOD_US, math.ceil(MIN_QUOTA_US / fraction))


def controller(mounts: str) -> Controller:
    """The mount of the ``cpu`` controller, from the text of ``/proc/self/mounts``: cgroup v1's
    ``cpu`` hierarchy, else the unified (v2) hierarchy when its root hands ``cpu`` down."""
    unified = None
    for line in mounts.splitlines():
        _, where, kind, options, *_ = line.split()
        if kind == "cgroup" and "cpu" in options.split(","):
            return Controller(Path(where), 1)
        if kind == "cgroup2":
            unified = Path(where)
    if unified is not None:
        with contextlib.suppress(OSError):
            if "cpu" in (unified / "cgroup.subtree_control").read_text().split():
                return Controller(unified, 2)
    raise SystemExit(
        "cannot cap the server's CPU: no cgroup hierarchy here has the cpu controller. Mount "
        "cgroup v1's (mount -t cgroup -o cpu cgroup /sys/fs/cgroup/cpu), or enable cgroup v2's "
        "(echo +cpu > /sys/fs/cgroup/cgroup.subtree_control), or leave out --server-cpu"
    )


@contextlib.contextmanager
def cpu_cap(fraction: float | None) -> Iterator[Callable[[int], None]]:
    """A cgroup capped at ``fraction`` of one core, for as long as the block runs: the block
    puts a process into it with the function it gets, and must see that process end before
    it leaves (the group is removed then). With ``fraction`` None, nothing is capped."""
    if fraction is None:
        yield lambda pid: None
        return
    mount = controller(MOUNTS.read_text())
    group = mount.root / f"aqueue-bench-{os.getpid()}"
    period = period_us(fraction)
    quota = round(period * fraction)
    try:
        group.mkdir()
        if mount.version == 1:
            (group / "cpu.cfs_period_us").write_text(str(period))
            (group / "cpu.cfs_quota_us").write_text(str(quota))
        else:
            (group / "cpu.max").write_text(f"{quota} {period}")
    except OSError as exc:
        with contextlib.suppress(OSError):
            group.rmdir()
        raise SystemExit(
            f"cannot make the cgroup {group} ({exc.strerror}): run as root, "
            "or leave out --server-cpu"
        ) from None

    def join(pid: int) -> None:
        (group / "cgroup.procs").write_text(str(pid))

    try:
        yield join
    finally:
        group.rmdir()
