"""The web dashboard: queues, jobs, workers, dead letters and schedules, live, with actions.

```python
from aqueue.web import dashboard

api.mount("/aqueue", dashboard(app))          # in a FastAPI or Starlette app
```

or ``aqueue dashboard myproj.tasks:app`` to serve it alone. Needs the web extra:
``pip install 'aqueue-redis[web]'``.
"""

from __future__ import annotations

from .._version import pip_install

try:
    import jinja2  # noqa: F401
    import starlette  # noqa: F401
except ImportError as exc:
    raise ImportError(f"aqueue.web needs Starlette and Jinja2: {pip_install('web')}") from exc

from ._app import dashboard
from ._security import Auth

__all__ = ["Auth", "dashboard"]
