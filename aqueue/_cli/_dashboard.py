"""``aqueue dashboard``: serve the web dashboard (aqueue.web) alone."""

from __future__ import annotations

import click

from .._version import pip_install
from ..cli import _fail_cleanly, app_argument, load_app
from ..cli import main as cli


@cli.command()
@app_argument
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on; 0.0.0.0 exposes it to the network (give it auth first).",
)
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@click.option("--read-only", is_flag=True, help="Show everything, but offer and allow no action.")
@_fail_cleanly
def dashboard(app_path: str, host: str, port: int, read_only: bool) -> None:
    """Serve APP's web dashboard: queues, jobs, workers, dead letters, schedules.

    Needs the web extra (pip install 'aqueue-redis[web]'). To mount it in a web app of
    your own, with authentication, use aqueue.web.dashboard.
    """
    app = load_app(app_path)
    try:
        # Imported only when asked for: Starlette, Jinja2 and uvicorn are the web extra.
        import uvicorn

        from ..web import dashboard as make_dashboard
    except ImportError as exc:
        raise click.ClickException(f"{exc} ({pip_install('web')})") from None
    uvicorn.run(make_dashboard(app, read_only=read_only), host=host, port=port)
