"""Custom behavioural events: definitions and sends (hubspot-contract.md §4).

Sends are exempt from the 10-second and daily limits (they have their own, 1,250 requests/s),
so they skip the portal's bucket. A send is retried on 5xx only when every event carries a
`uuid`, because HubSpot keeps just the first event with a given uuid.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from spoke.hubspot.crm import chunked
from spoke.hubspot.models import (
    EVENT_BATCH_LIMIT,
    CustomEvent,
    EventDefinition,
    EventDefinitionCreate,
    EventDefinitionPage,
    EventOccurrencePage,
    EventPropertyDefinition,
)

if TYPE_CHECKING:
    from spoke.hubspot.client import HubSpotClient

__all__ = ["EventsAPI"]


class EventsAPI:
    """Custom events.

    Args:
        client: the portal client that sends the calls.
    """

    def __init__(self, client: HubSpotClient) -> None:
        self._client = client

    async def send(self, event: CustomEvent) -> None:
        """Record one event completion on a record's timeline.

        Args:
            event: the event; `event_name` is the definition's fully qualified name.

        Raises:
            ValidationFailed: unknown event name, property, or identifier.
            HubSpotResponseError: another error answer.
            HubSpotTransportError: the network failed.
        """
        await self._client.request(
            "POST",
            "/events/v3/send",
            json=event.to_wire(),
            idempotent=event.uuid is not None,
            bucket=None,
        )

    async def send_batch(self, events: Sequence[CustomEvent]) -> None:
        """Record many event completions, 500 per request.

        Args:
            events: the events.

        Raises:
            ValidationFailed: a chunk was refused.
            HubSpotResponseError: another error answer.
            HubSpotTransportError: the network failed.
        """
        for chunk in chunked(events, EVENT_BATCH_LIMIT):
            await self._client.request(
                "POST",
                "/events/v3/send/batch",
                json={"inputs": [e.to_wire() for e in chunk]},
                idempotent=all(e.uuid is not None for e in chunk),
                bucket=None,
            )

    async def send_wire_batch(self, inputs: Sequence[Mapping[str, Any]]) -> None:
        """Send one batch of ready-made wire bodies (at most 500), never resending it after an
        unknown outcome.

        For exporters that count what they sent themselves: a 5xx or a lost response is raised,
        not retried, so the caller can find out which completions landed (`query`) before it
        sends the rest again. A 429 is still waited out and resent (HubSpot refuses it before
        doing anything).

        Args:
            inputs: `BehavioralEventHttpCompletionRequest` bodies (`eventName`, `objectId`,
                `occurredAt`, `properties`, `uuid`).

        Raises:
            ValueError: more than 500 inputs.
            ValidationFailed: the batch was refused (HubSpot validates it as a whole).
            RateLimited: a daily or monthly limit (not retried).
            HubSpotResponseError: another error answer, e.g. a 5xx (outcome unknown).
            HubSpotTransportError: the network failed (outcome unknown if it was sent).
        """
        if len(inputs) > EVENT_BATCH_LIMIT:
            raise ValueError(f"at most {EVENT_BATCH_LIMIT} events per batch")
        await self._client.request(
            "POST",
            "/events/v3/send/batch",
            json={"inputs": list(inputs)},
            idempotent=False,
            bucket=None,
        )

    async def query(
        self,
        *,
        object_type: str = "contact",
        object_id: str | None = None,
        event_type: str | None = None,
        ids: Sequence[str] = (),
        limit: int = 100,
        after: str | None = None,
    ) -> EventOccurrencePage:
        """Read event instances (`GET /events/v3/events`), e.g. to check which of a batch's
        `uuid`s landed.

        Args:
            object_type: the CRM object type (`contact`).
            object_id: only this record's events.
            event_type: only this event (a fully qualified name).
            ids: only these event instances (keep the list short: it travels in the URL).
            limit: page size (at most 1,000 here).
            after: the cursor from the previous page.

        Returns:
            The page.

        Raises:
            HubSpotResponseError: an error answer.
            HubSpotTransportError: the network failed.
        """
        return await self._client.request_model(
            EventOccurrencePage,
            "GET",
            "/events/v3/events",
            params={
                "objectType": object_type,
                "objectId": object_id,
                "eventType": event_type,
                "id": list(ids) or None,
                "limit": limit,
                "after": after,
            },
            idempotent=True,
        )

    async def add_property(self, event_name: str, prop: EventPropertyDefinition) -> dict[str, Any]:
        """Add a property to an event definition.

        Args:
            event_name: the definition's internal name.
            prop: the property (name, label, type, options).

        Returns:
            The property as HubSpot stored it.

        Raises:
            Conflict: the definition already has a property with this name.
            ValidationFailed: the property is invalid (name, type, or too many).
            ObjectNotFound: no such definition.
            HubSpotResponseError: another error answer.
            HubSpotTransportError: the network failed.
        """
        response = await self._client.request(
            "POST",
            f"/events/v3/event-definitions/{event_name}/property",
            json=prop.to_wire(),
            idempotent=False,
        )
        body: dict[str, Any] = response.json()
        return body

    async def create_definition(self, definition: EventDefinitionCreate) -> EventDefinition:
        """Define a custom event.

        Args:
            definition: label, name, primary object and properties.

        Returns:
            The definition; send events under its `fully_qualified_name`.

        Raises:
            Conflict: an event with this name exists.
            ValidationFailed: the definition is invalid.
            HubSpotResponseError: another error answer.
            HubSpotTransportError: the network failed.
        """
        return await self._client.request_model(
            EventDefinition,
            "POST",
            "/events/v3/event-definitions",
            json=definition.to_wire(),
            idempotent=False,
        )

    async def get_definition(self, event_name: str) -> EventDefinition:
        """Read one event definition.

        Args:
            event_name: the definition's internal name.

        Returns:
            The definition.

        Raises:
            ObjectNotFound: no such definition.
            HubSpotResponseError: another error answer.
            HubSpotTransportError: the network failed.
        """
        return await self._client.request_model(
            EventDefinition, "GET", f"/events/v3/event-definitions/{event_name}", idempotent=True
        )

    async def list_definitions(
        self,
        *,
        search: str | None = None,
        limit: int = 100,
        after: str | None = None,
        include_properties: bool = False,
    ) -> EventDefinitionPage:
        """Read one page of event definitions.

        Args:
            search: only definitions whose name contains this.
            limit: page size.
            after: the cursor from the previous page.
            include_properties: include each definition's properties.

        Returns:
            The page.

        Raises:
            HubSpotResponseError: an error answer.
            HubSpotTransportError: the network failed.
        """
        return await self._client.request_model(
            EventDefinitionPage,
            "GET",
            "/events/v3/event-definitions",
            params={
                "searchString": search,
                "limit": limit,
                "after": after,
                "includeProperties": include_properties or None,
            },
            idempotent=True,
        )
