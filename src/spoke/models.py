"""Every table Spoke owns, imported in one place so the metadata (and Alembic) sees them all."""

from spoke.core.db import Base
from spoke.core.idempotency import IdempotencyRecord
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
    "CustomField",
    "IdempotencyRecord",
    "ListMembership",
    "ListUsage",
    "Member",
    "User",
    "UserChange",
    "UserImport",
    "UserImportChunk",
    "UserImportError",
    "UserList",
    "UserTag",
    "Workspace",
]
