"""Custom workflow actions: definitions through the SDK, and the admin workflow runner calling a
real action server (signed payload, outputs, BLOCK + callback completion, retries)."""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from hubspot.automation.actions import CallbackCompletionRequest
from hubspot.utils.signature import Signature
from tests.sandbox.harness import PortalHandle

from hubspot import HubSpot
from spoke.sandbox.hubspot.automation import parse_duration


@dataclass
class ActionServer:
    url: str
    answers: list[tuple[int, dict[str, Any] | None, dict[str, str]]] = field(default_factory=list)
    calls: list[tuple[dict[str, str], bytes]] = field(default_factory=list)


@pytest.fixture
def action_server() -> Iterator[ActionServer]:
    state = ActionServer(url="")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            state.calls.append(({k.lower(): v for k, v in self.headers.items()}, body))
            status, payload, headers = state.answers.pop(0) if state.answers else (200, None, {})
            data = json.dumps(payload).encode() if payload is not None else b""
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/act"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture(autouse=True)
def _fast(portal: PortalHandle) -> Iterator[None]:
    portal.sandbox.store.config.webhook_time_scale = 0.0005
    yield
    portal.sandbox.store.config.webhook_time_scale = 1.0


def _definition(portal: PortalHandle, url: str) -> str:
    app = portal.sandbox.store.apps[portal.portal.oauth_app_id]
    resp = httpx.post(
        f"{portal.sandbox.base_url}/automation/v4/actions/{app.app_id}",
        params={"hapikey": app.developer_api_key},
        json={
            "actionUrl": url,
            "published": False,
            "objectTypes": ["CONTACT"],
            "inputFields": [
                {
                    "typeDefinition": {"name": "widgetName", "type": "string", "fieldType": "text"},
                    "supportedValueTypes": ["STATIC_VALUE"],
                    "isRequired": True,
                }
            ],
            "outputFields": [
                {"typeDefinition": {"name": "myOutput", "type": "string", "fieldType": "text"}}
            ],
            "objectRequestOptions": {"properties": ["email"]},
            "labels": {"en": {"actionName": "Create widget"}},
            "functions": [],
        },
    )
    assert resp.status_code == 201, resp.text
    return str(resp.json()["id"])


def _run(portal: PortalHandle, http: httpx.Client, definition_id: str) -> tuple[str, str]:
    cid = http.post(
        "/crm/v3/objects/contacts", json={"properties": {"email": "wf@example.com"}}
    ).json()["id"]
    resp = httpx.post(
        f"{portal.sandbox.base_url}/_sandbox/portals/{portal.id}/workflows/run",
        json={
            "definition_id": definition_id,
            "object_id": cid,
            "input_fields": {"widgetName": "w"},
        },
    )
    assert resp.status_code == 201, resp.text
    return str(resp.json()["callback_id"]), cid


def _wait_state(portal: PortalHandle, callback_id: str, state: str) -> dict[str, Any]:
    deadline = time.monotonic() + 5
    while True:
        body: dict[str, Any] = httpx.get(
            f"{portal.sandbox.base_url}/_sandbox/workflows/executions/{callback_id}"
        ).json()
        if body["state"] == state:
            return body
        if time.monotonic() > deadline:
            raise AssertionError(f"execution stuck in {body['state']}")
        time.sleep(0.02)


def test_definitions_through_the_sdk(portal: PortalHandle, action_server: ActionServer) -> None:
    def_id = _definition(portal, action_server.url)
    app = portal.sandbox.store.apps[portal.portal.oauth_app_id]
    dev = HubSpot(api_key=app.developer_api_key, host=portal.sandbox.base_url)
    page = dev.automation.actions.definitions_api.get_page(app_id=app.app_id)
    assert [d.id for d in page.results] == [def_id]


def test_signed_execution_with_outputs(
    portal: PortalHandle, http: httpx.Client, action_server: ActionServer
) -> None:
    action_server.answers = [
        (200, {"outputFields": {"myOutput": "v", "hs_execution_state": "SUCCESS"}}, {})
    ]
    callback_id, cid = _run(portal, http, _definition(portal, action_server.url))
    done = _wait_state(portal, callback_id, "SUCCESS")
    assert done["output_fields"]["myOutput"] == "v"
    headers, body = action_server.calls[0]
    payload = json.loads(body)
    assert payload["callbackId"] == callback_id
    assert payload["object"] == {
        "objectId": int(cid),
        "objectType": "CONTACT",
        "properties": {"email": "wf@example.com"},
    }
    assert payload["inputFields"] == {"widgetName": "w"}
    assert payload["origin"]["portalId"] == portal.id
    assert headers["x-hubspot-signature-version"] == "v2"
    assert Signature.is_valid(
        signature=headers["x-hubspot-signature"],
        client_secret=portal.client_secret,
        request_body=body.decode(),
        http_uri=action_server.url,
        signature_version="v2",
    )


def test_block_then_complete_through_the_callback_api(
    portal: PortalHandle, http: httpx.Client, api: HubSpot, action_server: ActionServer
) -> None:
    action_server.answers = [(200, {"outputFields": {"hs_execution_state": "BLOCK"}}, {})]
    callback_id, _ = _run(portal, http, _definition(portal, action_server.url))
    _wait_state(portal, callback_id, "BLOCKED")
    api.automation.actions.callbacks_api.complete(
        callback_id=callback_id,
        callback_completion_request=CallbackCompletionRequest(
            output_fields={"hs_execution_state": "SUCCESS", "myOutput": "late"}
        ),
    )
    assert _wait_state(portal, callback_id, "SUCCESS")["output_fields"]["myOutput"] == "late"


def test_5xx_and_429_are_retried_and_4xx_fails(
    portal: PortalHandle, http: httpx.Client, action_server: ActionServer
) -> None:
    action_server.answers = [(503, None, {}), (429, None, {"Retry-After": "1"}), (200, None, {})]
    def_id = _definition(portal, action_server.url)
    callback_id, _ = _run(portal, http, def_id)
    done = _wait_state(portal, callback_id, "SUCCESS")
    assert [h["status"] for h in done["history"]] == [503, 429, 200]
    action_server.answers = [(400, None, {})]
    resp = httpx.post(
        f"{portal.sandbox.base_url}/_sandbox/portals/{portal.id}/workflows/run",
        json={"definition_id": def_id, "object_id": done["object_id"], "input_fields": {}},
    )
    failed = _wait_state(portal, resp.json()["callback_id"], "FAILED")
    assert failed["attempts"] == 1


def test_iso_durations() -> None:
    assert parse_duration("P1WT1H") == 7 * 86_400 + 3600
    assert parse_duration("PT30M") == 1800
    assert parse_duration("soon") is None
