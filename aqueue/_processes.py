"""``aqueue worker -p N``: N worker processes under one supervisor.

Each child is a plain ``python -m aqueue worker`` process with the options the supervisor got,
so it starts, registers and stops exactly as a lone worker does. The supervisor itself never
touches Redis; it only starts, watches and signals its children:

- A child that crashes (any exit but the two below) is started again, after a backoff that
  grows while restarts keep failing fast and is logged.
- A child that exits with :data:`RECYCLE_EXIT` asked to be replaced (``--max-tasks-per-child``,
  ``--max-memory-per-child``): it has finished its jobs, and a fresh one starts at once.
- A child that exits 0 was told to stop (``aqueue control shutdown``) or ran out of work
  (``--burst``); it is not replaced. The supervisor ends when no child is left.
- A child that fails with a usage or start-up error (exit 1 or 2) within seconds of its
  start would fail again: the supervisor stops the others and exits with that code. With
  ``--reload`` it waits for the next change of the code instead (the fix of a typo).

Children run in a process group of their own, so a Ctrl-C at a terminal reaches them once,
through the supervisor, rather than twice (which would hurry them). SIGTERM and SIGINT are
passed on as they come: the first stops every child gracefully, a second hurries them.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

logger = logging.getLogger("aqueue.supervisor")

RECYCLE_EXIT = 75
"""The exit code of a supervised child that asks to be replaced (EX_TEMPFAIL)."""

START_FAILURE_WINDOW = 5.0
"""Seconds after its start within which a child's exit 1 or 2 is taken for a bad setup."""

STABLE = 30.0
"""Seconds a child must live for its next crash to restart it without delay again."""

MAX_DELAY = 30.0

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@dataclass
class _Slot:
    """One of the N places a child process fills; its restarts back off on their own."""

    number: int
    process: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    crashes: int = 0
    restart_at: float | None = None
    replace: bool = False
    """Restart it once it has exited, whatever its exit code (a reload)."""
    awaits_change: bool = False
    """With ``--reload``: it failed to start; the next change of the code restarts it."""

    @property
    def in_use(self) -> bool:
        return self.process is not None or self.restart_at is not None or self.awaits_change


