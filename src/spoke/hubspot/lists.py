"""Lists v3: manual (static) lists and their membership.

Shapes follow HubSpot's lists v3 spec as carried by the official SDK (`hubspot.crm.lists`):
create answers `{list: {...}}`, membership changes take a JSON array of record ids and answer
`{recordsIdsAdded, recordIdsRemoved, recordIdsMissing}`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from typing import TYPE_CHECKING

from spoke.hubspot.crm import chunked
from spoke.hubspot.models import (
    HubSpotModel,
    ListMembership,
    ListMembershipPage,
    MembershipsUpdate,
    ObjectList,
    RecordListMembership,
)

if TYPE_CHECKING:
    from spoke.hubspot.client import HubSpotClient

__all__ = ["CONTACT_OBJECT_TYPE_ID", "ListsAPI"]

CONTACT_OBJECT_TYPE_ID = "0-1"
# HubSpot takes up to 100,000 ids per membership change; smaller requests keep retries cheap.
_MEMBERSHIP_CHUNK = 1_000


class _ListEnvelope(HubSpotModel):
    list: ObjectList


class _RecordMemberships(HubSpotModel):
    results: list[RecordListMembership] = []


class ListsAPI:
    """Lists v3.

    Args:
        client: the portal client that sends the calls.
    """

    def __init__(self, client: HubSpotClient) -> None:
        self._client = client

    async def create(
        self,
        name: str,
        *,
        object_type_id: str = CONTACT_OBJECT_TYPE_ID,
        processing_type: str = "MANUAL",
    ) -> ObjectList:
        """Create a list.

        Args:
            name: the list's name, unique in the portal.
            object_type_id: the member type (`0-1` contacts, `0-2` companies).
            processing_type: `MANUAL` (members set through the API) or `SNAPSHOT`.

        Returns:
            The list.

        Raises:
            Conflict: a list with this name exists.
            HubSpotResponseError: another error answer.
            HubSpotTransportError: the network failed.
        """
        envelope = await self._client.request_model(
            _ListEnvelope,
            "POST",
            "/crm/v3/lists/",
            json={"name": name, "objectTypeId": object_type_id, "processingType": processing_type},
            idempotent=False,
        )
        return envelope.list

    async def get(self, list_id: str) -> ObjectList:
        """Read a list.

        Args:
            list_id: the list's id (ILS id).

        Returns:
            The list.

        Raises:
            ObjectNotFound: no such list.
            HubSpotResponseError: another error answer.
            HubSpotTransportError: the network failed.
        """
        envelope = await self._client.request_model(
            _ListEnvelope, "GET", f"/crm/v3/lists/{list_id}", idempotent=True
        )
        return envelope.list

    async def get_by_name(
        self, name: str, *, object_type_id: str = CONTACT_OBJECT_TYPE_ID
    ) -> ObjectList:
        """Read a list by its name.

        Args:
            name: the list's name.
            object_type_id: the member type.

        Returns:
            The list.

        Raises:
            ObjectNotFound: no list has this name.
            HubSpotResponseError: another error answer.
            HubSpotTransportError: the network failed.
        """
        envelope = await self._client.request_model(
            _ListEnvelope,
            "GET",
            f"/crm/v3/lists/object-type-id/{object_type_id}/name/{name}",
            idempotent=True,
        )
        return envelope.list

    async def delete(self, list_id: str) -> None:
        """Delete a list (restorable for 90 days).

        Args:
            list_id: the list's id.

        Raises:
            HubSpotResponseError: an error answer.
            HubSpotTransportError: the network failed.
        """
        await self._client.request("DELETE", f"/crm/v3/lists/{list_id}", idempotent=True)

    async def _change(
        self, list_id: str, action: str, record_ids: Iterable[str]
    ) -> MembershipsUpdate:
        unique = list(dict.fromkeys(str(r) for r in record_ids))
        total = MembershipsUpdate()
        for chunk in chunked(unique, _MEMBERSHIP_CHUNK):
            result = await self._client.request_model(
                MembershipsUpdate,
                "PUT",
                f"/crm/v3/lists/{list_id}/memberships/{action}",
                json=list(chunk),
                idempotent=True,
            )
            total = MembershipsUpdate(
                record_ids_added=[*total.record_ids_added, *result.record_ids_added],
                record_ids_removed=[*total.record_ids_removed, *result.record_ids_removed],
                record_ids_missing=[*total.record_ids_missing, *result.record_ids_missing],
            )
        return total

    async def add_members(self, list_id: str, record_ids: Iterable[str]) -> MembershipsUpdate:
        """Add records to a manual list; ids already in it are ignored.

        Args:
            list_id: the list's id.
            record_ids: the records to add.

        Returns:
            Which ids were added and which do not exist.

        Raises:
            ObjectNotFound: no such list.
            HubSpotResponseError: another error answer.
            HubSpotTransportError: the network failed.
        """
        return await self._change(list_id, "add", record_ids)

    async def remove_members(self, list_id: str, record_ids: Iterable[str]) -> MembershipsUpdate:
        """Remove records from a manual list.

        Args:
            list_id: the list's id.
            record_ids: the records to remove.

        Returns:
            Which ids were removed and which were not members.

        Raises:
            ObjectNotFound: no such list.
            HubSpotResponseError: another error answer.
            HubSpotTransportError: the network failed.
        """
        return await self._change(list_id, "remove", record_ids)

    async def members(
        self, list_id: str, *, limit: int = 100, after: str | None = None
    ) -> ListMembershipPage:
        """Read one page of a list's members, ordered by record id.

        Args:
            list_id: the list's id.
            limit: page size (HubSpot allows up to 250).
            after: the cursor from the previous page.

        Returns:
            Member ids with the time each joined.

        Raises:
            ObjectNotFound: no such list.
            HubSpotResponseError: another error answer.
            HubSpotTransportError: the network failed.
        """
        return await self._client.request_model(
            ListMembershipPage,
            "GET",
            f"/crm/v3/lists/{list_id}/memberships",
            params={"limit": limit, "after": after},
            idempotent=True,
        )

    async def iter_members(self, list_id: str) -> AsyncIterator[ListMembership]:
        """Yield every member of a list.

        Args:
            list_id: the list's id.

        Yields:
            Memberships in order.

        Raises:
            See `members`.
        """
        after: str | None = None
        while True:
            page = await self.members(list_id, after=after)
            for member in page.results:
                yield member
            after = page.next_after
            if after is None:
                return

    async def record_memberships(
        self, record_id: str, *, object_type_id: str = CONTACT_OBJECT_TYPE_ID
    ) -> list[RecordListMembership]:
        """List the lists one record belongs to.

        Args:
            record_id: the record's id.
            object_type_id: the record's type (`0-1` contacts).

        Returns:
            The record's memberships.

        Raises:
            HubSpotResponseError: an error answer.
            HubSpotTransportError: the network failed.
        """
        page = await self._client.request_model(
            _RecordMemberships,
            "GET",
            f"/crm/v3/lists/records/{object_type_id}/{record_id}/memberships",
            idempotent=True,
        )
        return page.results
