"""CRM objects v3: records, batches, search and paging (hubspot-contract.md §1, §1.2).

One `ObjectsAPI` per object type (`contacts`, `companies`, `meetings`, `notes`, …). Batch
methods take any number of inputs: they de-duplicate them (HubSpot rejects a batch that names
the same record twice), send chunks of at most 100, and merge the chunks' results. A 207
multi-status answer is not an exception: its failed items are in `BatchResult.errors`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, TypeVar

from pydantic import BaseModel

from spoke.hubspot.models import (
    BATCH_LIMIT,
    LIST_PAGE_LIMIT,
    AssociationInput,
    BatchResult,
    Filter,
    FilterGroup,
    FilterOperator,
    ObjectCreate,
    ObjectPage,
    ObjectUpdate,
    ObjectUpsert,
    PropertyValue,
    SearchPage,
    SearchRequest,
    SimplePublicObject,
    Sort,
    SortDirection,
    UpsertedObject,
    property_strings,
)

if TYPE_CHECKING:
    from spoke.hubspot.client import HubSpotClient

__all__ = ["ObjectsAPI", "chunked"]

_T = TypeVar("_T")
_ResultT = TypeVar("_ResultT", bound=BaseModel)


def chunked(items: Sequence[_T], size: int = BATCH_LIMIT) -> Iterable[Sequence[_T]]:
    """Split `items` into consecutive slices of at most `size`."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _unique(ids: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(str(i) for i in ids))


def _merge_by_key(
    inputs: Iterable[ObjectUpdate | ObjectUpsert], *, fold_case: bool
) -> list[ObjectUpdate | ObjectUpsert]:
    # Later inputs for the same record win property by property; first position is kept.
    merged: dict[tuple[str | None, str], ObjectUpdate | ObjectUpsert] = {}
    for item in inputs:
        key_id = item.id.strip().lower() if fold_case else item.id
        key = (item.id_property, key_id)
        if key in merged:
            previous = merged[key]
            merged[key] = previous.model_copy(
                update={"properties": {**previous.properties, **item.properties}}
            )
        else:
            merged[key] = item.model_copy(update={"id": key_id})
    return list(merged.values())


