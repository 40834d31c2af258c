"""The least a FastAPI service can do for `POST /v1/push/messages` on this machine: the
same body validated by a pydantic model, a 202 with an id, no database, no queue, no auth.
`bench.push_accept --floor` sends it the same callers as Spoke, to show how much of the
accept latency is the box and the framework rather than Spoke's work."""

from __future__ import annotations

import uuid

from fastapi import FastAPI, status
from pydantic import BaseModel, Field

app = FastAPI()


class _Message(BaseModel):
    user_id: str = Field(min_length=1, max_length=255)
    title: str | None = None
    body: str | None = None


class _Messages(BaseModel):
    messages: list[_Message] = Field(min_length=1, max_length=1000)


@app.post("/v1/push/messages", status_code=status.HTTP_202_ACCEPTED)
def accept(body: _Messages) -> dict[str, object]:
    # A sync route, like Spoke's (a threadpool hop per request).
    return {"notification_id": f"ntf_{uuid.uuid4().hex}", "recipients": len(body.messages)}
