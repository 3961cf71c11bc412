"""Result dataclasses of `migrate verify`. `VerifyReport.to_dict()` is the --json / .verify.json document."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

# Object categories that make verification fail (extra only with --strict).
OBJECT_FAILURES = ("missing", "size_mismatch", "crc32c_mismatch", "run_failed", "source_changed", "conflict")


@dataclass
class Listing:
    """One listing call sequence: a bucket and the prefix that covers the plan's objects in it."""

    bucket: str
    prefix: str
    objects: int = 0
    pages: int = 0


@dataclass
class DeepResult:
    """`--deep`: a seeded sample of present objects re-downloaded and re-hashed."""

    spec: str
    seed: int
    candidates: int = 0  # present objects whose listing matched (the population sampled)
    sampled: int = 0
    ok: int = 0
    corrupt: int = 0  # downloaded bytes' CRC32C differs from the expected one
    metadata_mismatch: int = 0  # of those, bytes also differ from the listed crc32c (storage-level corruption)
    errors: int = 0
    bytes: int = 0
    corrupt_names: list[str] = field(default_factory=list)
    error_names: list[str] = field(default_factory=list)


@dataclass
class ObjectsResult:
    planned: int = 0  # object items in the manifest
    previously_migrated: int = 0  # skipped by the plan because the bucket already had them: checked too
    listed: int = 0  # live objects under the listed prefixes
    matched: int = 0
    missing: int = 0
    size_mismatch: int = 0
    crc32c_mismatch: int = 0
    crc32c_unknown: int = 0  # present with the right size, but no expected CRC32C to compare (size-only)
    generation_changed: int = 0  # live generation differs from the one the run wrote: overwritten since
    run_failed: int = 0
    source_changed: int = 0
    conflict: int = 0
    extra: int = 0
    extra_is_error: bool = False
    listings: list[Listing] = field(default_factory=list)
    examples: dict[str, list[str]] = field(default_factory=dict)  # category -> up to --show names
    deep: DeepResult | None = None
    retries: int = 0

    def failures(self) -> int:
        n = sum(getattr(self, k) for k in OBJECT_FAILURES)
        if self.extra_is_error:
            n += self.extra
        if self.deep is not None:
            n += self.deep.corrupt + self.deep.errors
        return n


@dataclass
class Drain:
    """What draining one topic's verification subscription read in this verify run."""

    topic: str
    subscription: str
    pulls: int = 0
    received: int = 0  # messages read in this run (including redeliveries)
    new: int = 0  # messages not seen by an earlier pull (redeliveries are told apart by message id)
    redelivered: int = 0
    acked: int = 0
    this_plan: int = 0
    other_plans: int = 0  # kept in the ledger under their own plan id, for their own verify
    foreign: int = 0  # no plan_id / event_id / listener attribute: not written by migrate
    stopped: str = ""  # why draining stopped: 'complete', 'quiet' or 'timeout' (see verification/drain.py)
    streams: int = 1  # parallel pull streams
    quiet_seconds: float = 0.0  # the quiet period: nothing arrived and nothing in flight for this long
    expected_left: int = 0  # expected deliveries of this plan on this topic still unseen when draining stopped
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        """Messages read per second of draining."""
        return self.received / self.seconds if self.seconds > 0 else 0.0

    def why_stopped(self) -> str:
        """The stop reason in words, for the reports."""
        if self.stopped == "complete":
            return "every expected event was seen"
        if self.stopped == "quiet":
            return (
                f"nothing arrived for {self.quiet_seconds:g} s and nothing was in flight, with "
                f"{self.expected_left:,} expected event(s) not seen"
            )
        if self.stopped == "timeout":
            return f"time limit reached with {self.expected_left:,} expected event(s) not seen"
        return self.stopped


@dataclass
class EventSourceResult:
    source: str
    topic: str
    files: int = 0
    inventory_events: int = 0
    inventory_digest: str = ""
    quarantined: int = 0  # quarantine records of this source's files (every reason)
    quarantined_valid: int = 0  # of those, valid records that the run set aside instead of publishing
    expected_events: int = 0  # source logs re-read now, valid records, minus the quarantined ones
    expected_digest: str = ""
    received_events: int = 0  # this plan's messages for this source, over every verify run so far
    received_digest: str = ""
    received_before: int = 0  # of those, drained by an earlier verify run (and acked then)
    missing: int = 0
    duplicates: int = 0  # surplus deliveries of ids that are in the source
    duplicates_explained: int = 0  # covered by interrupted runs' in-flight events and retried publishes
    unexpected: int = 0  # messages whose id is not in the source
    interrupted_runs: int = 0
    in_flight_max: int = 0
    source_drift: bool = False  # re-read logs differ from the inventory (count or digest)
    unreadable: list[str] = field(default_factory=list)
    run_failed: int = 0  # event files whose item failed or changed at source during the run
    examples: dict[str, list[str]] = field(default_factory=dict)

    @property
    def duplicates_unexplained(self) -> int:
        return self.duplicates - self.duplicates_explained

    @property
    def digest_match(self) -> bool:
        return (self.received_events, self.received_digest) == (self.expected_events, self.expected_digest)

    @property
    def ok(self) -> bool:
        return (
            self.missing == 0
            and self.unexpected == 0
            and self.duplicates_unexplained == 0
            and not self.unreadable
            and self.run_failed == 0
        )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(duplicates_unexplained=self.duplicates_unexplained, digest_match=self.digest_match, ok=self.ok)
        return d


@dataclass
class VerifyReport:
    plan_id: str
    plan_name: str
    plan_path: str
    strict: bool = False
    show: int = 20
    started_at: float = 0.0
    duration_s: float = 0.0
    objects: ObjectsResult = field(default_factory=ObjectsResult)
    events: list[EventSourceResult] = field(default_factory=list)
    drains: list[Drain] = field(default_factory=list)
    foreign_is_error: bool = False
    problems: int = 0  # lines in the .verify.txt listing other than '='
    problem_counts: dict[str, int] = field(default_factory=dict)  # symbol -> lines
    files: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def events_ok(self) -> bool:
        foreign = sum(d.foreign for d in self.drains) if self.foreign_is_error else 0
        complete = all(d.stopped != "timeout" for d in self.drains)
        return all(e.ok for e in self.events) and foreign == 0 and complete

    @property
    def ok(self) -> bool:
        return self.objects.failures() == 0 and self.events_ok

    def to_dict(self) -> dict[str, Any]:
        return {
            "plan_id": self.plan_id,
            "plan_name": self.plan_name,
            "plan_path": self.plan_path,
            "strict": self.strict,
            "show": self.show,
            "started_at": self.started_at,
            "duration_s": round(self.duration_s, 3),
            "ok": self.ok,
            "objects": {**asdict(self.objects), "failures": self.objects.failures()},
            "events": [e.to_dict() for e in self.events],
            "drains": [{**asdict(d), "rate": round(d.rate, 1), "why_stopped": d.why_stopped()} for d in self.drains],
            "events_ok": self.events_ok,
            "problems": self.problems,
            "problem_counts": dict(self.problem_counts),
            "files": dict(self.files),
            "notes": list(self.notes),
        }
