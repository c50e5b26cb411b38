"""FastAPI helpers: the Starlette ones (see :mod:`aqueue.contrib.starlette`) and
``AqueueApp``, the app as an annotated dependency.

```python
from fastapi import FastAPI
from aqueue.contrib.fastapi import AqueueApp, lifespan, stream_job

api = FastAPI(lifespan=lifespan(app, worker=True))

@api.post("/sum")
async def enqueue_sum(x: int, y: int, queue: AqueueApp) -> dict[str, str]:
    job = await queue.enqueue("tasks.add", x, y)
    return {"id": job.id}

@api.get("/jobs/{job_id}/events")
async def events(job_id: str, queue: AqueueApp) -> Response:
    return await stream_job(queue, job_id)
```

Needs FastAPI: ``pip install 'aqueue-redis[fastapi]'``.
"""

from __future__ import annotations

from typing import Annotated

from .._version import pip_install

try:
    from fastapi import Depends
except ImportError as exc:
    raise ImportError(f"aqueue.contrib.fastapi needs FastAPI: {pip_install('fastapi')}") from exc

from .._app import App
from .starlette import STATE_KEY, WorkerFactory, get_app, job_events, lifespan, stream_job

__all__ = [
    "STATE_KEY",
    "AqueueApp",
    "WorkerFactory",
    "get_app",
    "job_events",
    "lifespan",
    "stream_job",
]

AqueueApp = Annotated[App, Depends(get_app)]
"""A handler's parameter annotated ``AqueueApp`` receives the app of :func:`lifespan`."""
