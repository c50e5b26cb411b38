"""The dashboard's ASGI app: its pages, its JSON API and its actions."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from importlib.resources import files
from typing import Any, TypeAlias
from urllib.parse import quote, unquote

import jinja2
import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from .._app import App
from .._control import NoSuchWorker, send_command
from .._inspect import UnknownQueue, refuse_unknown_queues
from .._job import JobStatus
from .._queue import Queue
from .._redis._keys import DEAD_LETTER_LIMIT, check_name
from .._version import __version__
from ..exceptions import AqueueError, ConfigurationError, ConnectionFailed, JobNotFound
from . import _data
from ._security import (
    CSRF_FIELD,
    Auth,
    SecurityHeaders,
    check_action,
    check_auth,
    csrf_token,
    keep_token,
)

FRAGMENT_HEADER = "x-aqueue-fragment"
"""Sent by the page's script when it polls: the answer is the page's live part alone."""
FLASH_COOKIE = "aqueue_flash"
"""What the last action did, shown once by the page it redirected to."""
DEFAULT_LIMIT = 50
MAX_LIMIT = 1000
CONTROL_TIMEOUT = 5.0
"""Seconds a ping or shutdown waits for the worker's answer."""

Endpoint: TypeAlias = Callable[[Request], Awaitable[Response]]


