"""`spoke serve`, `spoke worker`, `spoke demo`: the processes."""

from __future__ import annotations

import threading
from typing import Any

import typer
import uvicorn

from spoke.cli.common import console, err_console, runtime, settings
from spoke.core import migrate
from spoke.core.db import session_scope
from spoke.runtime import Runtime
from spoke.sandbox.whole_requests import WholeRequestsProtocol


def _require_migrated(rt: Runtime) -> None:
    try:
        migrate.ensure_migrated(rt.engine)
    except migrate.DatabaseNotMigrated as exc:
        err_console.print(f"[red]Refusing to start:[/red] {exc.detail}")
        raise typer.Exit(1) from None


def _run_http(rt: Runtime, host: str, port: int, *, embedded_worker: bool) -> None:
    from spoke.app import create_app

    app = create_app(rt, embedded_worker=embedded_worker)
    config = uvicorn.Config(
        app, host=host, port=port, log_config=None, access_log=False, proxy_headers=True
    )
    uvicorn.Server(config).run()


def _run_http_processes(host: str, port: int, processes: int) -> None:
    """Several HTTP processes on one socket (uvicorn's supervisor restarts any that die).

    Python runs one thread at a time per process, and a request spends most of its CPU in
    Python, so on a machine with more cores than one this is how `spoke serve` uses them.
    Each process builds its own runtime from the environment (`spoke.app:from_environment`).
    """
    uvicorn.run(
        "spoke.app:from_environment",
        factory=True,
        host=host,
        port=port,
        workers=processes,
        log_config=None,
        access_log=False,
        proxy_headers=True,
    )


def serve(
    host: str | None = typer.Option(None, help="Interface (default SPOKE_HTTP__HOST)."),
    port: int | None = typer.Option(None, help="Port (default SPOKE_HTTP__PORT)."),
    processes: int | None = typer.Option(
        None, min=1, help="HTTP processes (default SPOKE_HTTP__PROCESSES; >1 needs Redis)."
    ),
) -> None:
    """Run the HTTP API. Without SPOKE_REDIS_URL the job worker runs inside it too."""
    rt = runtime()
    _require_migrated(rt)
    embedded = rt.settings.redis_url is None
    processes = processes or rt.settings.http.processes
    if processes > 1 and (embedded or rt.engine.dialect.name == "sqlite"):
        err_console.print(
            "[red]Refusing to start:[/red] several HTTP processes need PostgreSQL "
            "(SPOKE_DATABASE_URL) and Redis (SPOKE_REDIS_URL); with SQLite run one."
        )
        raise typer.Exit(2)
    host, port = host or rt.settings.http.host, port or rt.settings.http.port
    console.print(
        f"Spoke on http://{host}:{port}"
        f" (jobs: {'in-process' if embedded else 'redis, run `spoke worker`'}"
        f"{f'; {processes} processes' if processes > 1 else ''})"
    )
    if processes > 1:
        rt.close()
        _run_http_processes(host, port, processes)
        return
    _run_http(rt, host, port, embedded_worker=embedded)


def worker(
    workers: int | None = typer.Option(None, help="Worker threads (default SPOKE_JOBS__WORKERS)."),
) -> None:
    """Run a job consumer. Start as many as you like, on as many machines."""
    rt = runtime()
    _require_migrated(rt)
    console.print(
        f"Spoke worker {rt.jobs.worker_id} ({'redis' if rt.settings.redis_url else 'sqlite'} queue)"
    )
    rt.jobs.consumer(workers=workers).run()


def demo(
    port: int = typer.Option(8000, help="Port for the API."),
    hubspot_port: int = typer.Option(8100, help="Port for the HubSpot sandbox (0: don't start)."),
    fcm_port: int = typer.Option(8200, help="Port for the FCM emulator (0: don't start)."),
    smtp_port: int = typer.Option(2525, help="Port for the SMTP sink (0: don't start)."),
    smtp_api_port: int = typer.Option(8300, help="Port for the SMTP sink's read API."),
    sms_port: int = typer.Option(8400, help="Port for the SMS emulator (0: don't start)."),
) -> None:
    """Everything on one machine: SQLite, in-process jobs, sandboxes and demo data."""
    current = settings()
    migrate.upgrade(current.database_url)
    rt = runtime(current)
    from spoke.demo import seed

    with session_scope(rt.sessions) as session:
        creds = seed(session, rt.encryptor)
    sandbox_url = _start_sandboxes(hubspot_port) if hubspot_port else None
    base = f"http://127.0.0.1:{port}"
    fcm_url = _start_fcm(rt, creds.workspace.id, fcm_port, base) if fcm_port else None
    smtp_url = (
        _start_smtp(rt, creds.workspace.id, smtp_port, smtp_api_port, base) if smtp_port else None
    )
    sms_url = _start_sms(rt, creds.workspace.id, sms_port) if sms_port else None
    console.rule("[bold]Spoke demo")
    console.print(f"API docs:      {base}/docs")
    console.print(f"Workspace:     {creds.workspace.slug} ({creds.workspace.id})")
    console.print(f"X-Api-Key:     {creds.key_id}")
    console.print(f"X-Secret-Key:  {creds.secret}")
    console.print(f"X-Client-Key:  {creds.workspace.client_key}")
    if sandbox_url:
        console.print(f"HubSpot sandbox: {sandbox_url}  (admin API under /_sandbox/)")
    if fcm_url:
        console.print(f"FCM emulator:  {fcm_url}  (received pushes: {fcm_url}/_fcm/messages)")
    if smtp_url:
        console.print(
            f"SMTP sink:     127.0.0.1:{smtp_port}  (received mail: {smtp_url}/_smtp/messages)"
        )
    if sms_url:
        console.print(f"SMS emulator:  {sms_url}  (sent texts: {sms_url}/_sms/messages)")
    console.print("Try:")
    console.print(
        f"  curl -s -u {creds.key_id}:{creds.secret} '{base}/v1/users?limit=3'", soft_wrap=True
    )
    console.rule()
    _run_http(rt, "127.0.0.1", port, embedded_worker=True)


