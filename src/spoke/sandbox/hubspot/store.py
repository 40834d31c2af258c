"""In-memory state of the sandbox: many portals, their records, tokens and apps.

Invariants:
- Every mutation of a portal happens under `portal.lock`; every mutation of the store's own maps
  (portals, tokens, apps) under `store.lock`. The request wrapper takes the portal lock around each
  handler, so handlers never lock themselves.
- `Record.props` is copy-on-write: a write replaces the dict instead of mutating it. The search
  index holds references to old dicts: that is how search lags writes without copying records.
- `ObjectTable.unique[prop]` maps each normalised unique value (lower-cased email, ...) of every
  live record to its id; archived records leave the index.
"""

from __future__ import annotations

import base64
import random
import secrets
import threading
import time
import uuid
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spoke.sandbox.hubspot.config import (
    PortalSettings,
    SandboxConfig,
    settings_from_json,
    settings_to_json,
)
from spoke.sandbox.hubspot.schema import OBJECT_TYPES, builtin_groups, builtin_properties
from spoke.sandbox.hubspot.timefmt import iso_ms

JSONDict = dict[str, Any]
HistoryEntry = tuple[str, int, str, str | None]  # value, timestamp ms, sourceType, sourceId

ALL_SCOPES: tuple[str, ...] = (
    "oauth",
    "crm.objects.contacts.read",
    "crm.objects.contacts.write",
    "crm.objects.companies.read",
    "crm.objects.companies.write",
    "crm.objects.meetings.read",
    "crm.objects.meetings.write",
    "crm.schemas.contacts.read",
    "crm.schemas.contacts.write",
    "crm.schemas.companies.read",
    "crm.schemas.companies.write",
    "crm.objects.owners.read",
    "crm.lists.read",
    "crm.lists.write",
    "analytics.behavioral_events.send",
    "behavioral_events.event_definitions.read_write",
    "timeline",
    "automation",
)


class Record:
    __slots__ = (
        "archived",
        "archived_ms",
        "created_ms",
        "history",
        "id",
        "merged_into",
        "props",
        "updated_ms",
    )

    def __init__(self, id_: str, props: dict[str, str], created_ms: int) -> None:
        self.id = id_
        self.props = props
        self.history: dict[str, list[HistoryEntry]] = {}
        self.created_ms = created_ms
        self.updated_ms = created_ms
        self.archived = False
        self.archived_ms = 0
        self.merged_into: str | None = None


class ObjectTable:
    """The records of one object type in one portal, with unique and search indexes."""

    def __init__(self, object_type: str) -> None:
        self.object_type = object_type
        self.records: dict[str, Record] = {}
        self.order: list[str] = []  # ids in creation order; list cursors are positions in it
        self.unique: dict[str, dict[str, str]] = {}
        if object_type == "contacts":
            self.unique["email"] = {}
        # Search index: id -> props as the index last saw them; pending writes not yet visible.
        self.index: dict[str, dict[str, str]] = {}
        self.pending: deque[tuple[int, str, dict[str, str] | None]] = deque()
        # The indexed ids as numbers, ascending, with the id strings in the same order; built
        # on demand for id-range searches and dropped whenever the index gains or loses a key.
        self._by_id: tuple[list[int], list[str]] | None = None
        # Ids removed for good by a GDPR delete, so a restore can say why it cannot restore them.
        self.purged: set[str] = set()

    def schedule_index(self, rec_id: str, props: dict[str, str] | None, visible_ms: int) -> None:
        if visible_ms <= 0 and not self.pending:
            if props is None:
                self.index.pop(rec_id, None)
                self._by_id = None
            else:
                if rec_id not in self.index:
                    self._by_id = None
                self.index[rec_id] = props
        else:
            self.pending.append((visible_ms, rec_id, props))

    def refresh_index(self, now_ms: int) -> None:
        pending = self.pending
        index = self.index
        while pending and pending[0][0] <= now_ms:
            _, rec_id, props = pending.popleft()
            if props is None:
                index.pop(rec_id, None)
                self._by_id = None
            else:
                if rec_id not in index:
                    self._by_id = None
                index[rec_id] = props

    def rebuild_index(self) -> None:
        self.pending.clear()
        self.index = {r.id: r.props for r in self.records.values() if not r.archived}
        self._by_id = None

    def ids_in_order(self) -> tuple[list[int], list[str]]:
        """The search index's ids ascending: as numbers (to bisect) and as the id strings."""
        if self._by_id is None:
            pairs = sorted((int(rid), rid) for rid in self.index)
            self._by_id = ([n for n, _ in pairs], [rid for _, rid in pairs])
        return self._by_id


