"""The public routes behind the links in emails: `/u/{token}` (unsubscribe) and
`/c/{token}` (click tracking). No key: the signed token is the authority.

`GET /u/{token}` only shows a confirmation with a button; the unsubscribe itself is a
POST — from that button, or from a mail client's one-click button (RFC 8058 posts
`List-Unsubscribe=One-Click` to the same URL). Mail filters and link scanners fetch the
links in messages they inspect, so a GET that unsubscribed would unsubscribe people who
never asked to (RFC 8058 §1).
"""

from __future__ import annotations

import html
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlalchemy.orm import Session

from spoke.core.errors import responses
from spoke.core.http import TransactionalRoute
from spoke.deps import AppServices, Db
from spoke.messaging import tracking
from spoke.workspaces.models import Workspace

router = APIRouter(tags=["tracking"], route_class=TransactionalRoute)

TokenPath = Annotated[
    str,
    Path(
        pattern=r"^[A-Za-z0-9_\-]{1,4000}\.[A-Za-z0-9_\-]{1,64}$",
        description="The signed token from the email.",
    ),
]


async def write_session(request: Request) -> Session:
    """A writing session even for a GET: following a link records the click."""
    session: Session | None = getattr(request.state, "db", None)
    if session is None:
        session = request.app.state.sessions()
        request.state.db = session
    return session


WriteDb = Annotated[Session, Depends(write_session)]
_HTML: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/html": {}}, "description": "A page for the recipient."}
}


def _page(title: str, body: str) -> HTMLResponse:
    return HTMLResponse(
        "<!doctype html><html><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width,initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>body{{font-family:system-ui,sans-serif;"
        "max-width:32rem;margin:4rem auto;padding:0 1rem;color:#222}button{font-size:1rem;"
        "padding:.5rem 1.2rem}</style></head>"
        f"<body><h1>{html.escape(title)}</h1>{body}</body></html>"
    )


def _sender(session: Session, workspace_id: str) -> str:
    workspace = session.get(Workspace, workspace_id)
    return workspace.name if workspace is not None else "this sender"


@router.get(
    "/u/{token}",
    response_class=HTMLResponse,
    responses={**_HTML, **responses(tracking.LinkNotFound)},
)
def unsubscribe_page(token: TokenPath, session: Db, services: AppServices) -> HTMLResponse:
    """The unsubscribe link: asks to confirm (a GET changes nothing)."""
    delivery_id, address = tracking.read_unsubscribe(tracking.signer_for(services.settings), token)
    sent = tracking.delivery(session, delivery_id)
    who = html.escape(_sender(session, sent.workspace_id))
    return _page(
        "Unsubscribe",
        f"<p>Stop emails from <b>{who}</b> to <b>{html.escape(tracking.mask(address))}</b>?</p>"
        f'<form method=post action="{html.escape(token)}"><button type=submit>'
        "Unsubscribe</button></form>",
    )


@router.post(
    "/u/{token}",
    response_class=HTMLResponse,
    responses={**_HTML, **responses(tracking.LinkNotFound)},
)
def unsubscribe(token: TokenPath, session: Db, services: AppServices) -> HTMLResponse:
    """Unsubscribe the address the email went to: the confirmation button, and RFC 8058
    one-click (`List-Unsubscribe=One-Click`) from mail clients. Repeating it is harmless."""
    delivery_id, address = tracking.read_unsubscribe(tracking.signer_for(services.settings), token)
    sent = tracking.unsubscribe(session, delivery_id, address, "unsubscribe_link")
    who = html.escape(_sender(session, sent.workspace_id))
    return _page(
        "Unsubscribed",
        f"<p><b>{html.escape(tracking.mask(address))}</b> will get no more emails from "
        f"<b>{who}</b>.</p>",
    )


@router.get(
    "/c/{token}",
    response_class=RedirectResponse,
    status_code=302,
    responses={
        302: {"description": "On to the link's target."},
        **responses(tracking.LinkNotFound),
    },
)
def click(token: TokenPath, session: WriteDb, services: AppServices) -> RedirectResponse:
    """A tracked link: records `clicked` on the delivery, then redirects to the target."""
    delivery_id, url = tracking.read_click(tracking.signer_for(services.settings), token)
    tracking.record_click(session, delivery_id)
    return RedirectResponse(url, status_code=302, headers={"Cache-Control": "no-store"})
