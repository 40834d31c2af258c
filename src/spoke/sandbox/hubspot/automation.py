"""Custom workflow actions (automation v4, contract §7): definitions, callbacks, and a minimal
workflow runner driven from the admin API.

`POST /_sandbox/portals/{id}/workflows/run` enrols one record in a one-step workflow that runs a
definition's action: the runner POSTs HubSpot's execution request to `actionUrl` (signed v2 and
v3), then follows the answer: `hs_execution_state` SUCCESS / FAIL_CONTINUE finish, BLOCK and ASYNC
wait for `callbacks/{callbackId}/complete` (or expiry), 4xx fails, 429 and 5xx are retried
(429 after `Retry-After`, 5xx with exponential backoff for up to 3 days, time-scaled).
"""

from __future__ import annotations

import itertools
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from spoke.sandbox.hubspot import crm, errors
from spoke.sandbox.hubspot.errors import correlation_id
from spoke.sandbox.hubspot.http import JSON, Call, api_route, no_content
from spoke.sandbox.hubspot.schema import OBJECT_TYPES
from spoke.sandbox.hubspot.store import OAuthApp, SandboxStore
from spoke.sandbox.hubspot.timefmt import iso_ms
from spoke.sandbox.hubspot.webhooks import sign

JSONDict = dict[str, Any]
REQUIRED = ("actionUrl", "inputFields", "labels", "objectTypes")
MAX_RETRY_S = 3 * 86_400
DEFAULT_BLOCK_S = 7 * 86_400
FINAL_STATES = frozenset({"SUCCESS", "FAIL_CONTINUE", "FAILED", "EXPIRED"})
_DURATION = re.compile(
    r"^P(?:(?P<w>\d+)W)?(?:(?P<d>\d+)D)?(?:T(?:(?P<h>\d+)H)?(?:(?P<m>\d+)M)?(?:(?P<s>\d+)S)?)?$"
)


def parse_duration(text: str) -> float | None:
    """ISO-8601 durations as HubSpot uses them (`P1WT1H`), in seconds."""
    match = _DURATION.match(text)
    if not match or text == "P":
        return None
    parts = {k: int(v) for k, v in match.groupdict(default="0").items()}
    return float(
        parts["w"] * 604_800
        + parts["d"] * 86_400
        + parts["h"] * 3600
        + parts["m"] * 60
        + parts["s"]
    )


@dataclass(slots=True)
class Execution:
    callback_id: str
    portal_id: int
    app_id: int
    definition: JSONDict
    object_id: str
    input_fields: dict[str, Any]
    workflow_id: int
    state: str = "PENDING"
    attempts: int = 0
    due: float = 0.0
    first_try: float = 0.0
    expires: float | None = None
    output_fields: dict[str, Any] = field(default_factory=dict)
    history: list[JSONDict] = field(default_factory=list)

    def to_json(self) -> JSONDict:
        return {
            "callback_id": self.callback_id,
            "portal_id": self.portal_id,
            "definition_id": self.definition["id"],
            "object_id": self.object_id,
            "state": self.state,
            "attempts": self.attempts,
            "output_fields": self.output_fields,
            "history": self.history,
        }


