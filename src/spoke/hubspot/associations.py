"""Associations v4 between CRM records (hubspot-contract.md §2).

Type ids are directional: a meeting → contact association is type 200, contact → meeting 199.
`ASSOCIATION_TYPES` holds HubSpot's default ids for the pairs Spoke uses; the `labels` call
gives the authoritative list per portal.
"""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import TYPE_CHECKING

from spoke.hubspot.crm import chunked
from spoke.hubspot.models import (
    ASSOCIATION_BATCH_READ_LIMIT,
    ASSOCIATION_PAGE_LIMIT,
    BATCH_LIMIT,
    AssociatedObjectPage,
    AssociationCreate,
    AssociationLabel,
    AssociationsOfObject,
    AssociationSpec,
    BatchResult,
    DefaultAssociation,
    HubSpotModel,
    LabelsBetweenObjectPair,
)

if TYPE_CHECKING:
    from spoke.hubspot.client import HubSpotClient

__all__ = ["ASSOCIATION_TYPES", "AssociationsAPI"]

ASSOCIATION_TYPES: dict[tuple[str, str], int] = {
    ("contacts", "companies"): 279,
    ("companies", "contacts"): 280,
    ("contacts", "meetings"): 199,
    ("meetings", "contacts"): 200,
    ("companies", "meetings"): 187,
    ("meetings", "companies"): 188,
    ("contacts", "notes"): 201,
    ("notes", "contacts"): 202,
    ("contacts", "deals"): 4,
    ("deals", "contacts"): 3,
    ("contacts", "contacts"): 449,
    ("companies", "companies"): 450,
}
"""HubSpot-defined default (unlabelled) association type ids, by (from type, to type)."""


class _Labels(HubSpotModel):
    results: list[AssociationLabel] = []


