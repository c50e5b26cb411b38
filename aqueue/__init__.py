"""aqueue: an asyncio-native task queue on Redis Streams.

```python
app = aqueue.App("redis://localhost:6379/0")

@app.task
async def add(x: int, y: int) -> int:
    return x + y

job = await add.enqueue(2, 3)
assert await job.result(timeout=10) == 5
```
"""

from . import backoff
from ._app import App, TaskDecorator
from ._canvas import (
    Canvas,
    Chain,
    Chord,
    Group,
    GroupJob,
    Signature,
    Step,
    chord,
    group,
)
from ._context import JobContext, current_job
from ._events import Event, EventType
from ._hooks import ResourceKey, WorkerHook
from ._job import Job, JobInfo, JobStatus, RemoteError
from ._logging import JobLogFilter, JsonLogFormatter
from ._middleware import CallNext, Middleware, OutgoingJob
from ._options import JobOptions, TaskOptions
from ._queue import DeadLetter, Queue, QueueStats
from ._registry import WorkerInfo
from ._schedule import Schedule
from ._serialize import JsonSerializer, Serializer
from ._task import Task
from ._version import __version__
from ._worker import Worker
from .exceptions import (
    AqueueError,
    ConfigurationError,
    ConnectionFailed,
    ErrorType,
    InvalidArguments,
    JobCancelled,
    JobNotFound,
    NotInJob,
    PayloadTooLarge,
    QueueFull,
    ResourceNotProvided,
    ResultTimeout,
    ResultTooLarge,
    Retry,
    SerializationError,
    ServerError,
    TaskFailed,
    TaskRegistrationError,
    TaskTimeout,
    WorkerStartError,
)

__all__ = [
    "App",
    "AqueueError",
    "CallNext",
    "Canvas",
    "Chain",
    "Chord",
    "ConfigurationError",
    "ConnectionFailed",
    "DeadLetter",
    "ErrorType",
    "Event",
    "EventType",
    "Group",
    "GroupJob",
    "InvalidArguments",
    "Job",
    "JobCancelled",
    "JobContext",
    "JobInfo",
    "JobLogFilter",
    "JobNotFound",
    "JobOptions",
    "JobStatus",
    "JsonLogFormatter",
    "JsonSerializer",
    "Middleware",
    "NotInJob",
    "OutgoingJob",
    "PayloadTooLarge",
    "Queue",
    "QueueFull",
    "QueueStats",
    "RemoteError",
    "ResourceKey",
    "ResourceNotProvided",
    "ResultTimeout",
    "ResultTooLarge",
    "Retry",
    "Schedule",
    "SerializationError",
    "Serializer",
    "ServerError",
    "Signature",
    "Step",
    "Task",
    "TaskDecorator",
    "TaskFailed",
    "TaskOptions",
    "TaskRegistrationError",
    "TaskTimeout",
    "Worker",
    "WorkerHook",
    "WorkerInfo",
    "WorkerStartError",
    "__version__",
    "backoff",
    "chord",
    "current_job",
    "group",
]

# Every class and function is shown as aqueue's (in reprs, tracebacks, docs and a failed job's
# error type), where users import it from, not as the private module it lives in (as httpx
# does). Type aliases, the version and the backoff module keep theirs.
for _name in __all__:
    _value = globals()[_name]
    if isinstance(_value, type) or (callable(_value) and hasattr(_value, "__code__")):
        _value.__module__ = __name__
del _name, _value
