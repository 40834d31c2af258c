"""`spoke config show`: the effective settings, secrets masked, each with its description."""

from __future__ import annotations

from typing import Any

import typer
from pydantic import BaseModel
from rich.table import Table

from spoke.cli.common import console, settings
from spoke.config import Settings

app = typer.Typer(help="Configuration.", no_args_is_help=True)


def _rows(
    model: type[BaseModel], values: dict[str, Any], prefix: str
) -> list[tuple[str, str, str]]:
    rows = []
    for name, info in model.model_fields.items():
        value = values.get(name)
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            rows.extend(_rows(annotation, value or {}, f"{prefix}{name.upper()}__"))
            continue
        rows.append(
            (f"{prefix}{name.upper()}", "" if value is None else str(value), info.description or "")
        )
    return rows


@app.command()
def show(
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Print every setting as Spoke sees it now (environment, .env, defaults)."""
    current = settings()
    values = current.masked()
    if as_json:
        import orjson

        console.print_json(orjson.dumps(values).decode())
        return
    table = Table("variable", "value", "meaning")
    for row in _rows(Settings, values, "SPOKE_"):
        table.add_row(*row)
    console.print(table)