class ActionRunner:
    """Action definitions per app, and executions run by a worker thread."""

    def __init__(self, store: SandboxStore) -> None:
        self.store = store
        self.lock = threading.RLock()
        self.definitions: dict[int, dict[str, JSONDict]] = {}
        self.executions: dict[str, Execution] = {}
        self.ids = itertools.count(1)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="sandbox-actions", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None

    def _run(self) -> None:
        with httpx.Client(timeout=20.0) as client:
            while not self._stop.wait(0.02):
                now = time.monotonic()
                with self.lock:
                    due = [
                        e for e in self.executions.values() if e.state == "PENDING" and e.due <= now
                    ]
                    for e in self.executions.values():
                        if e.state == "BLOCKED" and e.expires is not None and e.expires <= now:
                            e.state = "EXPIRED"  # the workflow continues without outputs
                for execution in due:
                    self._attempt(client, execution)

    def enrol(
        self,
        app: OAuthApp,
        definition: JSONDict,
        portal_id: int,
        object_id: str,
        input_fields: dict[str, Any],
    ) -> Execution:
        with self.lock:
            n = next(self.ids)
            execution = Execution(
                callback_id=f"ap-{portal_id}-{n}-{definition['id']}-0",
                portal_id=portal_id,
                app_id=app.app_id,
                definition=definition,
                object_id=object_id,
                input_fields=input_fields,
                workflow_id=100_000 + n,
                due=time.monotonic(),
                first_try=time.monotonic(),
            )
            self.executions[execution.callback_id] = execution
            return execution

    def _payload(self, execution: Execution) -> JSONDict:
        portal = self.store.portals.get(execution.portal_id)
        wanted = execution.definition.get("objectRequestOptions", {}).get("properties", [])
        props: dict[str, str | None] = {}
        if portal is not None:
            with portal.lock:
                rec = crm.find(portal, OBJECT_TYPES["contacts"], execution.object_id)
                if rec is not None:
                    props = {name: rec.props.get(name) for name in wanted}
        return {
            "callbackId": execution.callback_id,
            "origin": {
                "portalId": execution.portal_id,
                "actionDefinitionId": int(execution.definition["id"]),
                "actionDefinitionVersion": int(execution.definition["revisionId"]),
            },
            "context": {"source": "WORKFLOWS", "workflowId": execution.workflow_id},
            "object": {
                "objectId": int(execution.object_id),
                "objectType": "CONTACT",
                "properties": props,
            },
            "inputFields": execution.input_fields,
        }

    def _attempt(self, client: httpx.Client, execution: Execution) -> None:
        app = self.store.apps.get(execution.app_id)
        if app is None:
            execution.state = "FAILED"
            return
        url = execution.definition["actionUrl"]
        body = orjson.dumps(self._payload(execution))
        headers = sign(app.client_secret, "POST", url, body, "v2", int(time.time() * 1000))
        headers["Content-Type"] = "application/json"
        execution.attempts += 1
        status: int | None = None
        retry_after: float | None = None
        answer: Any = None
        try:
            resp = client.post(url, content=body, headers=headers)
            status = resp.status_code
            if resp.headers.get("retry-after", "").isdigit():
                retry_after = float(resp.headers["retry-after"])
            try:
                answer = resp.json() if resp.content else None
            except ValueError:
                answer = None
        except httpx.HTTPError:
            status = None
        execution.history.append({"attempt": execution.attempts, "status": status})
        with self.lock:
            self._settle(execution, status, retry_after, answer)

    def _settle(
        self, execution: Execution, status: int | None, retry_after: float | None, answer: Any
    ) -> None:
        scale = self.store.config.webhook_time_scale
        if status is not None and 200 <= status < 300:
            outputs = answer.get("outputFields", {}) if isinstance(answer, dict) else {}
            self._apply_outputs(execution, outputs if isinstance(outputs, dict) else {})
            return
        if status is not None and 400 <= status < 500 and status != 429:
            execution.state = "FAILED"
            return
        if status == 429 and retry_after is not None:
            delay = retry_after * scale
        else:
            delay = min(60 * 2 ** (execution.attempts - 1), 6 * 3600) * scale
        if time.monotonic() + delay - execution.first_try > MAX_RETRY_S * scale:
            execution.state = "FAILED"
            return
        execution.due = time.monotonic() + delay

    def _apply_outputs(self, execution: Execution, outputs: dict[str, Any]) -> None:
        declared = {
            f.get("typeDefinition", {}).get("name")
            for f in execution.definition.get("outputFields", [])
        }
        state = str(outputs.get("hs_execution_state") or "SUCCESS")
        execution.output_fields = {
            k: v for k, v in outputs.items() if k in declared or k.startswith("hs_")
        }
        if state in ("BLOCK", "ASYNC"):
            duration = parse_duration(str(outputs.get("hs_expiration_duration") or "P1W"))
            seconds = DEFAULT_BLOCK_S if duration is None else duration
            execution.state = "BLOCKED"
            execution.expires = time.monotonic() + seconds * self.store.config.webhook_time_scale
        elif state in ("SUCCESS", "FAIL_CONTINUE"):
            execution.state = state
        else:
            execution.state = "FAILED"

    def complete(self, callback_id: str, portal_id: int, outputs: object) -> bool:
        with self.lock:
            execution = self.executions.get(callback_id)
            if execution is None or execution.portal_id != portal_id:
                return False
            if not isinstance(outputs, dict):
                raise errors.validation("outputFields must be an object")
            state = outputs.get("hs_execution_state")
            if state not in ("SUCCESS", "FAIL_CONTINUE"):
                raise errors.validation("hs_execution_state must be SUCCESS or FAIL_CONTINUE")
            if execution.state != "BLOCKED":
                raise errors.validation(f"Callback {callback_id} is not waiting for completion")
            self._apply_outputs(execution, outputs)
            return True