class JSONValues(JSONResponse):
    """JSON by orjson: datetimes as ISO 8601, and any value a task returned that is no JSON
    type as its text rather than an error."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, default=str)


def dashboard(app: App, *, read_only: bool = False, auth: Auth | None = None) -> Starlette:
    """The dashboard of ``app``: an ASGI app to serve alone or to mount in another.

    ```python
    api = FastAPI()
    api.mount("/aqueue", dashboard(app, auth=check_user))
    ```

    Its links are relative to where it is mounted. It connects to Redis lazily, through
    ``app`` (close the app when the server stops; served alone, the dashboard does).

    Args:
        app: The aqueue app whose queues, jobs and workers it shows.
        read_only: Show everything but offer no action; every action is refused (403).
        auth: Called with each request (a function or a coroutine function); True lets
            the request in, False answers 401. It may raise an ``HTTPException`` itself,
            e.g. FastAPI's ``HTTPBasic`` asking the browser for credentials.
    """
    return _Dashboard(app, read_only, auth).asgi()


class _Dashboard:
    def __init__(self, app: App, read_only: bool, auth: Auth | None) -> None:
        self.app = app
        self.read_only = read_only
        self.auth = auth
        self.templates = jinja2.Environment(
            loader=jinja2.PackageLoader("aqueue.web", "templates"),
            autoescape=True,  # every value a task, a worker or a user wrote is text
            undefined=jinja2.StrictUndefined,
        )
        self.templates.filters.update(
            time=_time, json=_pretty_json, json_line=_json_line, id=_path_part
        )

    def asgi(self) -> Starlette:
        @contextlib.asynccontextmanager
        async def lifespan(_: Starlette) -> AsyncIterator[None]:
            # Served alone (aqueue dashboard): close the app's connections at the end.
            # Mounted in another app, a sub-app's lifespan does not run: its owner closes it.
            yield
            await self.app.close()

        static = str(files("aqueue.web") / "static")
        return Starlette(
            routes=[*self.pages(), *self.api(), Mount("/static", StaticFiles(directory=static))],
            middleware=[Middleware(SecurityHeaders)],
            exception_handlers={HTTPException: self.error, AqueueError: self.error},
            lifespan=lifespan,
        )

    # -- routes ---------------------------------------------------------------------------

    def pages(self) -> list[BaseRoute]:
        return [
            Route("/", self.guarded(self.overview_page)),
            Route("/jobs", self.guarded(self.jobs_page)),
            Route("/jobs/{job_id}", self.guarded(self.job_page)),
            Route("/workers", self.guarded(self.workers_page)),
            Route("/dead-letters", self.guarded(self.dead_letters_page)),
            Route("/schedules", self.guarded(self.schedules_page)),
        ]

    def api(self) -> list[BaseRoute]:
        reads: dict[str, Endpoint] = {
            "/api/overview": self.overview_json,
            "/api/queues": self.queues_json,
            "/api/jobs": self.jobs_json,
            "/api/jobs/{job_id}": self.job_json,
            "/api/workers": self.workers_json,
            "/api/dead-letters": self.dead_letters_json,
            "/api/schedules": self.schedules_json,
        }
        actions: dict[str, Callable[[Request], Awaitable[str]]] = {
            "/api/jobs/{job_id}/cancel": self.cancel,
            "/api/jobs/{job_id}/retry": self.retry,
            "/api/queues/{queue}/pause": self.pause,
            "/api/queues/{queue}/resume": self.resume,
            "/api/queues/{queue}/dead-letters/replay": self.replay,
            "/api/queues/{queue}/dead-letters/purge": self.purge,
            "/api/workers/{worker}/{command:str}": self.control,
        }
        return [
            *(Route(path, self.guarded(read)) for path, read in reads.items()),
            *(
                Route(path, self.guarded(self.action(act)), methods=["POST"])
                for path, act in actions.items()
            ),
        ]

    def guarded(self, endpoint: Endpoint) -> Endpoint:
        @functools.wraps(endpoint)
        async def run(request: Request) -> Response:
            await check_auth(self.auth, request)
            return await endpoint(request)

        return run

    # -- pages ----------------------------------------------------------------------------

    def render(self, request: Request, name: str, **context: Any) -> Response:
        """The page ``name``, or only its live part when the page's script polls."""
        token = csrf_token(request)
        context.setdefault("live", True)
        context.update(
            root=request.scope.get("root_path", ""),
            path=request.url.path,
            here=request.url.path + (f"?{request.url.query}" if request.url.query else ""),
            read_only=self.read_only,
            csrf_field=CSRF_FIELD,
            csrf=token,
            flash=unquote(request.cookies.get(FLASH_COOKIE, "")),
            events=self.app.events_limit > 0,
            version=__version__,
        )
        template = self.templates.get_template(name)
        if request.headers.get(FRAGMENT_HEADER):
            block = template.blocks["live"]
            html = "".join(block(template.new_context(context)))
        else:
            html = template.render(context)
        response = HTMLResponse(html)
        keep_token(request, response, token)
        if context["flash"] and not request.headers.get(FRAGMENT_HEADER):
            response.delete_cookie(FLASH_COOKIE, path=context["root"] or "/")
        return response

    async def overview_page(self, request: Request) -> Response:
        return self.render(request, "overview.html", data=await _data.overview(self.app))

    async def jobs_page(self, request: Request) -> Response:
        job_id = request.query_params.get("id", "").strip()
        if job_id:  # the search box
            return RedirectResponse(f"{_root(request)}/jobs/{_path_part(job_id)}", 303)
        queue, status, limit = await self.job_filters(request)
        rows = await _data.jobs(self.app, queue, status, limit)
        return self.render(
            request,
            "jobs.html",
            rows=rows,
            queue=queue,
            status=status,
            limit=limit,
            queues=await _data.queue_names(self.app),
            statuses=_data.LISTED,
            finished=status in _data.FINISHED,
        )

    async def job_page(self, request: Request) -> Response:
        record = await self.found_job(request)
        # A job that ended changes no more: its page stops refreshing.
        ended = JobStatus(record["status"]).is_final
        return self.render(request, "job.html", job=record, live=not ended)

    async def workers_page(self, request: Request) -> Response:
        return self.render(request, "workers.html", workers=await _data.workers(self.app))

    async def dead_letters_page(self, request: Request) -> Response:
        queue = await self.queue_filter(request)
        letters = await _data.dead_letters(self.app, queue, _limit(request))
        queues = await _data.queue_names(self.app)
        return self.render(
            request, "dead_letters.html", letters=letters, queue=queue, queues=queues
        )

    async def schedules_page(self, request: Request) -> Response:
        return self.render(request, "schedules.html", schedules=await _data.schedules(self.app))

    # -- the JSON API -----------------------------------------------------------------------

    async def overview_json(self, request: Request) -> Response:
        return JSONValues(await _data.overview(self.app))

    async def queues_json(self, request: Request) -> Response:
        return JSONValues((await _data.overview(self.app))["queues"])

    async def jobs_json(self, request: Request) -> Response:
        queue, status, limit = await self.job_filters(request)
        return JSONValues(await _data.jobs(self.app, queue, status, limit))

    async def job_json(self, request: Request) -> Response:
        return JSONValues(await self.found_job(request))

    async def workers_json(self, request: Request) -> Response:
        return JSONValues(await _data.workers(self.app))

    async def dead_letters_json(self, request: Request) -> Response:
        queue = await self.queue_filter(request)
        return JSONValues(await _data.dead_letters(self.app, queue, _limit(request)))

    async def schedules_json(self, request: Request) -> Response:
        return JSONValues(await _data.schedules(self.app))

    async def found_job(self, request: Request) -> dict[str, Any]:
        job_id = request.path_params["job_id"]
        record = await _data.job(self.app, job_id)
        if record is None:
            raise JobNotFound(f"no record of job {job_id}: never enqueued, or its record expired")
        return record

    async def queue_filter(self, request: Request) -> str:
        name = check_name("queue", request.query_params.get("queue") or self.app.default_queue)
        await refuse_unknown_queues(self.app, [name])  # a typo shows no made-up queue's zeros
        return name

    async def known_queue(self, request: Request) -> Queue:
        """The queue an action names, refused if nothing knows it: pausing a typo would
        leave a flag no worker reads, and the queue meant would go on."""
        queue = self.app.queue(request.path_params["queue"])
        await refuse_unknown_queues(self.app, [queue.name])
        return queue

    async def job_filters(self, request: Request) -> tuple[str, _data.Listed, int]:
        status = request.query_params.get("status") or "queued"
        for listed in _data.LISTED:
            if status == listed:
                return await self.queue_filter(request), listed, _limit(request)
        raise ConfigurationError(f"unknown status {status!r}: use one of {', '.join(_data.LISTED)}")

    # -- actions --------------------------------------------------------------------------

    def action(self, act: Callable[[Request], Awaitable[str]]) -> Endpoint:
        """A POST endpoint doing ``act``: JSON ``{"message": ...}`` for tools, a redirect
        back to the page (with the message shown once) for the pages' forms."""

        async def run(request: Request) -> Response:
            form = await check_action(request)
            if self.read_only:
                raise HTTPException(403, "refused: the dashboard is read-only")
            message = await act(request)
            if form is None:
                return JSONValues({"message": message})
            response = RedirectResponse(_back(request, form), 303)
            response.set_cookie(
                FLASH_COOKIE, quote(message), path=_root(request) or "/", samesite="strict"
            )
            return response

        return run

    async def cancel(self, request: Request) -> str:
        job = self.app.job(request.path_params["job_id"])
        return f"cancelled {job.id}" if await job.cancel() else f"{job.id} had already ended"

    async def retry(self, request: Request) -> str:
        job_id = request.path_params["job_id"]
        letter = await _data.dead_letter_of(self.app, await self.app.job(job_id).info())
        if letter is None:
            raise HTTPException(
                409,
                f"{job_id} has no dead letter to replay, and its arguments are gone: give "
                "its task dead_letter_failures=True to retry failed jobs from here",
            )
        queue = self.app.queue(self.app.job(job_id).queue)
        if await queue.replay_dead(letter=letter.id) == 0:
            raise HTTPException(409, f"{job_id} was not replayed: it succeeded or was cancelled")
        return f"{job_id} is queued again"

    async def pause(self, request: Request) -> str:
        queue = await self.known_queue(request)
        await queue.pause()
        return f"paused {queue.name}"

    async def resume(self, request: Request) -> str:
        queue = await self.known_queue(request)
        await queue.resume()
        return f"resumed {queue.name}"

    async def replay(self, request: Request) -> str:
        queue = await self.known_queue(request)
        return f"replayed {await queue.replay_dead(DEAD_LETTER_LIMIT)} job(s) into {queue.name}"

    async def purge(self, request: Request) -> str:
        queue = await self.known_queue(request)
        return f"deleted {await queue.purge()} dead letter(s) of {queue.name}"

    async def control(self, request: Request) -> str:
        worker, command = request.path_params["worker"], request.path_params["command"]
        if command not in ("ping", "shutdown"):
            raise HTTPException(404, f"no command {command!r}: use ping or shutdown")
        answers, _ = await send_command(self.app, command, [worker], CONTROL_TIMEOUT)
        if worker not in answers:
            raise HTTPException(504, f"{worker} did not answer within {CONTROL_TIMEOUT:g} s")
        return f"{worker}: {answers[worker]}"

    # -- errors ---------------------------------------------------------------------------

    async def error(self, request: Request, exc: Exception) -> Response:
        status, message = _status_of(exc)
        # JSON for tools and for the page's polling script; a page for people.
        if _fragment(request) or (_in_api(request) and not _is_form(request)):
            return JSONValues({"error": message}, status)
        html = self.templates.get_template("error.html").render(
            root=_root(request), status=status, message=message, read_only=self.read_only
        )
        headers = getattr(exc, "headers", None)
        return HTMLResponse(html, status, headers=headers)


