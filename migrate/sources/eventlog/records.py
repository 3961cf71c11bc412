"""One record of a listener log, and the Pub/Sub limits a record must fit."""

from __future__ import annotations

from dataclasses import dataclass

# Pub/Sub refuses a PublishRequest over 10,000,000 bytes; a message must fit in one.
# https://cloud.google.com/pubsub/quotas#resource_limits
MAX_REQUEST_BYTES = 10 * 1000 * 1000
# Request framing and attributes we cannot know while scanning (topic path, plan id), budgeted
# generously so inventory and run agree on which events are oversized.
REQUEST_OVERHEAD = 512
PLAN_ID_LEN = 24
MAX_ATTRIBUTE_VALUE = 1024
MAX_ORDERING_KEY = 1024


@dataclass(slots=True)
class Record:
    line: int  # 1-based physical line number
    offset: int  # byte offset of the line's first byte (decompressed stream)
    end_offset: int  # byte offset just past its newline
    data: bytes  # what to publish; for a bad record, the raw line (possibly truncated)
    event_id: str | None = None
    event_time: str | None = None
    ordering_key: str | None = None
    error: str | None = None
    error_kind: str | None = None  # 'malformed' | 'oversized' | 'truncated'
    lines: int = 1  # physical lines (more than one for a CSV record with a quoted line break)

    @property
    def last_line(self) -> int:
        return self.line + self.lines - 1