# -- definitions (developer API key) -------------------------------------------------------------


def _dev_error(status: int, message: str, category: str) -> Response:
    return JSON(
        {
            "status": "error",
            "message": message,
            "correlationId": correlation_id(),
            "category": category,
        },
        status_code=status,
    )


def _dev_auth(request: Request) -> tuple[ActionRunner, OAuthApp] | Response:
    store: SandboxStore = request.app.state.store
    runner: ActionRunner = request.app.state.actions
    raw = request.path_params["appId"]
    app = store.apps.get(int(raw)) if str(raw).isdigit() else None
    key = request.query_params.get("hapikey")
    if app is None or not key or key != app.developer_api_key:
        return _dev_error(
            401,
            "The developer API key used to make this call is invalid for this app.",
            "INVALID_AUTHENTICATION",
        )
    return runner, app


async def definitions_endpoint(request: Request) -> Response:
    auth = _dev_auth(request)
    if isinstance(auth, Response):
        return auth
    runner, app = auth
    with runner.lock:
        defs = runner.definitions.setdefault(app.app_id, {})
    if request.method == "GET":
        live = [d for d in defs.values() if not d.get("archived")]
        return JSON({"results": live})
    try:
        body = orjson.loads(await request.body())
    except orjson.JSONDecodeError:
        body = None
    if not isinstance(body, dict):
        return _dev_error(400, "Invalid input JSON", "VALIDATION_ERROR")
    missing = [k for k in REQUIRED if k not in body]
    if missing:
        return _dev_error(400, f"Missing required fields: {missing}", "VALIDATION_ERROR")
    with runner.lock:
        def_id = str(next(runner.ids))
        stamp = iso_ms(runner.store.now_ms())
        definition = {
            **body,
            "id": def_id,
            "revisionId": "1",
            "published": bool(body.get("published", False)),
            "functions": body.get("functions", []),
            "outputFields": body.get("outputFields", []),
            "archived": False,
            "createdAt": stamp,
            "updatedAt": stamp,
        }
        defs[def_id] = definition
    return JSON(definition, status_code=201)


async def definition_endpoint(request: Request) -> Response:
    auth = _dev_auth(request)
    if isinstance(auth, Response):
        return auth
    runner, app = auth
    def_id = request.path_params["definitionId"]
    with runner.lock:
        definition = runner.definitions.get(app.app_id, {}).get(def_id)
    if definition is None or definition.get("archived"):
        return _dev_error(404, f"Action definition {def_id} not found", "OBJECT_NOT_FOUND")
    if request.method == "GET":
        return JSON(definition)
    if request.method == "DELETE":
        definition["archived"] = True
        return Response(status_code=204)
    try:
        patch = orjson.loads(await request.body())
    except orjson.JSONDecodeError:
        patch = None
    if not isinstance(patch, dict):
        return _dev_error(400, "Invalid input JSON", "VALIDATION_ERROR")
    with runner.lock:
        for key, value in patch.items():
            if key not in ("id", "revisionId", "createdAt"):
                definition[key] = value
        definition["revisionId"] = str(int(definition["revisionId"]) + 1)
        definition["updatedAt"] = iso_ms(runner.store.now_ms())
    return JSON(definition)


