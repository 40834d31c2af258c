"""What every CLI command shares: settings, a runtime, a transaction, error display."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich.console import Console
from sqlalchemy.orm import Session

from spoke.config import Settings, get_settings
from spoke.core.db import session_scope
from spoke.core.errors import AppError
from spoke.core.logging import configure_logging
from spoke.runtime import Runtime, build_runtime

console = Console()
err_console = Console(stderr=True)


def settings() -> Settings:
    return get_settings()


def runtime(current: Settings | None = None) -> Runtime:
    current = current or settings()
    configure_logging(current.log)
    return build_runtime(current)


@contextmanager
def transaction(rt: Runtime) -> Iterator[Session]:
    """A unit of work for a CLI command; an AppError becomes a red message and exit 1."""
    try:
        with session_scope(rt.sessions) as session:
            yield session
    except AppError as exc:
        err_console.print(f"[red]{exc.detail}[/red] ({exc.code})")
        raise typer.Exit(1) from None
