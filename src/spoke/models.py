"""Every table Spoke owns, imported in one place so the metadata (and Alembic) sees them all."""

from spoke.connections.models import HubSpotConnection
from spoke.core.db import Base
from spoke.core.idempotency import IdempotencyRecord
from spoke.core.workers import JobWorker
from spoke.events.export_models import (
    EventExportBatch,
    EventExportDefinition,
    EventExportIdentity,
    EventExportMark,
    EventExportRollup,
    EventExportRun,
    EventExportSettings,
    EventExportUsage,
)
from spoke.events.models import KnownEvent, ProductEvent
from spoke.messaging.models import (
    Delivery,
    MessagingWebhook,
    Notification,
    ProviderConfig,
    Subscription,
)
from spoke.messaging.template_models import MessageTemplate, SavedSegment
from spoke.sync.models import ContactLink, ContactSyncSettings, HubSpotWebhookBatch
from spoke.users.models import (
    CustomField,
    ListMembership,
    ListUsage,
    User,
    UserChange,
    UserImport,
    UserImportChunk,
    UserImportError,
    UserList,
    UserTag,
)
from spoke.workspaces.models import ApiKey, Member, Workspace

__all__ = [
    "ApiKey",
    "Base",
    "ContactLink",
    "ContactSyncSettings",
    "CustomField",
    "Delivery",
    "EventExportBatch",
    "EventExportDefinition",
    "EventExportIdentity",
    "EventExportMark",
    "EventExportRollup",
    "EventExportRun",
    "EventExportSettings",
    "EventExportUsage",
    "HubSpotConnection",
    "HubSpotWebhookBatch",
    "IdempotencyRecord",
    "JobWorker",
    "KnownEvent",
    "ListMembership",
    "ListUsage",
    "Member",
    "MessageTemplate",
    "MessagingWebhook",
    "Notification",
    "ProductEvent",
    "ProviderConfig",
    "SavedSegment",
    "Subscription",
    "User",
    "UserChange",
    "UserImport",
    "UserImportChunk",
    "UserImportError",
    "UserList",
    "UserTag",
    "Workspace",
]
