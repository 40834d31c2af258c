"""FastAPI dependencies shared by every domain: the request's session and the app's services."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from spoke.config import Settings
from spoke.core.crypto import Encryptor
from spoke.core.http import request_session
from spoke.core.jobs import JobRuntime
from spoke.core.metrics import Metrics


@dataclass(frozen=True)
class Services:
    """Long-lived collaborators built once per app and passed to services explicitly."""

    settings: Settings
    encryptor: Encryptor
    jobs: JobRuntime
    metrics: Metrics


async def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


Db = Annotated[Session, Depends(request_session)]
AppServices = Annotated[Services, Depends(get_services)]
