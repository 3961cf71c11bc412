"""What the object copy did in one run (part of `migrate run`'s summary)."""

from __future__ import annotations

from dataclasses import dataclass, field

FAILURES_KEPT = 100  # failed items listed in the summary (all of them stay in the ledger)


@dataclass
class ObjectsSummary:
    planned: int = 0
    already_done: int = 0  # done before this run
    previously_skipped: int = 0  # source-changed or conflict in an earlier run (re-plan to retry)
    done: int = 0
    uploaded: int = 0
    existed: int = 0
    failed: int = 0
    source_changed: int = 0
    conflict: int = 0
    pending: int = 0  # left for the next run (stopped)
    bytes: int = 0
    reused_bytes: int = 0
    retries: int = 0
    corrupt_resent: int = 0  # uploads sent again because GCS received other bytes (CRC32C mismatch)
    elapsed: float = 0.0
    upload_paths: dict[str, str] = field(default_factory=dict)  # bucket -> how its large files travel
    failures: list[dict] = field(default_factory=list)
    failures_total: int = 0
    halted: str | None = None  # why the copy stopped before the end on its own

    @property
    def rate(self) -> float:
        return self.bytes / self.elapsed if self.elapsed > 0 else 0.0

    def to_dict(self) -> dict:
        return {
            "planned": self.planned,
            "already_done": self.already_done,
            "previously_skipped": self.previously_skipped,
            "done": self.done,
            "uploaded": self.uploaded,
            "existed": self.existed,
            "failed": self.failed,
            "source_changed": self.source_changed,
            "conflict": self.conflict,
            "pending": self.pending,
            "bytes": self.bytes,
            "reused_bytes": self.reused_bytes,
            "retries": self.retries,
            "corrupt_resent": self.corrupt_resent,
            "upload_paths": self.upload_paths,
            "elapsed": round(self.elapsed, 3),
            "rate": round(self.rate, 1),
            "files_per_second": round(self.done / self.elapsed, 1) if self.elapsed > 0 else 0.0,
            "failures": self.failures,
            "failures_total": self.failures_total,
            "halted": self.halted,
        }
