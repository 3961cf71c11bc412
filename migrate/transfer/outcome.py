"""How one object item ended, and the one place where an exception becomes that ending."""

from __future__ import annotations

from dataclasses import dataclass

from migrate.ledger.states import ItemState
from migrate.retry import describe, is_retryable
from migrate.sources.filebody import Aborted, SourceChanged, SourceReadError
from migrate.targets.gcs import TransportCorruption

DONE, FAILED, PENDING = ItemState.DONE, ItemState.FAILED, ItemState.PENDING
SOURCE_CHANGED, CONFLICT = ItemState.SOURCE_CHANGED, ItemState.CONFLICT


@dataclass(slots=True)
class Outcome:
    """How one item ended in this run, in the ledger's states (PENDING: interrupted, try again next run)."""

    seq: int
    state: ItemState  # DONE | FAILED | SOURCE_CHANGED | CONFLICT, or PENDING: try again next run
    generation: int | None = None
    crc32c: str | None = None
    uploaded: int = 0  # bytes sent by successful requests
    reused: int = 0  # bytes already in GCS (object, parts or a session's persisted bytes from an earlier run)
    existed: bool = False  # the object was already there with the same CRC32C
    error: str | None = None
    retries: int = 0
    corrupt: int = 0  # uploads re-sent because GCS got other bytes than were sent (CRC32C mismatch)
    transient: bool = False  # failed on an error the classifier retries (the target, not the item)


@dataclass(slots=True)
class Tally:
    """What the requests of one task cost: retries, and re-sends after a CRC32C mismatch."""

    retries: int = 0
    corrupt: int = 0

    def note(self, exc: BaseException) -> None:
        self.retries += 1
        if isinstance(exc, TransportCorruption):
            self.corrupt += 1


def outcome_of(seq: int, exc: BaseException, path: str) -> Outcome:
    """The one classifier from an exception to an item's ending (the source's fault, a stop, or a failure)."""
    if isinstance(exc, SourceChanged):
        return Outcome(seq, SOURCE_CHANGED, error=exc.reason)
    if isinstance(exc, Aborted):
        return Outcome(seq, PENDING)
    if isinstance(exc, PermissionError):
        return Outcome(seq, FAILED, error=f"cannot read {path}: {exc.strerror}")
    if isinstance(exc, SourceReadError):
        return Outcome(seq, FAILED, error=str(exc))
    return Outcome(seq, FAILED, error=describe(exc), transient=is_retryable(exc))