# -- callbacks (OAuth, scope `automation`) -------------------------------------------------------

CALLBACK_SCOPES = ("automation",)


def _runner(call: Call) -> ActionRunner:
    runner: ActionRunner = call.request.app.state.actions
    return runner


def complete_one(call: Call) -> Response:
    call.require(CALLBACK_SCOPES)
    outputs = call.json_object().get("outputFields")
    callback_id = call.path["callbackId"]
    if not _runner(call).complete(callback_id, call.portal.id, outputs):
        raise errors.resource_not_found(f"Callback {callback_id} not found")
    return no_content()


def complete_batch(call: Call) -> Response:
    call.require(CALLBACK_SCOPES)
    inputs = call.json_object().get("inputs")
    if not isinstance(inputs, list):
        raise errors.validation("inputs must be an array")
    for item in inputs:
        callback_id = str(item.get("callbackId", "")) if isinstance(item, dict) else ""
        if not _runner(call).complete(callback_id, call.portal.id, item.get("outputFields")):
            raise errors.resource_not_found(f"Callback {callback_id} not found")
    return no_content()


# -- admin: the workflow runner ------------------------------------------------------------------


async def run_workflow(request: Request) -> Response:
    store: SandboxStore = request.app.state.store
    runner: ActionRunner = request.app.state.actions
    raw = request.path_params["portalId"]
    portal = store.portals.get(int(raw)) if str(raw).isdigit() else None
    if portal is None:
        return JSON({"error": "portal_not_found", "detail": f"portal {raw}"}, status_code=404)
    try:
        body = orjson.loads(await request.body())
    except orjson.JSONDecodeError:
        body = None
    if not isinstance(body, dict):
        return JSON({"error": "invalid_json", "detail": "expected an object"}, status_code=400)
    app_id = int(body.get("app_id") or portal.oauth_app_id)
    app = store.apps.get(app_id)
    definition = runner.definitions.get(app_id, {}).get(str(body.get("definition_id")))
    if app is None or definition is None or definition.get("archived"):
        return JSON(
            {"error": "definition_not_found", "detail": "no such action definition"},
            status_code=404,
        )
    object_id = str(body.get("object_id", ""))
    with portal.lock:
        found = crm.find(portal, OBJECT_TYPES["contacts"], object_id)
    if found is None:
        return JSON(
            {"error": "object_not_found", "detail": f"contact {object_id}"}, status_code=404
        )
    inputs = body.get("input_fields") or {}
    execution = runner.enrol(app, definition, portal.id, found.id, inputs)
    return JSON(execution.to_json(), status_code=201)


async def get_execution(request: Request) -> Response:
    runner: ActionRunner = request.app.state.actions
    execution = runner.executions.get(request.path_params["callbackId"])
    if execution is None:
        return JSON(
            {"error": "execution_not_found", "detail": "no such callback id"}, status_code=404
        )
    return JSON(execution.to_json())


A = "/automation/v4/actions"
routes: list[Route] = [
    api_route("POST", A + "/callbacks/complete", complete_batch, limit="none"),
    api_route("POST", A + "/callbacks/{callbackId}/complete", complete_one, limit="none"),
    Route(A + "/{appId:int}", definitions_endpoint, methods=["GET", "POST"]),
    Route(
        A + "/{appId:int}/{definitionId}", definition_endpoint, methods=["GET", "PATCH", "DELETE"]
    ),
    Route("/_sandbox/portals/{portalId}/workflows/run", run_workflow, methods=["POST"]),
    Route("/_sandbox/workflows/executions/{callbackId}", get_execution, methods=["GET"]),
]