@dataclass(slots=True)
class OAuthApp:
    app_id: int
    client_id: str
    client_secret: str
    portal_id: int  # the developer portal the app was created with
    redirect_uris: list[str] = field(default_factory=list)
    developer_api_key: str = ""


@dataclass(slots=True)
class Token:
    """A bearer token: a private-app token (`pat-...`) or an OAuth access token."""

    token: str
    portal_id: int
    kind: str  # "private" | "oauth"
    scopes: frozenset[str]
    app_id: int
    user_id: int
    expires_ms: int | None = None
    refresh_token: str | None = None


@dataclass(slots=True)
class RefreshToken:
    token: str
    portal_id: int
    app_id: int
    client_id: str
    user_id: int
    scopes: frozenset[str]


@dataclass(slots=True)
class AuthCode:
    code: str
    app_id: int
    portal_id: int
    redirect_uri: str
    scopes: frozenset[str]
    expires_ms: int


@dataclass(slots=True)
class ManualList:
    list_id: str
    name: str
    object_type_id: str
    processing_type: str
    created_ms: int
    updated_ms: int
    members: dict[str, int] = field(default_factory=dict)  # record id -> added at ms
    deleted_ms: int | None = None
    version: int = 1


class Portal:
    """One HubSpot account. Mutated only under `self.lock`."""

    def __init__(self, portal_id: int, name: str, settings: PortalSettings, log_size: int) -> None:
        self.id = portal_id
        self.name = name
        self.domain = f"portal-{portal_id}.sandbox.hubspot.local"
        self.lock = threading.RLock()
        self.settings = settings
        self.next_id = 101
        self.tables: dict[str, ObjectTable] = {t: ObjectTable(t) for t in OBJECT_TYPES}
        self.properties = builtin_properties()
        self.groups = builtin_groups()
        self.owners: dict[str, JSONDict] = {}
        self.lists: dict[str, ManualList] = {}
        self.next_list_id = 1
        # (type, id) -> (to_type, to_id) -> association type ids, both directions stored.
        self.assoc: dict[tuple[str, str], dict[tuple[str, str], set[int]]] = {}
        # user-defined association labels: type id -> definition
        self.labels: dict[int, JSONDict] = {}
        self.next_label_id = 1001
        self.private_token = ""
        self.oauth_app_id = 0
        self.timeline: dict[str, list[JSONDict]] = {}  # contact id -> custom events
        self.event_defs: dict[str, JSONDict] = {}  # custom event definitions by internal name
        self.event_uuids: set[str] = set()
        self.event_month = ""
        self.event_count = 0
        self.next_event_def_id = 1
        # Every completion a send accepted for processing, and how many of them repeated a
        # uuid already accepted (dropped): a client that resends blindly shows up here.
        self.event_received = 0
        self.event_duplicate_uuids = 0
        # Observability, not persisted.
        self.counters: Counter[str] = Counter()
        self.status_counters: Counter[str] = Counter()
        self.log: deque[tuple[float, str, str, str, int, float]] = deque(maxlen=log_size)
        # Rate-limit state, not persisted.
        self.windows: dict[str, deque[float]] = {}
        self.search_window: deque[float] = deque()
        self.event_send_window: deque[float] = deque()
        self.daily_day = -1
        self.daily_count = 0
        self.rng = random.Random(settings.faults.seed)
        # Webhooks: when any app subscription is active, CRM writes record changes here for the
        # delivery worker; otherwise writes skip that work entirely.
        self.listening = False
        self.changes: list[JSONDict] = []
        self.webhook_counters: Counter[str] = Counter()

    def new_id(self) -> str:
        value = self.next_id
        self.next_id += 1
        return str(value)

    def table(self, object_type: str) -> ObjectTable:
        return self.tables[object_type]

    def reset_data(self) -> None:
        """Drop every record, list, association and custom definition; keep tokens and settings."""
        self.next_id = 101
        self.tables = {t: ObjectTable(t) for t in OBJECT_TYPES}
        self.properties = builtin_properties()
        self.groups = builtin_groups()
        apply_owner_options(self)
        self.lists.clear()
        self.assoc.clear()
        self.labels.clear()
        self.timeline.clear()
        self.event_defs.clear()
        self.event_uuids.clear()
        self.event_count = 0
        self.event_received = 0
        self.event_duplicate_uuids = 0
        self.counters.clear()
        self.status_counters.clear()
        self.log.clear()
        self.windows.clear()
        self.search_window.clear()
        self.daily_count = 0


