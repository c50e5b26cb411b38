"""Processes by PID: find a process tree in /proc, read its peak memory, kill it.

Standard library only: run.py uses it under any Python, the driver inside the peers virtualenv.
A PID is only ever signalled together with the start time it had when we found it, so a PID
that the system has since given to another process is never touched.
"""

from __future__ import annotations

import collections
import contextlib
import os
import signal
from pathlib import Path


def stat(pid: int) -> tuple[int, str] | None:
    """(parent PID, start time in clock ticks) of a live process, from /proc."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()
    return int(fields[1]), fields[19]


def start_time(pid: int) -> str | None:
    info = stat(pid)
    return None if info is None else info[1]


def tree(root: int) -> list[tuple[int, str]]:
    """``root`` and all its descendants, each with its start time."""
    children: dict[int, list[int]] = collections.defaultdict(list)
    starts: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            info = stat(int(entry.name))
            if info is not None:
                children[info[0]].append(int(entry.name))
                starts[int(entry.name)] = info[1]
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        if pid in starts:
            found.append((pid, starts[pid]))
            todo.extend(children.get(pid, []))
    return found


def vm_hwm_kb(pid: int) -> int:
    """Peak resident set size (VmHWM) of a live process in KiB; 0 when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _signal(pid: int, start: str, sig: signal.Signals) -> None:
    if start_time(pid) == start:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def kill_tree(root: int, start: str | None = None) -> None:
    """SIGKILL ``root`` (if it still has start time ``start``) and its descendants, by PID.

    They are all stopped first, top down, so that a supervisor cannot fork a replacement for
    a child that is about to be killed.
    """
    if start is not None and start_time(root) != start:
        return
    found = tree(root)
    for pid, begun in found:
        _signal(pid, begun, signal.SIGSTOP)
    found += [p for p in tree(root) if p not in found]
    for pid, begun in found:
        _signal(pid, begun, signal.SIGKILL)


def become_subreaper() -> None:
    """Adopt orphaned descendants (Linux), so a worker whose parent died is still found here."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        pass


def kill_descendants(keep: frozenset[int] = frozenset()) -> None:
    """SIGKILL every descendant of this process except the trees rooted at ``keep``.

    The ones that were our own children (adopted orphans included) are reaped.
    """
    me = os.getpid()
    spared = {pid for root in keep for pid, _ in tree(root)}
    doomed = [(pid, begun) for pid, begun in tree(me) if pid != me and pid not in spared]
    for pid, begun in doomed:
        _signal(pid, begun, signal.SIGSTOP)
    for pid, begun in doomed:
        _signal(pid, begun, signal.SIGKILL)
    for pid, _ in doomed:
        # ChildProcessError: not our child, its own parent reaps it.
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