def _status_of(exc: Exception) -> tuple[int, str]:
    if isinstance(exc, HTTPException):
        return exc.status_code, exc.detail
    if isinstance(exc, JobNotFound | NoSuchWorker | UnknownQueue):
        return 404, str(exc)
    if isinstance(exc, ConfigurationError):
        return 400, str(exc)
    if isinstance(exc, ConnectionFailed):
        return 503, str(exc)
    return 500, str(exc)


def _root(request: Request) -> str:
    root: str = request.scope.get("root_path", "")
    return root


def _in_api(request: Request) -> bool:
    return request.url.path[len(_root(request)) :].startswith("/api/")


def _is_form(request: Request) -> bool:
    """Whether the request comes from a page's form (else from a tool, or a page's script)."""
    kind = request.headers.get("content-type", "")
    return kind.startswith("application/x-www-form-urlencoded")


def _fragment(request: Request) -> bool:
    return bool(request.headers.get(FRAGMENT_HEADER))


def _back(request: Request, form: dict[str, str]) -> str:
    """Where a form's action returns: its ``next`` field when it is a page of this dashboard
    (never another site's address), else the overview."""
    root = _root(request)
    wanted = form.get("next")
    # "//host" and "/\\host" are other sites' addresses to a browser.
    if wanted is not None and wanted.startswith(f"{root}/") and wanted[:2] not in ("//", "/\\"):
        return wanted
    return f"{root}/"


def _limit(request: Request) -> int:
    try:
        wanted = int(request.query_params.get("limit", DEFAULT_LIMIT))
    except ValueError:
        raise ConfigurationError("limit must be a whole number") from None
    return max(1, min(wanted, MAX_LIMIT))


def _time(value: datetime | None) -> str:
    return "-" if value is None else value.strftime("%Y-%m-%d %H:%M:%S")


def _pretty_json(value: Any) -> str:
    return orjson.dumps(value, default=str, option=orjson.OPT_INDENT_2).decode()


def _json_line(value: Any) -> str:
    return orjson.dumps(value, default=str).decode()


def _path_part(value: str) -> str:
    return quote(value, safe=":")
