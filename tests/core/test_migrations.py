"""The migrations build exactly the schema the models declare, on both databases: a
column, index or constraint added to a model without a migration (or the reverse) fails
here rather than in a deployment."""

from __future__ import annotations

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from tests.conftest import Backend

from spoke.core.db import Base


def test_migrated_schema_matches_the_models(backend: Backend) -> None:
    engine = sa.create_engine(backend.database_url)
    try:
        with engine.connect() as connection:
            differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    finally:
        engine.dispose()
    assert differences == []
