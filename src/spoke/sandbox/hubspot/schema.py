"""Static HubSpot facts the sandbox is built on.

Object types, built-in properties and association types.

Everything here mirrors `shared/reference/hubspot-contract.md`; the numbers (type ids, association
type ids) are HubSpot's real ones so code written against the sandbox keeps working on HubSpot.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

JSONDict = dict[str, Any]


@dataclass(frozen=True, slots=True)
class ObjectType:
    """One CRM object type the sandbox serves (contacts, companies, meetings, notes)."""

    name: str  # plural path segment, e.g. "contacts"
    singular: str  # e.g. "contact"
    type_id: str  # e.g. "0-1"
    created_prop: str
    modified_prop: str
    default_props: tuple[str, ...]
    read_scopes: tuple[str, ...]
    write_scopes: tuple[str, ...]
    schema_read_scopes: tuple[str, ...]
    schema_write_scopes: tuple[str, ...]
    mergeable: bool

    @property
    def always_props(self) -> tuple[str, str, str]:
        """Properties HubSpot returns on every read, whatever `properties=` asked for."""
        return (self.created_prop, self.modified_prop, "hs_object_id")


_CONTACT_READ = ("crm.objects.contacts.read",)
_CONTACT_WRITE = ("crm.objects.contacts.write",)

CONTACTS = ObjectType(
    name="contacts",
    singular="contact",
    type_id="0-1",
    created_prop="createdate",
    modified_prop="lastmodifieddate",
    default_props=("firstname", "lastname", "email"),
    read_scopes=_CONTACT_READ,
    write_scopes=_CONTACT_WRITE,
    schema_read_scopes=("crm.schemas.contacts.read", *_CONTACT_READ),
    schema_write_scopes=("crm.schemas.contacts.write",),
    mergeable=True,
)
COMPANIES = ObjectType(
    name="companies",
    singular="company",
    type_id="0-2",
    created_prop="createdate",
    modified_prop="hs_lastmodifieddate",
    default_props=("name", "domain"),
    read_scopes=("crm.objects.companies.read",),
    write_scopes=("crm.objects.companies.write",),
    schema_read_scopes=("crm.schemas.companies.read", "crm.objects.companies.read"),
    schema_write_scopes=("crm.schemas.companies.write",),
    mergeable=True,
)
# The meetings spec puts the contacts scopes on every meetings operation; the generic objects
# spec also lists crm.objects.meetings.*. Either grants access here (contract §1.3).
MEETINGS = ObjectType(
    name="meetings",
    singular="meeting",
    type_id="0-47",
    created_prop="hs_createdate",
    modified_prop="hs_lastmodifieddate",
    default_props=(),
    read_scopes=(*_CONTACT_READ, "crm.objects.meetings.read"),
    write_scopes=(*_CONTACT_WRITE, "crm.objects.meetings.write"),
    schema_read_scopes=("crm.schemas.contacts.read", *_CONTACT_READ),
    schema_write_scopes=("crm.schemas.contacts.write",),
    mergeable=False,
)
NOTES = ObjectType(
    name="notes",
    singular="note",
    type_id="0-46",
    created_prop="hs_createdate",
    modified_prop="hs_lastmodifieddate",
    default_props=(),
    read_scopes=_CONTACT_READ,
    write_scopes=_CONTACT_WRITE,
    schema_read_scopes=("crm.schemas.contacts.read", *_CONTACT_READ),
    schema_write_scopes=("crm.schemas.contacts.write",),
    mergeable=False,
)

OBJECT_TYPES: dict[str, ObjectType] = {t.name: t for t in (CONTACTS, COMPANIES, MEETINGS, NOTES)}

# Every spelling HubSpot accepts in a path: plural, singular, type id, upper-case singular.
_ALIASES: dict[str, ObjectType] = {}
for _t in OBJECT_TYPES.values():
    for _alias in (_t.name, _t.singular, _t.type_id, _t.singular.upper(), _t.name.upper()):
        _ALIASES[_alias] = _t


def resolve_object_type(segment: str) -> ObjectType | None:
    """Map a path segment (`contacts`, `contact`, `0-1`, `CONTACT`) to its object type."""
    return _ALIASES.get(segment) or _ALIASES.get(segment.lower())


# -- Association types -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AssociationType:
    type_id: int
    from_type: str
    to_type: str
    category: str
    label: str | None  # None for the unlabeled default
    name: str  # the v3 `type` string, e.g. "contact_to_company"
    inverse_id: int


def _v3_name(object_type: str) -> str:
    # v3 reports meeting associations as "meeting_event_to_contact" (contract §1.3).
    return "meeting_event" if object_type == "meetings" else OBJECT_TYPES[object_type].singular


def _pair(
    a: str, b: str, ab: int, ba: int, *, label: str | None = None, suffix: str = ""
) -> list[AssociationType]:
    sa, sb = _v3_name(a), _v3_name(b)
    name_ab, name_ba = f"{sa}_to_{sb}{suffix}", f"{sb}_to_{sa}{suffix}"
    return [
        AssociationType(ab, a, b, "HUBSPOT_DEFINED", label, name_ab, ba),
        AssociationType(ba, b, a, "HUBSPOT_DEFINED", label, name_ba, ab),
    ]


# Default HUBSPOT_DEFINED ids, contract §2. The first pair listed for an object pair is the default
# (unlabeled) one used by `associations/default` and by inline associations without types.
BUILTIN_ASSOCIATIONS: list[AssociationType] = [
    *_pair("contacts", "companies", 279, 280, suffix="_unlabeled"),
    *_pair("contacts", "companies", 1, 2, label="Primary"),
    *_pair("contacts", "meetings", 199, 200),
    *_pair("companies", "meetings", 187, 188),
    *_pair("contacts", "notes", 201, 202),
    *_pair("companies", "notes", 189, 190),
    AssociationType(
        449, "contacts", "contacts", "HUBSPOT_DEFINED", None, "contact_to_contact", 449
    ),
    AssociationType(
        450, "companies", "companies", "HUBSPOT_DEFINED", None, "company_to_company", 450
    ),
]
# contact_to_company_unlabeled is what v3 reports for 279; the primary pair reports plain names.
BUILTIN_BY_ID: dict[tuple[str, str, int], AssociationType] = {
    (a.from_type, a.to_type, a.type_id): a for a in BUILTIN_ASSOCIATIONS
}
DEFAULT_ASSOCIATION: dict[tuple[str, str], AssociationType] = {}
for _a in BUILTIN_ASSOCIATIONS:
    DEFAULT_ASSOCIATION.setdefault((_a.from_type, _a.to_type), _a)

# Primary contact->company associations also carry the unlabeled default, as on HubSpot.
IMPLIED_TYPES: dict[tuple[str, str, int], int] = {
    ("contacts", "companies", 1): 279,
    ("companies", "contacts", 2): 280,
}


# -- Built-in properties -----------------------------------------------------------------------

PROPERTY_TYPES = frozenset(
    {"bool", "date", "datetime", "enumeration", "number", "phone_number", "string"}
)
FIELD_TYPES = frozenset(
    {
        "booleancheckbox",
        "calculation_equation",
        "checkbox",
        "date",
        "file",
        "html",
        "number",
        "phonenumber",
        "radio",
        "select",
        "text",
        "textarea",
    }
)
_EPOCH_ISO = "2020-01-01T00:00:00Z"


def property_definition(
    name: str,
    label: str,
    type_: str = "string",
    field_type: str = "text",
    group: str = "",
    *,
    options: list[tuple[str, str]] | None = None,
    read_only: bool = False,
    unique: bool = False,
    hubspot_defined: bool = True,
    description: str = "",
) -> JSONDict:
    """Build a property definition in the shape `GET /crm/v3/properties/{type}` returns."""
    return {
        "name": name,
        "label": label,
        "type": type_,
        "fieldType": field_type,
        "description": description,
        "groupName": group,
        "options": [
            {"label": lbl, "value": val, "displayOrder": i, "hidden": False}
            for i, (lbl, val) in enumerate(options or [])
        ],
        "displayOrder": -1,
        "calculated": False,
        "externalOptions": False,
        "hasUniqueValue": unique,
        "hidden": False,
        "hubspotDefined": hubspot_defined,
        "formField": not read_only,
        "dataSensitivity": "non_sensitive",
        "archived": False,
        "createdAt": _EPOCH_ISO,
        "updatedAt": _EPOCH_ISO,
        "modificationMetadata": {
            "archivable": not hubspot_defined,
            "readOnlyDefinition": hubspot_defined,
            "readOnlyValue": read_only,
        },
    }


LIFECYCLE_STAGES: list[tuple[str, str]] = [
    ("Subscriber", "subscriber"),
    ("Lead", "lead"),
    ("Marketing Qualified Lead", "marketingqualifiedlead"),
    ("Sales Qualified Lead", "salesqualifiedlead"),
    ("Opportunity", "opportunity"),
    ("Customer", "customer"),
    ("Evangelist", "evangelist"),
    ("Other", "other"),
]
LEAD_STATUSES: list[tuple[str, str]] = [
    ("New", "NEW"),
    ("Open", "OPEN"),
    ("In Progress", "IN_PROGRESS"),
    ("Open Deal", "OPEN_DEAL"),
    ("Unqualified", "UNQUALIFIED"),
    ("Attempted to Contact", "ATTEMPTED_TO_CONTACT"),
    ("Connected", "CONNECTED"),
    ("Bad Timing", "BAD_TIMING"),
]
MEETING_OUTCOMES: list[tuple[str, str]] = [
    ("Scheduled", "SCHEDULED"),
    ("Completed", "COMPLETED"),
    ("Rescheduled", "RESCHEDULED"),
    ("No show", "NO_SHOW"),
    ("Canceled", "CANCELED"),
]


def _system(group: str, created: str, modified: str) -> list[JSONDict]:
    merged = property_definition(
        "hs_merged_object_ids",
        "Merged record IDs",
        "enumeration",
        "checkbox",
        group,
        read_only=True,
    )
    return [
        *([merged] if created == "createdate" else []),
        property_definition(created, "Create Date", "datetime", "date", group, read_only=True),
        property_definition(
            modified, "Last Modified Date", "datetime", "date", group, read_only=True
        ),
        property_definition(
            "hs_object_id", "Record ID", "number", "number", group, read_only=True, unique=True
        ),
        property_definition("hubspot_owner_id", "Owner", "enumeration", "select", group),
    ]


def _builtin_properties() -> dict[str, list[JSONDict]]:
    ci = "contactinformation"
    contacts = [
        property_definition("email", "Email", "string", "text", ci, unique=True),
        property_definition("firstname", "First Name", group=ci),
        property_definition("lastname", "Last Name", group=ci),
        property_definition("phone", "Phone Number", "string", "phonenumber", ci),
        property_definition("mobilephone", "Mobile Phone Number", "string", "phonenumber", ci),
        property_definition("company", "Company Name", group=ci),
        property_definition("jobtitle", "Job Title", group=ci),
        property_definition("website", "Website URL", group=ci),
        property_definition("city", "City", group=ci),
        property_definition("state", "State/Region", group=ci),
        property_definition("country", "Country/Region", group=ci),
        property_definition("zip", "Postal Code", group=ci),
        property_definition("hs_language", "Preferred language", group=ci),
        property_definition("industry", "Industry", group=ci),
        property_definition(
            "hs_lead_status", "Lead Status", "enumeration", "radio", ci, options=LEAD_STATUSES
        ),
        property_definition(
            "hs_additional_emails",
            "Additional email addresses",
            "enumeration",
            "checkbox",
            ci,
            read_only=True,
        ),
        property_definition(
            "lifecyclestage",
            "Lifecycle Stage",
            "enumeration",
            "radio",
            ci,
            options=LIFECYCLE_STAGES,
        ),
        *_system(ci, "createdate", "lastmodifieddate"),
    ]
    co = "companyinformation"
    companies = [
        property_definition("name", "Company name", group=co),
        property_definition("domain", "Company Domain Name", group=co),
        property_definition("industry", "Industry", group=co),
        property_definition("phone", "Phone Number", "string", "phonenumber", co),
        property_definition("city", "City", group=co),
        property_definition("country", "Country/Region", group=co),
        property_definition("numberofemployees", "Number of Employees", "number", "number", co),
        property_definition("description", "Description", "string", "textarea", co),
        *_system(co, "createdate", "hs_lastmodifieddate"),
    ]
    mi = "meeting"
    meetings = [
        property_definition("hs_timestamp", "Activity date", "datetime", "date", mi),
        property_definition("hs_meeting_title", "Meeting name", group=mi),
        property_definition("hs_meeting_body", "Meeting description", "string", "html", mi),
        property_definition("hs_internal_meeting_notes", "Internal notes", "string", "html", mi),
        property_definition("hs_meeting_external_url", "External URL", group=mi),
        property_definition("hs_meeting_location", "Location", group=mi),
        property_definition("hs_meeting_start_time", "Start Time", "datetime", "date", mi),
        property_definition("hs_meeting_end_time", "End Time", "datetime", "date", mi),
        property_definition(
            "hs_meeting_outcome",
            "Meeting outcome",
            "enumeration",
            "select",
            mi,
            options=MEETING_OUTCOMES,
        ),
        property_definition("hs_activity_type", "Call and meeting type", group=mi),
        property_definition("hs_attachment_ids", "Attachment IDs", "enumeration", "checkbox", mi),
        *_system(mi, "hs_createdate", "hs_lastmodifieddate"),
    ]
    no = "note"
    notes = [
        property_definition("hs_timestamp", "Activity date", "datetime", "date", no),
        property_definition("hs_note_body", "Note body", "string", "html", no),
        property_definition("hs_attachment_ids", "Attachment IDs", "enumeration", "checkbox", no),
        *_system(no, "hs_createdate", "hs_lastmodifieddate"),
    ]
    return {"contacts": contacts, "companies": companies, "meetings": meetings, "notes": notes}


def builtin_properties() -> dict[str, dict[str, JSONDict]]:
    """Fresh, mutable copies of the built-in property definitions, keyed by type then name."""
    return {t: {p["name"]: p for p in props} for t, props in _builtin_properties().items()}


BUILTIN_GROUPS: dict[str, list[tuple[str, str]]] = {
    "contacts": [("contactinformation", "Contact information")],
    "companies": [("companyinformation", "Company information")],
    "meetings": [("meeting", "Meeting information")],
    "notes": [("note", "Note information")],
}


def builtin_groups() -> dict[str, dict[str, JSONDict]]:
    return {
        t: {
            name: {"name": name, "label": label, "displayOrder": i, "archived": False}
            for i, (name, label) in enumerate(groups)
        }
        for t, groups in BUILTIN_GROUPS.items()
    }
