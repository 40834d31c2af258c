"""Settings, read from `SPOKE_…` environment variables and an optional `.env` file.

Top-level fields carry the names operators type most (`SPOKE_DATABASE_URL`,
`SPOKE_REDIS_URL`, `SPOKE_SECRET_KEY`); everything else is grouped by concern and set
with a double underscore (`SPOKE_JOBS__WORKERS=4`). `get_settings()` is cached; tests
build their own `Settings(...)` and pass it in, nothing reads settings at import time.
"""

from __future__ import annotations

import secrets
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Mode(StrEnum):
    embedded = "embedded"
    production = "production"


class HttpSettings(BaseModel):
    host: str = Field("127.0.0.1", description="Interface `spoke serve` binds to.")
    port: int = Field(8000, ge=1, le=65535, description="Port `spoke serve` listens on.")
    processes: int = Field(
        1,
        ge=1,
        le=64,
        description="HTTP processes `spoke serve` runs on one port (one Python process uses "
        "about one core). More than one needs PostgreSQL and Redis.",
    )
    public_url: str | None = Field(
        None, description="URL the outside world reaches Spoke at (links, OAuth callbacks)."
    )


class DatabaseSettings(BaseModel):
    pool_size: int = Field(
        10,
        ge=1,
        le=500,
        description="Connections kept open per process; as many again may open under load. "
        "Requests that use the database run at most this many at a time.",
    )
    pool_timeout: float = Field(
        30.0, gt=0, description="Seconds to wait for a free connection before failing."
    )


class JobSettings(BaseModel):
    workers: int = Field(2, ge=1, le=64, description="Job worker threads per consumer process.")
    lease_seconds: float = Field(
        60.0,
        gt=0,
        description="How long a job may run without renewing its lease before "
        "the sweeper hands its work to another worker.",
    )
    sweep_grace_seconds: float = Field(
        30.0, ge=0, description="Age after which queued work that no job picked up is re-enqueued."
    )
    queue_name: str = Field(
        "spoke",
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9_.-]+$",
        description="Queue name; deployments sharing one Redis need different names.",
    )
    huey_file: str | None = Field(
        None,
        description="SqliteHuey queue file when no Redis is configured "
        "(default: `<data_dir>/jobs.db`).",
    )


class ApiSettings(BaseModel):
    max_batch_users: int = Field(1000, ge=1, le=10_000, description="Upserts per users batch.")
    page_size_default: int = Field(50, ge=1, le=1000, description="Default list page size.")
    page_size_max: int = Field(500, ge=1, le=5000, description="Largest page a caller may ask.")
    max_body_bytes: int = Field(
        16 * 1024 * 1024, ge=1024, description="Request bodies larger than this are refused (413)."
    )
    idempotency_ttl_hours: int = Field(
        24, ge=1, description="How long a stored Idempotency-Key response is replayed."
    )
    key_cache_seconds: float = Field(
        5.0,
        ge=0,
        le=300,
        description="How long a checked API key is trusted without a query (0: always "
        "query); a key revoked by another process works there for at most this long.",
    )


class MessagingSettings(BaseModel):
    push_concurrency: int = Field(
        64, ge=1, le=1024, description="Push requests in flight per fan-out job."
    )
    send_batch: int = Field(
        500, ge=1, le=10_000, description="Deliveries sent and checkpointed per transaction."
    )
    retry_attempts: int = Field(
        5, ge=1, le=20, description="Tries per message on 429/500/503 before it counts as failed."
    )
    retry_base_delay: float = Field(
        0.5, ge=0, description="First backoff in seconds; doubles per try, with jitter."
    )
    retry_max_delay: float = Field(30.0, ge=0, description="Longest backoff between tries.")


class EventExportSettings(BaseModel):
    concurrency: int = Field(
        10, ge=1, le=64, description="Event batch requests (≤ 500 events each) in flight per run."
    )
    chunk: int = Field(
        5000,
        ge=1,
        le=50_000,
        description="Events read, sent and checkpointed per transaction of an export run.",
    )
    settle_seconds: float = Field(
        30.0,
        ge=0,
        description="Events younger than this wait for the next pass, so one whose insert "
        "commits late (PostgreSQL ids are not commit-ordered) is never skipped.",
    )
    unmatched_recheck_minutes: float = Field(
        15.0, ge=0, description="How often a user without a HubSpot contact is looked up again."
    )
    retry_base_seconds: float = Field(
        0.5, ge=0, le=60, description="First backoff before a failed batch is retried (doubles)."
    )


class LogSettings(BaseModel):
    level: str = Field("INFO", description="Log level (DEBUG, INFO, WARNING, ERROR).")
    json_output: bool = Field(
        True, description="JSON lines (true) or human-readable console output (false)."
    )