def _start_fcm(rt: Runtime, workspace_id: str, fcm_port: int, spoke_url: str) -> str:
    """The FCM emulator on a thread; the demo workspace sends through it and each demo user
    gets an emulated device that reports deliveries (and some clicks) back, like an app."""
    from spoke.messaging.demo import connect
    from spoke.sandbox.fcm import FcmStore, create_fcm_app
    from spoke.sandbox.fcm.store import Report

    url = f"http://127.0.0.1:{fcm_port}"
    store = FcmStore()
    key = store.create_account("demo-project", f"{url}/token")
    with session_scope(rt.sessions) as session:
        connect(session, rt.encryptor, workspace_id, key, url)
        from spoke.workspaces.service import get_workspace

        client_key = get_workspace(session, workspace_id).client_key
    store.report = Report(spoke_url, client_key, delivered=0.9, clicked=0.3)
    config = uvicorn.Config(
        create_fcm_app(store),
        host="127.0.0.1",
        port=fcm_port,
        log_level="warning",
        http=WholeRequestsProtocol,
    )
    threading.Thread(target=uvicorn.Server(config).run, name="fcm-emulator", daemon=True).start()
    return url


def _start_smtp(
    rt: Runtime, workspace_id: str, smtp_port: int, api_port: int, spoke_url: str
) -> str:
    """The SMTP sink (and its read API) on a thread; the demo workspace sends email to it
    over STARTTLS, trusting the certificate the sink made at start."""
    from spoke.messaging.channel_demo import connect_email
    from spoke.sandbox.smtp import SmtpStore, create_smtp_app

    store = SmtpStore()
    app = create_smtp_app(store, smtp_host="127.0.0.1", smtp_port=smtp_port)
    with session_scope(rt.sessions) as session:
        connect_email(
            session,
            rt.encryptor,
            workspace_id,
            smtp_port=smtp_port,
            certificate_pem=store.certificate_pem,
            links_base_url=spoke_url,
        )
    config = uvicorn.Config(app, host="127.0.0.1", port=api_port, log_level="warning")
    threading.Thread(target=uvicorn.Server(config).run, name="smtp-sink", daemon=True).start()
    return f"http://127.0.0.1:{api_port}"


def _start_sms(rt: Runtime, workspace_id: str, sms_port: int) -> str:
    """The SMS emulator on a thread; the demo workspace texts through it and every demo
    user gets a phone number."""
    from spoke.messaging.channel_demo import connect_sms
    from spoke.sandbox.sms import SmsStore, create_sms_app

    url = f"http://127.0.0.1:{sms_port}"
    store = SmsStore()
    with session_scope(rt.sessions) as session:
        connect_sms(session, rt.encryptor, workspace_id, account=store.create_account(), url=url)
    config = uvicorn.Config(
        create_sms_app(store),
        host="127.0.0.1",
        port=sms_port,
        log_level="warning",
        http=WholeRequestsProtocol,
    )
    threading.Thread(target=uvicorn.Server(config).run, name="sms-emulator", daemon=True).start()
    return url


def _start_sandboxes(hubspot_port: int) -> str | None:
    try:
        from spoke.sandbox.hubspot.app import serve as serve_hubspot
    except ImportError:
        return None
    kwargs: dict[str, Any] = {"host": "127.0.0.1", "port": hubspot_port}
    thread = threading.Thread(
        target=serve_hubspot, kwargs=kwargs, name="hubspot-sandbox", daemon=True
    )
    thread.start()
    return f"http://127.0.0.1:{hubspot_port}"