class AssociationsAPI:
    """Associations v4.

    Args:
        client: the portal client that sends the calls.
    """

    def __init__(self, client: HubSpotClient) -> None:
        self._client = client

    async def create_default(
        self, from_type: str, from_id: str, to_type: str, to_id: str
    ) -> BatchResult[DefaultAssociation]:
        """Associate two records with their types' default (unlabelled) association.

        Args:
            from_type: the first record's object type.
            from_id: the first record's id.
            to_type: the second record's object type.
            to_id: the second record's id.

        Returns:
            The associations created (one per direction HubSpot reports).

        Raises:
            ObjectNotFound: either record does not exist.
            HubSpotResponseError: another error answer.
            HubSpotTransportError: the network failed.
        """
        return await self._client.request_model(
            BatchResult[DefaultAssociation],
            "PUT",
            f"/crm/v4/objects/{from_type}/{from_id}/associations/default/{to_type}/{to_id}",
            idempotent=True,
        )

    async def create(
        self,
        from_type: str,
        from_id: str,
        to_type: str,
        to_id: str,
        types: Sequence[AssociationSpec],
    ) -> LabelsBetweenObjectPair:
        """Associate two records with specific (possibly labelled) association types.

        Args:
            from_type: the first record's object type.
            from_id: the first record's id.
            to_type: the second record's object type.
            to_id: the second record's id.
            types: the association types to set.

        Returns:
            The pair with its labels.

        Raises:
            ObjectNotFound: either record does not exist.
            ValidationFailed: a type id does not fit these object types.
            HubSpotResponseError: another error answer.
            HubSpotTransportError: the network failed.
        """
        return await self._client.request_model(
            LabelsBetweenObjectPair,
            "PUT",
            f"/crm/v4/objects/{from_type}/{from_id}/associations/{to_type}/{to_id}",
            json=[t.to_wire() for t in types],
            idempotent=True,
        )

    async def list(
        self,
        from_type: str,
        from_id: str,
        to_type: str,
        *,
        limit: int = ASSOCIATION_PAGE_LIMIT,
        after: str | None = None,
    ) -> AssociatedObjectPage:
        """Read one page of a record's associations to one object type.

        Args:
            from_type: the record's object type.
            from_id: the record's id.
            to_type: the associated object type.
            limit: page size, at most 500.
            after: the cursor from the previous page.

        Returns:
            Associated ids with their association types.

        Raises:
            HubSpotResponseError: an error answer.
            HubSpotTransportError: the network failed.
        """
        return await self._client.request_model(
            AssociatedObjectPage,
            "GET",
            f"/crm/v4/objects/{from_type}/{from_id}/associations/{to_type}",
            params={"limit": min(limit, ASSOCIATION_PAGE_LIMIT), "after": after},
            idempotent=True,
        )

    async def iter_all(
        self, from_type: str, from_id: str, to_type: str
    ) -> AsyncIterator[AssociatedObjectPage]:
        """Yield every page of a record's associations to one object type.

        Args:
            from_type: the record's object type.
            from_id: the record's id.
            to_type: the associated object type.

        Yields:
            Pages in order.

        Raises:
            See `list`.
        """
        after: str | None = None
        while True:
            page = await self.list(from_type, from_id, to_type, after=after)
            yield page
            after = page.next_after
            if after is None:
                return

    async def remove(self, from_type: str, from_id: str, to_type: str, to_id: str) -> None:
        """Remove every association between two records.

        Args:
            from_type: the first record's object type.
            from_id: the first record's id.
            to_type: the second record's object type.
            to_id: the second record's id.

        Raises:
            HubSpotResponseError: an error answer.
            HubSpotTransportError: the network failed.
        """
        await self._client.request(
            "DELETE",
            f"/crm/v4/objects/{from_type}/{from_id}/associations/{to_type}/{to_id}",
            idempotent=True,
        )

    async def batch_create_default(
        self, from_type: str, to_type: str, pairs: Iterable[tuple[str, str]]
    ) -> BatchResult[DefaultAssociation]:
        """Create default associations for many `(from_id, to_id)` pairs.

        Args:
            from_type: the object type of the first ids.
            to_type: the object type of the second ids.
            pairs: id pairs; duplicates are sent once.

        Returns:
            The associations created, and per-item errors on a 207.

        Raises:
            HubSpotResponseError: an error answer for a whole chunk.
            HubSpotTransportError: the network failed.
        """
        unique = list(dict.fromkeys((str(a), str(b)) for a, b in pairs))
        combined = BatchResult[DefaultAssociation]()
        for chunk in chunked(unique, BATCH_LIMIT):
            result = await self._client.request_model(
                BatchResult[DefaultAssociation],
                "POST",
                f"/crm/v4/associations/{from_type}/{to_type}/batch/associate/default",
                json={"inputs": [{"from": {"id": a}, "to": {"id": b}} for a, b in chunk]},
                idempotent=True,
            )
            combined = combined.merged(result)
        return combined

    async def batch_create(
        self, from_type: str, to_type: str, inputs: Sequence[AssociationCreate]
    ) -> BatchResult[LabelsBetweenObjectPair]:
        """Create associations of given types for many pairs.

        Args:
            from_type: the object type of the `from` ids.
            to_type: the object type of the `to` ids.
            inputs: pairs with their association types.

        Returns:
            The pairs with labels, and per-item errors on a 207.

        Raises:
            HubSpotResponseError: an error answer for a whole chunk.
            HubSpotTransportError: the network failed.
        """
        combined = BatchResult[LabelsBetweenObjectPair]()
        for chunk in chunked(inputs, BATCH_LIMIT):
            result = await self._client.request_model(
                BatchResult[LabelsBetweenObjectPair],
                "POST",
                f"/crm/v4/associations/{from_type}/{to_type}/batch/create",
                json={"inputs": [i.to_wire() for i in chunk]},
                idempotent=True,
            )
            combined = combined.merged(result)
        return combined

    async def batch_read(
        self, from_type: str, to_type: str, ids: Iterable[str]
    ) -> BatchResult[AssociationsOfObject]:
        """Read the associations of many records to one object type.

        Args:
            from_type: the records' object type.
            to_type: the associated object type.
            ids: record ids; duplicates are sent once, 1,000 per request.

        Returns:
            One entry per record that has associations; per-item errors on a 207.

        Raises:
            HubSpotResponseError: an error answer for a whole chunk.
            HubSpotTransportError: the network failed.
        """
        unique = list(dict.fromkeys(str(i) for i in ids))
        combined = BatchResult[AssociationsOfObject]()
        for chunk in chunked(unique, ASSOCIATION_BATCH_READ_LIMIT):
            result = await self._client.request_model(
                BatchResult[AssociationsOfObject],
                "POST",
                f"/crm/v4/associations/{from_type}/{to_type}/batch/read",
                json={"inputs": [{"id": i} for i in chunk]},
                idempotent=True,
            )
            combined = combined.merged(result)
        return combined

    async def batch_archive(
        self, from_type: str, to_type: str, pairs: Iterable[tuple[str, Sequence[str]]]
    ) -> None:
        """Remove all associations between each record and the listed records.

        Args:
            from_type: the object type of the first ids.
            to_type: the object type of the listed ids.
            pairs: `(from_id, [to_id, …])` pairs.

        Raises:
            HubSpotResponseError: an error answer for a chunk.
            HubSpotTransportError: the network failed.
        """
        inputs = [
            {"from": {"id": str(a)}, "to": [{"id": str(b)} for b in targets]}
            for a, targets in pairs
        ]
        for chunk in chunked(inputs, BATCH_LIMIT):
            await self._client.request(
                "POST",
                f"/crm/v4/associations/{from_type}/{to_type}/batch/archive",
                json={"inputs": list(chunk)},
                idempotent=True,
            )

    async def labels(self, from_type: str, to_type: str) -> builtins.list[AssociationLabel]:
        """List the association types (default and labelled) between two object types.

        Args:
            from_type: the source object type.
            to_type: the target object type.

        Returns:
            The types with their category, id and label (None for the default type).

        Raises:
            HubSpotResponseError: an error answer.
            HubSpotTransportError: the network failed.
        """
        page = await self._client.request_model(
            _Labels, "GET", f"/crm/v4/associations/{from_type}/{to_type}/labels", idempotent=True
        )
        return page.results
