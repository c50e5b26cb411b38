"""When a worker should hand over to a fresh process: after so many jobs, or above a size.

A long-lived process can grow (a leaky library, a fragmented heap); recycling bounds what a
leak costs. The worker stops taking work and stops gracefully, so no job is lost or run
twice; a supervisor (``aqueue worker -p N``) starts its replacement.
"""

from __future__ import annotations

import os
import resource
import sys

MIB = 1024 * 1024


class Recycler:
    """Counts the jobs a worker starts and measures its memory after each one ends."""

    def __init__(self, *, max_jobs: int | None, max_memory_mib: int | None) -> None:
        self._max_jobs = max_jobs
        self._max_memory = None if max_memory_mib is None else max_memory_mib * MIB
        self._started = 0

    def started(self) -> str | None:
        """Count a job started; why to recycle now, when this was the last one allowed."""
        self._started += 1
        if self._max_jobs is not None and self._started >= self._max_jobs:
            return f"started {self._started} jobs (--max-tasks-per-child {self._max_jobs})"
        return None

    def ended(self) -> str | None:
        """Why to recycle now, when the process has outgrown its memory limit."""
        if self._max_memory is None:
            return None
        size = resident_bytes()
        if size <= self._max_memory:
            return None
        return (
            f"resident memory {size / MIB:.0f} MiB is above "
            f"--max-memory-per-child {self._max_memory / MIB:.0f}"
        )


def resident_bytes() -> int:
    """This process's resident set size now (its peak where the system cannot say more)."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            pages = int(statm.read().split()[1])
    except OSError:
        # Not Linux: the peak is the best the standard library knows, in KiB but on macOS.
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024
    return pages * os.sysconf("SC_PAGE_SIZE")
