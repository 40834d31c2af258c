"""What one export run works with, gathered once when it starts."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.orm import Session, sessionmaker

from spoke.events.definitions import Definitions
from spoke.events.export_models import EventExportSettings
from spoke.events.sender import Policy
from spoke.hubspot import BlockingClient


@dataclass(frozen=True)
class Config:
    """The workspace's export settings as the run read them at its start."""

    send: str
    events: tuple[tuple[str, str, str | None], ...]  # (type, name, delivery)
    default_delivery: str
    long_values: str
    create_contacts: bool
    monthly_cap: int
    export_from: datetime | None

    @classmethod
    def of(cls, row: EventExportSettings) -> Config:
        return cls(
            send=row.send,
            events=tuple((e["type"], e["name"], e.get("delivery")) for e in row.events),
            default_delivery=row.default_delivery,
            long_values=row.long_values,
            create_contacts=row.create_contacts,
            monthly_cap=row.monthly_cap,
            export_from=row.export_from,
        )


@dataclass(frozen=True)
class Context:
    sessions: sessionmaker[Session]
    hs: BlockingClient
    definitions: Definitions
    config: Config
    workspace_id: str
    portal_id: int
    run_id: str
    owner: str
    lease_seconds: float
    concurrency: int
    chunk: int
    settle: timedelta
    recheck: timedelta
    policy: Policy
    # Contacts found during this run (identity key -> HubSpot id): asked once per run.
    contacts: dict[str, str] = field(default_factory=dict)
