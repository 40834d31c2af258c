"""Custom behavioural events: definitions and sends (hubspot-contract.md §4).

Sends are exempt from the 10-second and daily limits (they have their own, 1,250 requests/s),
so they skip the portal's bucket. A send is retried on 5xx only when every event carries a
`uuid`, because HubSpot keeps just the first event with a given uuid.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from spoke.hubspot.crm import chunked
from spoke.hubspot.models import (
    EVENT_BATCH_LIMIT,
    CustomEvent,
    EventDefinition,
    EventDefinitionCreate,
    EventDefinitionPage,
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