class ObjectsAPI:
    """Records of one CRM object type.

    Args:
        client: the portal client that sends the calls.
        object_type: the type as HubSpot's paths name it (`contacts`, `companies`, …).
    """

    def __init__(self, client: HubSpotClient, object_type: str) -> None:
        self._client = client
        self.object_type = object_type
        self._base = f"/crm/v3/objects/{object_type}"

    # --- single records ---------------------------------------------------------------------

    async def get(
        self,
        object_id: str,
        *,
        properties: Sequence[str] | None = None,
        properties_with_history: Sequence[str] | None = None,
        associations: Sequence[str] | None = None,
        id_property: str | None = None,
        archived: bool = False,
    ) -> SimplePublicObject:
        """Read one record.

        Args:
            object_id: the record id, or a unique value of `id_property` (e.g. an email).
            properties: properties to return; None returns HubSpot's defaults.
            properties_with_history: properties to return with their change history.
            associations: object types whose associated ids to include.
            id_property: a unique property that `object_id` is a value of.
            archived: read an archived record instead.

        Returns:
            The record.

        Raises:
            ObjectNotFound: no such record.
            HubSpotResponseError: another error answer.
            HubSpotTransportError: the network failed.
        """
        return await self._client.request_model(
            SimplePublicObject,
            "GET",
            f"{self._base}/{object_id}",
            params={
                "properties": list(properties) if properties is not None else None,
                "propertiesWithHistory": list(properties_with_history or []),
                "associations": list(associations or []),
                "idProperty": id_property,
                "archived": archived or None,
            },
            idempotent=True,
        )

    async def list(
        self,
        *,
        limit: int = LIST_PAGE_LIMIT,
        after: str | None = None,
        properties: Sequence[str] | None = None,
        properties_with_history: Sequence[str] | None = None,
        associations: Sequence[str] | None = None,
        archived: bool = False,
    ) -> ObjectPage:
        """Read one page of records in id order.

        Args:
            limit: page size, at most 100.
            after: the cursor from the previous page's `next_after`.
            properties: properties to return.
            properties_with_history: properties to return with history.
            associations: object types whose associated ids to include.
            archived: list archived records instead.

        Returns:
            The page; `next_after` is None on the last one.

        Raises:
            HubSpotResponseError: an error answer.
            HubSpotTransportError: the network failed.
        """
        return await self._client.request_model(
            ObjectPage,
            "GET",
            self._base,
            params={
                "limit": min(limit, LIST_PAGE_LIMIT),
                "after": after,
                "properties": list(properties) if properties is not None else None,
                "propertiesWithHistory": list(properties_with_history or []),
                "associations": list(associations or []),
                "archived": archived or None,
            },
            idempotent=True,
        )

    async def iter_all(
        self,
        *,
        properties: Sequence[str] | None = None,
        page_size: int = LIST_PAGE_LIMIT,
        archived: bool = False,
    ) -> AsyncIterator[SimplePublicObject]:
        """Yield every record, following `paging.next.after` page by page.

        Args:
            properties: properties to return.
            page_size: records per request, at most 100.
            archived: walk archived records instead.

        Yields:
            Records in HubSpot's list order.

        Raises:
            HubSpotResponseError: an error answer.
            HubSpotTransportError: the network failed.
        """
        after: str | None = None
        while True:
            page = await self.list(
                limit=page_size, after=after, properties=properties, archived=archived
            )
            for record in page.results:
                yield record
            after = page.next_after
            if after is None:
                return

    async def create(
        self,
        properties: Mapping[str, PropertyValue],
        *,
        associations: Sequence[AssociationInput] = (),
    ) -> SimplePublicObject:
        """Create one record (not retried on 5xx: a lost answer could mean it exists).

        Args:
            properties: property values by internal name.
            associations: associations to create with it (e.g. a meeting's contact, type 200).

        Returns:
            The new record.

        Raises:
            ContactExists: a contact with this email exists; `existing_id` names it.
            ValidationFailed: a property is unknown or a value invalid.
            HubSpotResponseError: another error answer.
            HubSpotTransportError: the network failed.
        """
        body = ObjectCreate(properties=property_strings(properties), associations=[*associations])
        return await self._client.request_model(
            SimplePublicObject, "POST", self._base, json=body.to_wire(), idempotent=False
        )

    async def update(
        self,
        object_id: str,
        properties: Mapping[str, PropertyValue],
        *,
        id_property: str | None = None,
    ) -> SimplePublicObject:
        """Set properties on one record; None or "" clears a value.

        Args:
            object_id: the record id, or a value of `id_property`.
            properties: property values by internal name.
            id_property: a unique property that `object_id` is a value of (e.g. `email`).

        Returns:
            The updated record.

        Raises:
            ObjectNotFound: no such record.
            ValidationFailed: a property is unknown, read-only or a value invalid.
            HubSpotResponseError: another error answer.
            HubSpotTransportError: the network failed.
        """
        return await self._client.request_model(
            SimplePublicObject,
            "PATCH",
            f"{self._base}/{object_id}",
            params={"idProperty": id_property},
            json={"properties": property_strings(properties)},
            idempotent=True,
        )

    async def archive(self, object_id: str) -> None:
        """Archive one record (HubSpot's recycle bin keeps it restorable for 90 days).

        Args:
            object_id: the record id.

        Raises:
            HubSpotResponseError: an error answer.
            HubSpotTransportError: the network failed.
        """
        await self._client.request("DELETE", f"{self._base}/{object_id}", idempotent=True)

    async def merge(self, primary_id: str, merged_id: str) -> SimplePublicObject:
        """Merge `merged_id` into `primary_id` (contacts, companies, deals, tickets).

        Args:
            primary_id: the record that survives.
            merged_id: the record merged into it.

        Returns:
            The surviving record (HubSpot may give it a new id).

        Raises:
            ObjectNotFound: either record does not exist.
            HubSpotResponseError: another error answer.
            HubSpotTransportError: the network failed.
        """
        return await self._client.request_model(
            SimplePublicObject,
            "POST",
            f"{self._base}/merge",
            json={"primaryObjectId": str(primary_id), "objectIdToMerge": str(merged_id)},
            idempotent=False,
        )

    # --- batches ----------------------------------------------------------------------------

    async def _batch(
        self,
        model: type[BatchResult[_ResultT]],
        action: str,
        bodies: Iterable[Mapping[str, object]],
        *,
        idempotent: bool,
        params: Mapping[str, str | bool | None] | None = None,
    ) -> BatchResult[_ResultT]:
        combined: BatchResult[_ResultT] | None = None
        for body in bodies:
            result = await self._client.request_model(
                model,
                "POST",
                f"{self._base}/batch/{action}",
                params=params,
                json=body,
                idempotent=idempotent,
            )
            combined = result if combined is None else combined.merged(result)
        return combined if combined is not None else model()

    async def batch_read(
        self,
        ids: Iterable[str],
        *,
        properties: Sequence[str] = (),
        properties_with_history: Sequence[str] = (),
        id_property: str | None = None,
        archived: bool = False,
    ) -> BatchResult[SimplePublicObject]:
        """Read many records by id (or by a unique property).

        Args:
            ids: record ids or `id_property` values; duplicates are sent once.
            properties: properties to return.
            properties_with_history: properties to return with history.
            id_property: a unique property the ids are values of.
            archived: read archived records.

        Returns:
            Found records in `results`; missing ids come back in `errors` (207).

        Raises:
            HubSpotResponseError: an error answer for a whole chunk.
            HubSpotTransportError: the network failed.
        """
        unique = _unique(ids)
        bodies = (
            {
                "inputs": [{"id": i} for i in chunk],
                "properties": list(properties),
                "propertiesWithHistory": list(properties_with_history),
                **({"idProperty": id_property} if id_property else {}),
            }
            for chunk in chunked(unique)
        )
        return await self._batch(
            BatchResult[SimplePublicObject],
            "read",
            bodies,
            idempotent=True,
            params={"archived": archived},
        )

    async def batch_create(self, inputs: Sequence[ObjectCreate]) -> BatchResult[SimplePublicObject]:
        """Create many records (not retried on 5xx).

        HubSpot answers a failing batch create as a whole (one error for the chunk) unless
        every input carries a unique `object_write_trace_id`; then it answers 207 with failed
        items named by `context.objectWriteTraceId`.

        Args:
            inputs: the records to create.

        Returns:
            The created records, and per-item errors on a 207.

        Raises:
            ValidationFailed: a chunk was refused as a whole.
            HubSpotResponseError: another error answer.
            HubSpotTransportError: the network failed.
        """
        bodies = ({"inputs": [i.to_wire() for i in chunk]} for chunk in chunked(inputs))
        return await self._batch(
            BatchResult[SimplePublicObject], "create", bodies, idempotent=False
        )

    async def batch_update(self, inputs: Sequence[ObjectUpdate]) -> BatchResult[SimplePublicObject]:
        """Update many records by id; inputs for the same id are merged, later values winning.

        Args:
            inputs: the updates.

        Returns:
            The updated records, and per-item errors on a 207.

        Raises:
            HubSpotResponseError: an error answer for a whole chunk.
            HubSpotTransportError: the network failed.
        """
        merged = _merge_by_key(inputs, fold_case=False)
        bodies = ({"inputs": [i.to_wire() for i in chunk]} for chunk in chunked(merged))
        return await self._batch(BatchResult[SimplePublicObject], "update", bodies, idempotent=True)

    async def batch_upsert(self, inputs: Sequence[ObjectUpsert]) -> BatchResult[UpsertedObject]:
        """Create or update many records keyed by a unique property (email by default).

        Inputs naming the same record are merged (emails compared case-insensitively, as
        HubSpot stores them lowercased), later values winning, because HubSpot refuses a
        batch with duplicate ids.

        Args:
            inputs: the records; `id` is the key value, `id_property` the key property.

        Returns:
            Every record with `new` telling whether it was created (and, for email upserts,
            its `email` property, to match results to inputs), and per-item errors on a 207.

        Raises:
            HubSpotResponseError: an error answer for a whole chunk.
            HubSpotTransportError: the network failed.
        """
        by_email = _merge_by_key([i for i in inputs if i.id_property == "email"], fold_case=True)
        merged = [
            # HubSpot echoes only the properties sent; sending the key too lets every result
            # be matched back to its input by email.
            *(
                i.model_copy(update={"properties": {"email": i.id, **i.properties}})
                for i in by_email
            ),
            *_merge_by_key([i for i in inputs if i.id_property != "email"], fold_case=False),
        ]
        bodies = ({"inputs": [i.to_wire() for i in chunk]} for chunk in chunked(merged))
        return await self._batch(BatchResult[UpsertedObject], "upsert", bodies, idempotent=True)

    async def batch_upsert_by_email(
        self, records: Iterable[tuple[str, Mapping[str, PropertyValue]]]
    ) -> BatchResult[UpsertedObject]:
        """`batch_upsert` keyed by email, from `(email, properties)` pairs.

        Args:
            records: pairs of email and property values.

        Returns:
            See `batch_upsert`.

        Raises:
            HubSpotResponseError: an error answer for a whole chunk.
            HubSpotTransportError: the network failed.
        """
        inputs = [
            ObjectUpsert(id=email, id_property="email", properties=property_strings(props))
            for email, props in records
        ]
        return await self.batch_upsert(inputs)

    async def batch_archive(self, ids: Iterable[str]) -> None:
        """Archive many records by id; duplicates are sent once.

        Args:
            ids: record ids.

        Raises:
            HubSpotResponseError: an error answer for a chunk.
            HubSpotTransportError: the network failed.
        """
        for chunk in chunked(_unique(ids)):
            await self._client.request(
                "POST",
                f"{self._base}/batch/archive",
                json={"inputs": [{"id": i} for i in chunk]},
                idempotent=True,
            )

    # --- search -----------------------------------------------------------------------------

    async def search(self, request: SearchRequest) -> SearchPage:
        """Run one search request (one page).

        Search has its own bucket (5 requests/s per portal) and its index lags writes by a
        few seconds.

        Args:
            request: filters, sort, properties, page size (≤ 200) and cursor.

        Returns:
            The page with `total`; `next_after` is None on the last page.

        Raises:
            ValidationFailed: the request broke a HubSpot limit (e.g. paging past 10,000).
            RateLimited: the search limit was hit and retries ran out.
            HubSpotResponseError: another error answer.
            HubSpotTransportError: the network failed.
        """
        return await self._client.request_model(
            SearchPage,
            "POST",
            f"{self._base}/search",
            json=request.to_wire(),
            idempotent=True,
            bucket="search",
        )

    async def search_pages(self, request: SearchRequest) -> AsyncIterator[SearchPage]:
        """Yield pages of one search by `after`, stopping before HubSpot's 10,000-result cap.

        Use `search_all` to get past the cap.

        Args:
            request: the first page's request.

        Yields:
            Pages in order.

        Raises:
            See `search`.
        """
        current = request
        while True:
            page = await self.search(current)
            yield page
            after = page.next_after
            if after is None or not self._below_cap(after, current.limit):
                return
            current = current.model_copy(update={"after": after})

    async def search_all(self, request: SearchRequest) -> AsyncIterator[SimplePublicObject]:
        """Yield every match of a search, however many, in `hs_object_id` order.

        HubSpot serves at most 10,000 results per query. This pages by `after` until the cap
        nears, then starts a new query window with `hs_object_id > last id seen` added to every
        filter group, so results keep coming in ascending id order with no gaps or repeats.

        Args:
            request: filters, properties and page size. Its sort must be empty or
                `hs_object_id` ascending; its `after` is ignored.

        Yields:
            Matching records.

        Raises:
            ValueError: the request sorts by something else, or has no room for the extra
                filter (HubSpot allows 6 per group, 18 in all).
            See `search` for the rest.
        """
        id_sort = Sort(property_name="hs_object_id", direction=SortDirection.ASCENDING)
        if request.sorts and request.sorts != [id_sort]:
            raise ValueError("search_all orders by hs_object_id; drop the request's sort")
        base = request.model_copy(update={"sorts": [id_sort], "after": None})
        _windowed(base, "0")  # fail early if the window filter does not fit
        last_id: str | None = None
        while True:
            current = _windowed(base, last_id) if last_id is not None else base
            seen = 0
            window_total: int | None = None
            while True:
                page = await self.search(current)
                if window_total is None:
                    window_total = page.total
                for record in page.results:
                    last_id = record.id
                    seen += 1
                    yield record
                after = page.next_after
                if after is None or not self._below_cap(after, current.limit):
                    break
                current = current.model_copy(update={"after": after})
            # HubSpot stops paging at the cap (no `next`, or a cursor past it): if the window's
            # total says more matched, open the next window after the last id seen.
            if seen == 0 or seen >= window_total:
                return

    def _below_cap(self, after: str, limit: int) -> bool:
        try:
            return int(after) + limit <= self._client.search_result_cap
        except ValueError:
            return True  # an opaque cursor: let HubSpot decide


def _windowed(request: SearchRequest, last_id: str) -> SearchRequest:
    window = Filter(property_name="hs_object_id", operator=FilterOperator.GT, value=last_id)
    groups = [FilterGroup(filters=[*g.filters, window]) for g in request.filter_groups] or [
        FilterGroup(filters=[window])
    ]
    # Re-validate so HubSpot's filter limits are checked on the widened request.
    return SearchRequest.model_validate(
        {
            **request.model_dump(by_alias=False),
            "filter_groups": [g.model_dump(by_alias=False) for g in groups],
            "after": None,
        }
    )