class HubSpotSettings(BaseModel):
    base_url: str = Field(
        "https://api.hubapi.com", description="HubSpot API root (a sandbox URL in development)."
    )
    app_url: str = Field(
        "https://app.hubspot.com", description="Where the OAuth consent screen lives."
    )
    client_id: str | None = Field(None, description="OAuth app client id (for OAuth connects).")
    client_secret: SecretStr | None = Field(
        None, description="OAuth app client secret; also verifies webhook signatures."
    )
    app_id: int | None = Field(
        None, description="The OAuth app's id: webhook events with this `sourceId` are our writes."
    )
    redirect_url: str | None = Field(
        None,
        description="OAuth redirect URL (default: `<http.public_url>/oauth/hubspot/callback`).",
    )
    webhook_max_age_seconds: float = Field(
        300.0, gt=0, description="Webhook signature timestamps older than this are refused."
    )
    rate_limit: int = Field(
        100, ge=1, description="Calls per 10 s the app may make to one portal (HubSpot's limit)."
    )
    reserved_share: float = Field(
        0.1, ge=0, lt=1, description="Share of each portal's budget left for other apps."
    )
    backfill_concurrency: int = Field(
        6,
        ge=1,
        le=32,
        description="Pages of a manual Spoke → HubSpot sync in flight at once (the portal's "
        "rate limit still paces them).",
    )
    rate_limited_wait_seconds: float = Field(
        10.0,
        ge=0,
        le=60,
        description="Wait after a 429 that names no Retry-After (HubSpot's window is 10 s).",
    )


class Settings(BaseSettings):
    """Everything Spoke can be told. Each field documents itself in `spoke config show`."""

    model_config = SettingsConfigDict(
        env_prefix="SPOKE_",
        env_nested_delimiter="__",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
    )

    mode: Mode = Field(
        Mode.embedded,
        description="`embedded` generates missing secrets and migrates by itself; "
        "`production` requires SPOKE_SECRET_KEY and a migrated database.",
    )
    database_url: str = Field(
        "sqlite:///./spoke.db", description="SQLAlchemy URL: sqlite:///FILE or postgresql://…"
    )
    redis_url: str | None = Field(
        None, description="Redis URL. Unset: jobs use a SQLite queue and run inside `spoke serve`."
    )
    secret_key: SecretStr | None = Field(
        None,
        description="Encryption key(s) for tokens and provider credentials; comma-separated "
        "to rotate (the first encrypts, all decrypt). Generated into the data dir in "
        "embedded mode.",
    )
    data_dir: Path = Field(
        Path(".spoke"), description="Directory for the generated secret key and the job queue."
    )
    database: DatabaseSettings = Field(
        default_factory=DatabaseSettings, description="Database connection pool."
    )
    http: HttpSettings = Field(default_factory=HttpSettings, description="HTTP server.")
    jobs: JobSettings = Field(default_factory=JobSettings, description="Background jobs.")
    api: ApiSettings = Field(default_factory=ApiSettings, description="API limits.")
    log: LogSettings = Field(default_factory=LogSettings, description="Logging.")
    messaging: MessagingSettings = Field(
        default_factory=MessagingSettings, description="Push, email and SMS sends."
    )
    hubspot: HubSpotSettings = Field(
        default_factory=HubSpotSettings, description="HubSpot connection and sync."
    )
    events_export: EventExportSettings = Field(
        default_factory=EventExportSettings, description="Product events export to HubSpot."
    )

    @model_validator(mode="after")
    def _production_needs_a_key(self) -> Settings:
        if self.mode is Mode.production and self.secret_key is None:
            raise ValueError("SPOKE_SECRET_KEY is required when SPOKE_MODE=production")
        return self

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def huey_file(self) -> Path:
        return Path(self.jobs.huey_file) if self.jobs.huey_file else self.data_dir / "jobs.db"

    def secret_keys(self) -> list[str]:
        """The encryption keys, newest first; generates and stores one in embedded mode."""
        if self.secret_key is not None:
            return [k.strip() for k in self.secret_key.get_secret_value().split(",") if k.strip()]
        key_file = self.data_dir / "secret.key"
        if not key_file.exists():
            from cryptography.fernet import Fernet

            self.data_dir.mkdir(parents=True, exist_ok=True)
            # O_EXCL: two processes starting at once must not write two different keys.
            try:
                with key_file.open("x", encoding="ascii") as fh:
                    fh.write(Fernet.generate_key().decode())
                key_file.chmod(0o600)
            except FileExistsError:
                pass
        return [key_file.read_text(encoding="ascii").strip()]

    def masked(self) -> dict[str, Any]:
        """The effective settings as plain data with every secret masked."""
        data = self.model_dump(mode="json")
        if self.secret_key is not None:
            data["secret_key"] = MASK
        data["database_url"] = _mask_url(self.database_url)
        if self.redis_url:
            data["redis_url"] = _mask_url(self.redis_url)
        return data


MASK = "********"


def _mask_url(url: str) -> str:
    """Hide the password part of `scheme://user:password@host/...`."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    credentials, _, host = rest.rpartition("@")
    user, colon, _password = credentials.partition(":")
    return f"{scheme}://{user}{':' + MASK if colon else ''}@{host}"


def random_token(nbytes: int = 24) -> str:
    return secrets.token_urlsafe(nbytes)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
