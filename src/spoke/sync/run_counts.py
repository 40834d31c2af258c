"""What a manual sync run counts, page by page, and the samples it keeps."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from spoke.sync.models import ContactSyncRun

SAMPLE_CAP = 50


@dataclass
class RunCounts:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    duplicates: int = 0
    conflicts: int = 0
    excluded: int = 0
    failed: int = 0
    done: int = 0
    list_adds: int = 0
    conflict_samples: list[dict[str, Any]] = field(default_factory=list)
    error_samples: list[dict[str, Any]] = field(default_factory=list)

    def conflict(self, record: str, name: str, spoke: Any, hubspot: Any, winner: str) -> None:
        self.conflicts += 1
        self.conflict_samples.append(
            {"record": record, "field": name, "spoke": spoke, "hubspot": hubspot, "kept": winner}
        )

    def error(self, record: str, reason: str) -> None:
        self.failed += 1
        self.error_samples.append({"record": record, "reason": reason[:500]})

    def add_to(self, run: ContactSyncRun) -> None:
        for name in (
            "created",
            "updated",
            "unchanged",
            "duplicates",
            "conflicts",
            "excluded",
            "failed",
            "done",
            "list_adds",
        ):
            setattr(run, name, getattr(run, name) + getattr(self, name))
        samples = dict(run.samples or {})
        samples["conflicts"] = [*samples.get("conflicts", []), *self.conflict_samples][:SAMPLE_CAP]
        samples["errors"] = [*samples.get("errors", []), *self.error_samples][:SAMPLE_CAP]
        run.samples = samples


__all__ = ["SAMPLE_CAP", "RunCounts"]
