"""Saving and loading the sandbox state as one JSON file.

Records, definitions, lists, associations, tokens and apps are saved; counters, request logs,
rate-limit windows, webhook subscriptions and workflow executions are not.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from spoke.sandbox.hubspot.config import settings_from_json, settings_to_json
from spoke.sandbox.hubspot.store import (
    ManualList,
    OAuthApp,
    Portal,
    Record,
    RefreshToken,
    SandboxStore,
    Token,
)

JSONDict = dict[str, Any]


def record_state(rec: Record) -> JSONDict:
    return {
        "id": rec.id,
        "props": rec.props,
        "history": rec.history,
        "created_ms": rec.created_ms,
        "updated_ms": rec.updated_ms,
        "archived": rec.archived,
        "archived_ms": rec.archived_ms,
        "merged_into": rec.merged_into,
    }


def record_from_state(data: JSONDict) -> Record:
    rec = Record(data["id"], data["props"], data["created_ms"])
    rec.history = {k: [tuple(e) for e in v] for k, v in data["history"].items()}
    rec.updated_ms = data["updated_ms"]
    rec.archived = data["archived"]
    rec.archived_ms = data["archived_ms"]
    rec.merged_into = data["merged_into"]
    return rec


def portal_state(portal: Portal) -> JSONDict:
    return {
        "id": portal.id,
        "name": portal.name,
        "settings": settings_to_json(portal.settings),
        "next_id": portal.next_id,
        "records": {
            t: [record_state(r) for r in tbl.records.values()] for t, tbl in portal.tables.items()
        },
        "unique_props": {t: list(tbl.unique) for t, tbl in portal.tables.items()},
        "purged": {t: sorted(tbl.purged) for t, tbl in portal.tables.items() if tbl.purged},
        "properties": portal.properties,
        "groups": portal.groups,
        "owners": portal.owners,
        "lists": [
            {
                "list_id": lst.list_id,
                "name": lst.name,
                "object_type_id": lst.object_type_id,
                "processing_type": lst.processing_type,
                "created_ms": lst.created_ms,
                "updated_ms": lst.updated_ms,
                "members": lst.members,
                "deleted_ms": lst.deleted_ms,
                "version": lst.version,
            }
            for lst in portal.lists.values()
        ],
        "next_list_id": portal.next_list_id,
        "assoc": [
            [k[0], k[1], tk[0], tk[1], sorted(ids)]
            for k, targets in portal.assoc.items()
            for tk, ids in targets.items()
        ],
        "labels": {str(k): v for k, v in portal.labels.items()},
        "next_label_id": portal.next_label_id,
        "private_token": portal.private_token,
        "oauth_app_id": portal.oauth_app_id,
        "timeline": portal.timeline,
        "event_defs": portal.event_defs,
        "event_uuids": sorted(portal.event_uuids),
        "event_month": portal.event_month,
        "event_count": portal.event_count,
        "next_event_def_id": portal.next_event_def_id,
    }


def portal_from_state(data: JSONDict, log_size: int) -> Portal:
    portal = Portal(data["id"], data["name"], settings_from_json(data["settings"]), log_size)
    portal.next_id = data["next_id"]
    for t, recs in data["records"].items():
        tbl = portal.tables[t]
        for prop in data["unique_props"].get(t, []):
            tbl.unique.setdefault(prop, {})
        for raw in recs:
            rec = record_from_state(raw)
            tbl.records[rec.id] = rec
            tbl.order.append(rec.id)
            if not rec.archived:
                for prop, idx in tbl.unique.items():
                    value = rec.props.get(prop)
                    if value:
                        idx[value.lower()] = rec.id
                if t == "contacts":
                    for extra in rec.props.get("hs_additional_emails", "").split(";"):
                        if extra:
                            tbl.unique["email"][extra.lower()] = rec.id
        tbl.rebuild_index()
    for t, ids in data.get("purged", {}).items():  # absent from files written before restore
        portal.tables[t].purged.update(ids)
    portal.properties = data["properties"]
    portal.groups = data["groups"]
    portal.owners = data["owners"]
    for raw in data["lists"]:
        lst = ManualList(**raw)
        portal.lists[lst.list_id] = lst
    portal.next_list_id = data["next_list_id"]
    for ft, fid, tt, tid, ids in data["assoc"]:
        portal.assoc.setdefault((ft, fid), {})[(tt, tid)] = set(ids)
    portal.labels = {int(k): v for k, v in data["labels"].items()}
    portal.next_label_id = data["next_label_id"]
    portal.private_token = data["private_token"]
    portal.oauth_app_id = data["oauth_app_id"]
    portal.timeline = data["timeline"]
    portal.event_defs = data["event_defs"]
    portal.event_uuids = set(data["event_uuids"])
    portal.event_month = data["event_month"]
    portal.event_count = data["event_count"]
    portal.next_event_def_id = data["next_event_def_id"]
    return portal


def write(store: SandboxStore, target: Path) -> Path:
    """Write the whole state to `target` as JSON, atomically (write a temp file, then rename)."""
    with store.lock:
        portals = list(store.portals.values())
        state: JSONDict = {
            "version": 1,
            "clock_offset_ms": store.clock_offset_ms,
            "next_portal_id": store.next_portal_id,
            "next_app_id": store.next_app_id,
            "apps": [
                {
                    "app_id": a.app_id,
                    "client_id": a.client_id,
                    "client_secret": a.client_secret,
                    "portal_id": a.portal_id,
                    "redirect_uris": a.redirect_uris,
                    "developer_api_key": a.developer_api_key,
                }
                for a in store.apps.values()
            ],
            "tokens": [
                {
                    "token": t.token,
                    "portal_id": t.portal_id,
                    "kind": t.kind,
                    "scopes": sorted(t.scopes),
                    "app_id": t.app_id,
                    "user_id": t.user_id,
                    "expires_ms": t.expires_ms,
                    "refresh_token": t.refresh_token,
                }
                for t in store.tokens.values()
            ],
            "refresh_tokens": [
                {
                    "token": r.token,
                    "portal_id": r.portal_id,
                    "app_id": r.app_id,
                    "client_id": r.client_id,
                    "user_id": r.user_id,
                    "scopes": sorted(r.scopes),
                }
                for r in store.refresh_tokens.values()
            ],
        }
        portal_states = []
        for portal in portals:
            with portal.lock:
                portal_states.append(portal_state(portal))
        state["portals"] = portal_states
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(target.suffix + ".tmp")
    tmp.write_bytes(orjson.dumps(state))
    tmp.replace(target)
    return target


def read(store: SandboxStore, source: Path) -> None:
    """Replace the store's state with the content of `source`."""
    state = orjson.loads(source.read_bytes())
    with store.lock:
        store.reset()
        store.clock_offset_ms = state["clock_offset_ms"]
        store.next_portal_id = state["next_portal_id"]
        store.next_app_id = state["next_app_id"]
        for raw in state["apps"]:
            app = OAuthApp(**raw)
            store.apps[app.app_id] = app
            store.apps_by_client_id[app.client_id] = app
        for raw in state["tokens"]:
            tok = Token(**{**raw, "scopes": frozenset(raw["scopes"])})
            store.tokens[tok.token] = tok
        for raw in state["refresh_tokens"]:
            ref = RefreshToken(**{**raw, "scopes": frozenset(raw["scopes"])})
            store.refresh_tokens[ref.token] = ref
        for raw in state["portals"]:
            portal = portal_from_state(raw, store.config.request_log_size)
            store.portals[portal.id] = portal
