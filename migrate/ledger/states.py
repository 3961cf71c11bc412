"""The states an item (one planned object or log file) goes through in `items.state`.

    pending ──run──► done                 acknowledged by GCS / every event by Pub/Sub
       │      ├────► failed ──next run──► (retried: pending again)
       │      ├────► source-changed       the file is not the one inventoried: a new plan decides
       │      └────► conflict             the bucket holds other content (conflict_policy): a new plan decides
       └─ a stopped run leaves it pending (a log file keeps its watermark in `offsets`)

A run picks up OPEN items; NOT_COPIED items wait for a new plan.
"""

from __future__ import annotations

from enum import StrEnum


class ItemState(StrEnum):
    PENDING = "pending"
    DONE = "done"
    FAILED = "failed"
    SOURCE_CHANGED = "source-changed"
    CONFLICT = "conflict"


# the states a run (re)tries
OPEN: tuple[ItemState, ...] = (ItemState.PENDING, ItemState.FAILED)
# planned items no re-run copies: a new plan must decide about them
NOT_COPIED: tuple[ItemState, ...] = (ItemState.SOURCE_CHANGED, ItemState.CONFLICT)
# an item in these states is settled for this plan: what a large upload left behind can go
SETTLED: tuple[ItemState, ...] = (ItemState.DONE, *NOT_COPIED)
# the states a run can end an item in that verify reports as a run problem
RUN_PROBLEMS: tuple[ItemState, ...] = (ItemState.FAILED, *NOT_COPIED)


class RunStatus(StrEnum):
    """`runs.status`: how a run ended (RUNNING while it runs; KILLED when a later run found it dead)."""

    RUNNING = "running"
    OK = "ok"
    FAILED = "failed"  # a re-run retries something
    INTERRUPTED = "interrupted"  # stopped: a re-run resumes
    INCOMPLETE = "incomplete"  # planned items no re-run copies: a new plan must decide
    KILLED = "killed"


class ItemKind(StrEnum):
    OBJECT = "object"
    EVENTS = "events"


class LogStatus(StrEnum):
    """`event_files.status`: whether inventory could read a log file."""

    OK = "ok"
    ANOMALY = "anomaly"


def placeholders(states: tuple[str, ...]) -> str:
    """'?,?' for an SQL `IN (...)` over states."""
    return ",".join("?" * len(states))
