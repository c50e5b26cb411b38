"""Which job a log record came from: a filter for any format, and the CLI's JSON lines.

The worker keeps the running job in a context variable (``aqueue.current_job()``); it follows
the job into the threads of synchronous tasks and into tasks it spawns. Library code never
configures logging: only the ``aqueue worker`` command installs these on its handler.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from ._context import _current

JOB_FIELDS = ("aqueue_job_id", "aqueue_task", "aqueue_queue", "aqueue_attempt")
"""The attributes :class:`JobLogFilter` sets on every record."""

OUTSIDE_A_JOB = "-"


class JobLogFilter(logging.Filter):
    """Adds the running job's id, task, queue and attempt to each record it sees.

    Put it on a handler, and name the fields in the handler's format::

        handler.addFilter(aqueue.JobLogFilter())
        handler.setFormatter(logging.Formatter("%(aqueue_job_id)s %(aqueue_task)s %(message)s"))

    The attributes are ``aqueue_job_id``, ``aqueue_task``, ``aqueue_queue`` and
    ``aqueue_attempt``; a record logged outside a job has ``"-"`` in each. A filter on a
    handler sees the records of every logger that reaches it (one on a logger would not see
    those its children pass up). It never drops a record.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        job = _current.get(None)
        if job is None:
            values: tuple[Any, ...] = (OUTSIDE_A_JOB,) * len(JOB_FIELDS)
        else:
            values = (job.id, job.task, job.queue, job.attempt)
        for name, value in zip(JOB_FIELDS, values, strict=True):
            setattr(record, name, value)
        return True


class JsonLogFormatter(logging.Formatter):
    """One JSON object per record and line: time, level, logger, message, the job's fields.

    ``job_id``, ``task``, ``queue`` and ``attempt`` are ``null`` outside a job; a traceback
    is under ``exception``. It reads the job from the running context itself, so it needs no
    :class:`JobLogFilter`.
    """

    def format(self, record: logging.LogRecord) -> str:
        job = _current.get(None)
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "job_id": job and job.id,
            "task": job and job.task,
            "queue": job and job.queue,
            "attempt": job and job.attempt,
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exception"] = record.exc_text
        return json.dumps(line, default=str)