class SandboxStore:
    """All sandbox state. Thread-safe; optionally persisted to a JSON file.

    Args:
        config: process-wide settings; defaults to `SandboxConfig()`.
        state_file: where `save()` writes and from where `load()` reads.
    """

    def __init__(self, config: SandboxConfig | None = None, state_file: Path | None = None) -> None:
        self.config = config or SandboxConfig()
        self.state_file = state_file
        self.lock = threading.RLock()
        self.portals: dict[int, Portal] = {}
        self.tokens: dict[str, Token] = {}
        self.refresh_tokens: dict[str, RefreshToken] = {}
        self.auth_codes: dict[str, AuthCode] = {}
        self.apps: dict[int, OAuthApp] = {}
        self.apps_by_client_id: dict[str, OAuthApp] = {}
        self.clock_offset_ms = 0
        self.next_portal_id = self.config.first_portal_id
        self.next_app_id = 5_000_001
        self.listening = False  # set by the webhook hub; copied into each new portal
        self.loaded = False  # whether `load()` has run, so an app start-up does not reload

    # -- time ------------------------------------------------------------------------------------

    def now_ms(self) -> int:
        """Sandbox wall clock in epoch ms; `advance_clock` moves it forward for expiry tests."""
        return int(time.time() * 1000) + self.clock_offset_ms

    def advance_clock(self, seconds: float) -> None:
        with self.lock:
            self.clock_offset_ms += int(seconds * 1000)

    # -- portals ---------------------------------------------------------------------------------

    def create_portal(
        self,
        *,
        name: str | None = None,
        portal_id: int | None = None,
        scopes: frozenset[str] | None = None,
        settings: PortalSettings | None = None,
        redirect_uris: list[str] | None = None,
    ) -> Portal:
        """Create a portal with a private-app token and an OAuth app.

        Raises:
            ValueError: `portal_id` is already taken.
        """
        with self.lock:
            if portal_id is None:
                while self.next_portal_id in self.portals:
                    self.next_portal_id += 1
                portal_id = self.next_portal_id
                self.next_portal_id += 1
            elif portal_id in self.portals:
                raise ValueError(f"portal {portal_id} already exists")
            defaults = self.config.portal_defaults
            portal = Portal(
                portal_id,
                name or f"Sandbox portal {portal_id}",
                settings or settings_from_json(settings_to_json(defaults)),
                self.config.request_log_size,
            )
            app = OAuthApp(
                app_id=self.next_app_id,
                client_id=str(uuid.uuid4()),
                client_secret=str(uuid.uuid4()),
                portal_id=portal_id,
                redirect_uris=list(redirect_uris or []),
                developer_api_key=f"dev-{uuid.uuid4()}",
            )
            self.next_app_id += 1
            self.apps[app.app_id] = app
            self.apps_by_client_id[app.client_id] = app
            portal.oauth_app_id = app.app_id
            token = Token(
                token=f"pat-na1-{uuid.uuid4()}",
                portal_id=portal_id,
                kind="private",
                scopes=scopes if scopes is not None else frozenset(ALL_SCOPES),
                app_id=self.next_app_id,  # a private app is an app of its own
                user_id=1,
            )
            self.next_app_id += 1
            portal.private_token = token.token
            self.tokens[token.token] = token
            _seed_owners(portal, self.now_ms())
            portal.listening = self.listening
            self.portals[portal_id] = portal
            return portal

    def delete_portal(self, portal_id: int) -> bool:
        with self.lock:
            portal = self.portals.pop(portal_id, None)
            if portal is None:
                return False
            for key in [k for k, t in self.tokens.items() if t.portal_id == portal_id]:
                del self.tokens[key]
            for key in [k for k, t in self.refresh_tokens.items() if t.portal_id == portal_id]:
                del self.refresh_tokens[key]
            return True

    def reset(self) -> None:
        """Forget everything: portals, tokens, apps, clock offset."""
        with self.lock:
            self.portals.clear()
            self.tokens.clear()
            self.refresh_tokens.clear()
            self.auth_codes.clear()
            self.apps.clear()
            self.apps_by_client_id.clear()
            self.clock_offset_ms = 0
            self.next_portal_id = self.config.first_portal_id

    # -- OAuth -----------------------------------------------------------------------------------

    def issue_auth_code(
        self, app: OAuthApp, portal_id: int, redirect_uri: str, scopes: frozenset[str]
    ) -> AuthCode:
        with self.lock:
            code = AuthCode(
                code=str(uuid.uuid4()),
                app_id=app.app_id,
                portal_id=portal_id,
                redirect_uri=redirect_uri,
                scopes=scopes,
                expires_ms=self.now_ms() + 10 * 60 * 1000,
            )
            self.auth_codes[code.code] = code
            return code

    def issue_oauth_tokens(
        self,
        app: OAuthApp,
        portal_id: int,
        scopes: frozenset[str],
        *,
        refresh_token: str | None = None,
        ttl_s: int | None = None,
    ) -> Token:
        """Mint an access token (and a refresh token unless one is being reused)."""
        with self.lock:
            portal = self.portals[portal_id]
            ttl = portal.settings.access_token_ttl_s if ttl_s is None else ttl_s
            if refresh_token is None:
                refresh_token = f"na1-{uuid.uuid4()}"
                self.refresh_tokens[refresh_token] = RefreshToken(
                    refresh_token, portal_id, app.app_id, app.client_id, 1, scopes
                )
            raw = base64.urlsafe_b64encode(secrets.token_bytes(96)).decode().rstrip("=")
            token = Token(
                token="C" + raw,
                portal_id=portal_id,
                kind="oauth",
                scopes=scopes,
                app_id=app.app_id,
                user_id=1,
                expires_ms=self.now_ms() + ttl * 1000,
                refresh_token=refresh_token,
            )
            self.tokens[token.token] = token
            return token

    # -- persistence -----------------------------------------------------------------------------

    def save(self, path: Path | None = None) -> Path:
        """Write the whole state as JSON (atomically). Counters and logs are not saved.

        Raises:
            ValueError: no path given and the store has no `state_file`.
        """
        from spoke.sandbox.hubspot import persistence  # imports this module

        target = path or self.state_file
        if target is None:
            raise ValueError("no state file configured")
        return persistence.write(self, target)

    def load(self, path: Path | None = None) -> bool:
        """Replace the state with the file's content. Returns False if the file does not exist."""
        from spoke.sandbox.hubspot import persistence  # imports this module

        source = path or self.state_file
        if source is None or not source.exists():
            return False
        persistence.read(self, source)
        self.loaded = True
        return True