class Supervisor:
    """Runs ``processes`` children of ``python -m aqueue worker ARGS --supervised``.

    Args:
        arguments: The worker command's arguments for each child (APP and options).
        processes: How many children to keep running.
        watch: With ``--reload``: a function that blocks, calling its argument on each change
            of the code, until the event it is given is set.
        ended: Called with the pid of each child that exited (e.g. to stop counting its
            in-progress metrics).
    """

    def __init__(
        self,
        arguments: Sequence[str],
        processes: int,
        *,
        watch: Callable[[Callable[[], None], threading.Event], None] | None = None,
        ended: Callable[[int], None] | None = None,
    ) -> None:
        self._ended = ended
        self._command = [sys.executable, "-m", "aqueue", "worker", *arguments, "--supervised"]
        self._slots = [_Slot(n) for n in range(processes)]
        self._watch = watch
        self._wake = threading.Event()
        self._signals: list[signal.Signals] = []
        self._stopping = False
        self._reload = False
        self._exit_code = 0

    def run(self) -> int:
        """Supervise until every child has ended; the exit code for the command."""
        previous = {
            sig: signal.signal(sig, self._on_signal) for sig in (*STOP_SIGNALS, signal.SIGCHLD)
        }
        done = threading.Event()
        if self._watch is not None:
            threading.Thread(
                target=self._watch, args=(self._on_change, done), name="aqueue reload", daemon=True
            ).start()
        try:
            logger.info("supervisor %d starting %d worker processes", os.getpid(), len(self._slots))
            for slot in self._slots:
                self._start(slot)
            while any(slot.in_use for slot in self._slots):
                self._wake.wait(self._next_timeout())
                self._wake.clear()
                self._pass_signals()
                self._reload_if_asked()
                self._reap()
                self._restart_due()
        finally:
            done.set()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        logger.info("supervisor %d stopped", os.getpid())
        return self._exit_code

    def _on_signal(self, signum: int, frame: object) -> None:
        # Only note it here: the main loop acts on it, out of the handler's reentrancy.
        if signum != signal.SIGCHLD:
            self._signals.append(signal.Signals(signum))
        self._wake.set()

    def _on_change(self) -> None:
        self._reload = True
        self._wake.set()

    def _next_timeout(self) -> float | None:
        due = [slot.restart_at for slot in self._slots if slot.restart_at is not None]
        # SIGCHLD wakes the loop when a child exits; the timeout is a safety net for a
        # signal that arrived between the check and the wait.
        return max(0.0, min(due) - time.monotonic()) if due else 1.0

    def _pass_signals(self) -> None:
        while self._signals:
            sig = self._signals.pop(0)
            if self._stopping:
                logger.warning("%s again: hurrying the worker processes", sig.name)
            else:
                logger.info("%s: stopping the worker processes gracefully", sig.name)
            self._stopping = True
            for slot in self._slots:
                slot.restart_at = None
                slot.awaits_change = False
                if slot.process is not None and slot.process.poll() is None:
                    slot.process.send_signal(sig)

    def _reload_if_asked(self) -> None:
        if not self._reload or self._stopping:
            return
        self._reload = False
        logger.info("code changed: restarting the worker processes")
        for slot in self._slots:
            if slot.process is not None and slot.process.poll() is None:
                slot.replace = True
                slot.process.send_signal(signal.SIGTERM)
            elif slot.restart_at is not None or slot.awaits_change:
                slot.awaits_change = False
                slot.restart_at = time.monotonic()

    def _reap(self) -> None:
        now = time.monotonic()
        for slot in self._slots:
            process = slot.process
            if process is None or (code := process.poll()) is None:
                continue
            slot.process = None
            if self._ended is not None:
                self._ended(process.pid)
            lived = now - slot.started
            if self._stopping:
                # Killed by the stop signal itself: it came before the child had installed its
                # handlers, while it was starting, so it held no job yet.
                if code not in (0, RECYCLE_EXIT, *(-sig for sig in STOP_SIGNALS)):
                    logger.warning("worker process %d %s", process.pid, _describe(code))
                    self._exit_code = 1
            elif slot.replace:
                slot.replace = False
                slot.restart_at = now
            elif code == RECYCLE_EXIT:
                logger.info("worker process %d recycled; starting its replacement", process.pid)
                slot.restart_at = now
            elif code == 0:
                logger.info("worker process %d stopped and is not replaced", process.pid)
            elif code in (1, 2) and lived < START_FAILURE_WINDOW and self._watch is not None:
                # Most often a mistake in the code just saved: the fix will be saved too.
                logger.error(
                    "worker process %d failed to start (exit %d, its output says why); "
                    "waiting for a change of the code",
                    process.pid,
                    code,
                )
                slot.awaits_change = True
            elif code in (1, 2) and lived < START_FAILURE_WINDOW:
                logger.error(
                    "worker process %d failed to start (exit %d, its output says why); "
                    "stopping the others",
                    process.pid,
                    code,
                )
                self._exit_code = code
                self._signals.append(signal.SIGTERM)
                self._wake.set()
            else:
                slot.crashes = 1 if lived >= STABLE else slot.crashes + 1
                delay = min(MAX_DELAY, 0.5 * 2 ** (slot.crashes - 1))
                logger.warning(
                    "worker process %d %s; restarting it in %.1f s",
                    process.pid,
                    _describe(code),
                    delay,
                )
                slot.restart_at = now + delay

    def _restart_due(self) -> None:
        now = time.monotonic()
        for slot in self._slots:
            if slot.restart_at is not None and slot.restart_at <= now and not self._stopping:
                slot.restart_at = None
                self._start(slot)

    def _start(self, slot: _Slot) -> None:
        # A process group of its own: a terminal's Ctrl-C reaches it only through us.
        slot.process = subprocess.Popen(self._command, process_group=0)
        slot.started = time.monotonic()
        logger.info(
            "worker process %d started (%d of %d)",
            slot.process.pid,
            slot.number + 1,
            len(self._slots),
        )


def _describe(code: int) -> str:
    if code < 0:
        return f"was killed by {signal.Signals(-code).name}"
    return f"exited with {code}"
