"""Optional integrations, each in a module of its own that imports its framework:

- ``aqueue.contrib.starlette``: lifespan, dependency and server-sent events for Starlette apps
  (``pip install 'aqueue-redis[starlette]'``);
- ``aqueue.contrib.fastapi``: the same for FastAPI, plus an ``Annotated`` dependency
  (``pip install 'aqueue-redis[fastapi]'``);
- ``aqueue.contrib.aiohttp``: a ``cleanup_ctx`` and a typed ``AppKey`` for aiohttp
  (``pip install 'aqueue-redis[aiohttp]'``).

Nothing here is imported by ``import aqueue``.
"""