_OWNER_NAMES = [("Ada", "Lovelace"), ("Grace", "Hopper"), ("Alan", "Turing")]


def _seed_owners(portal: Portal, now_ms: int) -> None:
    stamp = iso_ms(now_ms)
    for i, (first, last) in enumerate(_OWNER_NAMES):
        owner_id = str(portal.id * 10 + i + 1)[-9:]
        portal.owners[owner_id] = {
            "id": owner_id,
            "email": f"{first.lower()}@portal-{portal.id}.example.com",
            "firstName": first,
            "lastName": last,
            "userId": 1 + i,
            "userIdIncludingInactive": 1 + i,
            "type": "PERSON",
            "teams": [],
            "createdAt": stamp,
            "updatedAt": stamp,
            "archived": False,
        }
    apply_owner_options(portal)


def apply_owner_options(portal: Portal) -> None:
    """Owner properties are enumerations whose options are the portal's owners."""
    options = [
        {"label": f"{o['firstName']} {o['lastName']}", "value": o["id"], "hidden": False}
        for o in portal.owners.values()
    ]
    for props in portal.properties.values():
        if "hubspot_owner_id" in props:
            props["hubspot_owner_id"]["options"] = [
                {**opt, "displayOrder": i} for i, opt in enumerate(options)
            ]
