"""The HubSpot event definitions behind exported events: created by Spoke, once.

One definition per exported (type, name), and one more per event sent as a daily rollup
(`…_daily`, with `count`, `first_at`, `last_at` and `day`). Each is recorded in
`event_export_definitions` as soon as HubSpot has created it, with its properties: a
definition or property is never created twice. If a crash lands between HubSpot's answer and
our record, the next create gets 409 and adopts what HubSpot has.

Event properties become definition properties the first time a value is seen, typed as
declared in the settings or inferred from that value; the type never changes afterwards. A
definition holds at most 50 properties (HubSpot's limit): later ones are left out of every
completion, and listed with that reason in the export status.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from spoke.core.clock import utcnow
from spoke.core.db import session_scope
from spoke.events import naming
from spoke.events.export_models import EventExportDefinition
from spoke.hubspot import (
    BlockingClient,
    Conflict,
    EventDefinition,
    EventDefinitionCreate,
    EventPropertyDefinition,
    HubSpotClient,
    PropertyOption,
    ValidationFailed,
)

DefKey = tuple[str, str, bool]  # (event type, event name, rollup)
ROLLUP_PROPERTIES: dict[str, naming.PropertyType] = {
    "count": "number",
    "first_at": "datetime",
    "last_at": "datetime",
    "day": "string",
}
LIMIT_REASON = "the definition already has 50 properties (HubSpot's limit)"


@dataclass
class Definition:
    """What a run needs to build completions of one event."""

    fully_qualified_name: str | None
    # our property name -> (HubSpot name, type, longest value)
    properties: dict[str, tuple[str, str, int]] = field(default_factory=dict)
    dropped: set[str] = field(default_factory=set)
    failed: str | None = None


def _options(kind: str) -> list[PropertyOption] | None:
    if kind != "enumeration":
        return None
    return [
        PropertyOption(label="true", value="true", display_order=0),
        PropertyOption(label="false", value="false", display_order=1),
    ]


def _property(hs_name: str, label: str, kind: str) -> EventPropertyDefinition:
    return EventPropertyDefinition(
        name=hs_name,
        label=label[:50],
        type=kind,  # type: ignore[arg-type]  # one of naming.PROPERTY_TYPES
        options=_options(kind),
    )


def _adopted_type(found: EventDefinition, hs_name: str, fallback: str) -> str:
    for prop in found.properties:
        if prop.get("name") == hs_name:
            return str(prop.get("type") or fallback)
    return fallback


class Definitions:
    """The definitions of one workspace's export in one portal, cached for a run."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        hs: BlockingClient,
        workspace_id: str,
        portal_id: int,
        declared: Mapping[str, str],
    ) -> None:
        self._sessions = sessions
        self._hs = hs
        self._workspace_id = workspace_id
        self._portal_id = portal_id
        self._declared = declared
        self._rows: dict[DefKey, EventExportDefinition] = {}
        with session_scope(sessions) as session:
            for row in session.scalars(
                sa.select(EventExportDefinition).where(
                    EventExportDefinition.workspace_id == workspace_id,
                    EventExportDefinition.portal_id == portal_id,
                )
            ):
                self._rows[(row.event_type, row.event_name, row.rollup)] = row
        self._cache: dict[DefKey, Definition] = {k: self._view(r) for k, r in self._rows.items()}

    @staticmethod
    def _view(row: EventExportDefinition) -> Definition:
        return Definition(
            row.fully_qualified_name,
            {k: (v["name"], v["type"], naming.value_limit(k)) for k, v in row.properties.items()},
            set(row.dropped),
            row.reason if row.state == "failed" else None,
        )

    def ensure(self, wanted: Mapping[DefKey, Mapping[str, Any]]) -> dict[DefKey, Definition]:
        """Create what is missing: definitions, then properties (with a sample value each).

        Raises:
            HubSpotError: HubSpot failed in a way that may pass (5xx, network); what was
                created before the failure is recorded.
        """
        for key, samples in wanted.items():
            known = self._cache.get(key)
            if known is None:
                self._create(key, samples)
                continue
            if known.failed is not None:
                continue
            fresh = [p for p in samples if p not in known.properties and p not in known.dropped]
            if fresh:
                self._add_properties(key, {p: samples[p] for p in fresh})
        return {key: self._cache[key] for key in wanted}

    def _kind(self, prop: str, sample: Any, rollup: bool) -> str:
        if rollup:
            return ROLLUP_PROPERTIES[prop]
        return self._declared.get(prop) or naming.infer_type(sample)

    def _create(self, key: DefKey, samples: Mapping[str, Any]) -> None:
        event_type, event_name, rollup = key
        taken = {r.hubspot_name for r in self._rows.values()}
        hs_name = naming.event_name(event_type, event_name, rollup=rollup, taken=taken)
        props: dict[str, dict[str, str]] = {}
        dropped: dict[str, str] = {}
        for prop, sample in samples.items():
            if len(props) >= naming.MAX_PROPERTIES:
                dropped[prop] = LIMIT_REASON
                continue
            used = {p["name"] for p in props.values()}
            props[prop] = {
                "name": naming.internal_name(prop, taken=used),
                "type": self._kind(prop, sample, rollup),
            }
        body = EventDefinitionCreate(
            label=naming.event_label(event_type, event_name, rollup=rollup),
            name=hs_name,
            description=f"Sent by Spoke: the app's {event_type} event {event_name!r}."[:400],
            primary_object="CONTACT",
            include_default_properties=False,
            property_definitions=[_property(p["name"], n, p["type"]) for n, p in props.items()],
        )
        fqn: str | None
        state, reason = "created", None
        try:
            fqn = self._hs.call(lambda c: c.events.create_definition(body)).fully_qualified_name
        except Conflict:
            found = self._hs.call(lambda c: c.events.get_definition(hs_name))
            fqn = found.fully_qualified_name
            props = self._adopt(found, props)
        except ValidationFailed as exc:  # e.g. the portal's 500 definitions are used up
            fqn, state, reason = None, "failed", f"HubSpot refused the definition: {exc}"[:1000]
        now = utcnow()
        row = EventExportDefinition(
            workspace_id=self._workspace_id,
            portal_id=self._portal_id,
            event_type=event_type,
            event_name=event_name,
            rollup=rollup,
            hubspot_name=hs_name,
            fully_qualified_name=fqn,
            properties=props,
            dropped=dropped,
            state=state,
            reason=reason,
            created_at=now,
            updated_at=now,
        )
        with session_scope(self._sessions) as session:
            session.add(row)
        self._rows[key] = row
        self._cache[key] = self._view(row)

    def _adopt(
        self, found: EventDefinition, props: dict[str, dict[str, str]]
    ) -> dict[str, dict[str, str]]:
        """Ours and HubSpot's after a 409: keep the properties HubSpot has (with its types),
        add the rest."""
        have = {p.get("name") for p in found.properties}
        for prop, spec in props.items():
            if spec["name"] in have:
                spec["type"] = _adopted_type(found, spec["name"], spec["type"])
                continue
            self._hs.call(
                partial(
                    _add, event_name=found.name, prop=_property(spec["name"], prop, spec["type"])
                )
            )
        return props

    def _add_properties(self, key: DefKey, samples: Mapping[str, Any]) -> None:
        row = self._rows[key]
        props = {k: dict(v) for k, v in row.properties.items()}
        dropped = dict(row.dropped)
        hs_name = row.hubspot_name
        for prop, sample in samples.items():
            if len(props) >= naming.MAX_PROPERTIES:
                dropped[prop] = LIMIT_REASON
                continue
            used = {p["name"] for p in props.values()}
            spec = {
                "name": naming.internal_name(prop, taken=used),
                "type": self._kind(prop, sample, key[2]),
            }
            definition = _property(spec["name"], prop, spec["type"])
            try:
                self._hs.call(partial(_add, event_name=hs_name, prop=definition))
            except ValidationFailed as exc:
                dropped[prop] = f"HubSpot refused the property: {exc}"[:500]
                continue
            props[prop] = spec
        with session_scope(self._sessions) as session:
            stored = session.get(EventExportDefinition, row.id)
            assert stored is not None
            stored.properties = props
            stored.dropped = dropped
            stored.updated_at = utcnow()
            row = stored
        self._rows[key] = row
        self._cache[key] = self._view(row)


async def _add(client: HubSpotClient, event_name: str, prop: EventPropertyDefinition) -> None:
    # A 409: added by an earlier attempt whose answer we did not record.
    with contextlib.suppress(Conflict):
        await client.events.add_property(event_name, prop)
