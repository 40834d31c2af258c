"""Property definitions v3 and owners v3 (hubspot-contract.md §3)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from spoke.hubspot.models import (
    HubSpotModel,
    Owner,
    OwnerPage,
    Property,
    PropertyCreate,
)

if TYPE_CHECKING:
    from spoke.hubspot.client import HubSpotClient

__all__ = ["OwnersAPI", "PropertiesAPI"]


class _Properties(HubSpotModel):
    results: list[Property] = []


class PropertiesAPI:
    """Property definitions of CRM object types.

    Args:
        client: the portal client that sends the calls.
    """

    def __init__(self, client: HubSpotClient) -> None:
        self._client = client

    async def list(self, object_type: str, *, archived: bool = False) -> list[Property]:
        """List every property of an object type (HubSpot does not page this).

        Args:
            object_type: e.g. `contacts`.
            archived: list archived properties instead.

        Returns:
            The definitions.

        Raises:
            MissingScopes: the token lacks a read scope for the type.
            HubSpotResponseError: another error answer.
            HubSpotTransportError: the network failed.
        """
        page = await self._client.request_model(
            _Properties,
            "GET",
            f"/crm/v3/properties/{object_type}",
            params={"archived": archived or None},
            idempotent=True,
        )
        return page.results

    async def get(self, object_type: str, name: str) -> Property:
        """Read one property definition.

        Args:
            object_type: e.g. `contacts`.
            name: the property's internal name.

        Returns:
            The definition.

        Raises:
            ObjectNotFound: no such property.
            HubSpotResponseError: another error answer.
            HubSpotTransportError: the network failed.
        """
        return await self._client.request_model(
            Property, "GET", f"/crm/v3/properties/{object_type}/{name}", idempotent=True
        )

    async def create(self, object_type: str, definition: PropertyCreate) -> Property:
        """Create a property.

        Args:
            object_type: e.g. `contacts`.
            definition: name, label, type, field type, group and options.

        Returns:
            The created definition.

        Raises:
            Conflict: a property with this name exists.
            ValidationFailed: the definition is invalid (e.g. type and field type mismatch).
            MissingScopes: the token lacks the schema write scope.
            HubSpotResponseError: another error answer.
            HubSpotTransportError: the network failed.
        """
        return await self._client.request_model(
            Property,
            "POST",
            f"/crm/v3/properties/{object_type}",
            json=definition.to_wire(),
            idempotent=False,
        )

    async def create_group(self, object_type: str, name: str, label: str) -> None:
        """Create a property group (where new properties are filed in HubSpot's UI).

        Args:
            object_type: e.g. `contacts`.
            name: the group's internal name.
            label: the name shown in HubSpot.

        Raises:
            Conflict: a group with this name exists.
            MissingScopes: the token lacks the schema write scope.
            HubSpotResponseError: another error answer.
            HubSpotTransportError: the network failed.
        """
        await self._client.request(
            "POST",
            f"/crm/v3/properties/{object_type}/groups",
            json={"name": name, "label": label},
            idempotent=False,
        )


class OwnersAPI:
    """Owners (users and queues that records can be assigned to).

    Args:
        client: the portal client that sends the calls.
    """

    def __init__(self, client: HubSpotClient) -> None:
        self._client = client

    async def list(
        self,
        *,
        email: str | None = None,
        limit: int = 100,
        after: str | None = None,
        archived: bool = False,
    ) -> OwnerPage:
        """Read one page of owners.

        Args:
            email: only the owner with this email.
            limit: page size (HubSpot's default and maximum is 100).
            after: the cursor from the previous page.
            archived: list deactivated owners instead.

        Returns:
            The page.

        Raises:
            MissingScopes: the token lacks `crm.objects.owners.read`.
            HubSpotResponseError: another error answer.
            HubSpotTransportError: the network failed.
        """
        return await self._client.request_model(
            OwnerPage,
            "GET",
            "/crm/v3/owners",
            params={"email": email, "limit": limit, "after": after, "archived": archived or None},
            idempotent=True,
        )

    async def iter_all(self, *, archived: bool = False) -> AsyncIterator[Owner]:
        """Yield every owner, page by page.

        Args:
            archived: walk deactivated owners instead.

        Yields:
            Owners.

        Raises:
            See `list`.
        """
        after: str | None = None
        while True:
            page = await self.list(after=after, archived=archived)
            for owner in page.results:
                yield owner
            after = page.next_after
            if after is None:
                return

    async def get(self, owner_id: str, *, by_user_id: bool = False) -> Owner:
        """Read one owner.

        Args:
            owner_id: the owner id (or the user id when `by_user_id`).
            by_user_id: look up by HubSpot user id instead of owner id.

        Returns:
            The owner.

        Raises:
            ObjectNotFound: no such owner.
            HubSpotResponseError: another error answer.
            HubSpotTransportError: the network failed.
        """
        return await self._client.request_model(
            Owner,
            "GET",
            f"/crm/v3/owners/{owner_id}",
            params={"idProperty": "userId" if by_user_id else None},
            idempotent=True,
        )
