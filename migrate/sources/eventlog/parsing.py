"""A log line to a Record: JSONL parsing, event id, time and ordering key, and the Pub/Sub limits."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from migrate.sources.eventlog.paths import derived_event_id
from migrate.sources.eventlog.records import (
    MAX_ATTRIBUTE_VALUE,
    MAX_ORDERING_KEY,
    MAX_REQUEST_BYTES,
    PLAN_ID_LEN,
    REQUEST_OVERHEAD,
    Record,
)
from migrate.sources.eventlog.times import normalize_time

if TYPE_CHECKING:
    from migrate.sources.eventlog.reader import EventReader

# The C scanner behind json.loads, without its two whitespace regex passes per call.
_scan_once = json.JSONDecoder().scan_once
_JSON_WS = " \t\r\n"
_ATTR_KEYS = ("event_id", "event_time", "source", "plan_id", "listener")


class Parser:
    def __init__(self, reader: EventReader) -> None:
        lst = reader.listener
        self.listener = lst.name
        self.path = reader.path
        self.identity = reader.identity
        self.id_field = lst.event_id_field
        self.time_field = lst.event_time_field
        self.key_field = lst.ordering_key_field
        self.missing_id = f"missing event_id field {self.id_field!r}"
        self.base_overhead = REQUEST_OVERHEAD + PLAN_ID_LEN + len(lst.name.encode()) + sum(len(k) for k in _ATTR_KEYS)

    def too_long(self, line: int, offset: int, end: int, raw: bytes) -> Record:
        return Record(
            line,
            offset,
            end,
            raw,
            error=f"event of {end - offset} bytes is over Pub/Sub's 10 MB message limit",
            error_kind="oversized",
        )

    def finish(self, line: int, offset: int, end: int, raw: bytes, data: bytes, obj: dict) -> Record:
        if self.id_field:
            event_id = obj.get(self.id_field)
            if event_id is None or event_id == "":
                return Record(line, offset, end, raw, None, None, None, self.missing_id, "malformed")
            if type(event_id) is not str:
                event_id = json.dumps(event_id, separators=(",", ":"), ensure_ascii=False)
        else:
            event_id = derived_event_id(self.listener, self.identity, offset)
        event_time = normalize_time(obj.get(self.time_field)) if self.time_field else None
        key = None
        if self.key_field:
            key = obj.get(self.key_field)
            if key == "":
                key = None
            elif key is not None and type(key) is not str:
                key = json.dumps(key, separators=(",", ":"), ensure_ascii=False)
        rec = Record(line, offset, end, data, event_id, event_time, key)
        if not event_id.isascii() or len(event_id) > 256 or (key is not None and (len(key) > 256 or not key.isascii())):
            problem = _attribute_problem(event_id, key)
            if problem:
                return self.over(rec, raw, problem)
        if len(data) > MAX_REQUEST_BYTES - 64 * 1024:
            size = len(data) + self.base_overhead + 2 * MAX_ATTRIBUTE_VALUE + len(event_time or "") + 8
            size += len(event_id.encode("utf-8")) + len(key.encode("utf-8") if key else b"")
            if size > MAX_REQUEST_BYTES:
                return self.over(rec, raw, f"event of {len(data)} bytes is over Pub/Sub's 10 MB message limit")
        return rec

    @staticmethod
    def over(rec: Record, raw: bytes, reason: str) -> Record:
        rec.data, rec.error, rec.error_kind = raw, reason, "oversized"
        return rec

    @staticmethod
    def decode(line: bytes) -> tuple[str | None, str | None]:
        try:
            return line.decode("utf-8"), None
        except UnicodeDecodeError as exc:
            return None, f"invalid UTF-8 at byte {exc.start} of the line"


class JsonParser(Parser):
    def record(self, line_no: int, offset: int, end: int, raw: bytes) -> Record | None:
        data = raw[:-1] if raw.endswith(b"\r") else raw
        if offset == 0 and data.startswith(b"\xef\xbb\xbf"):
            data = data[3:]
        if not data or data.isspace():
            return None
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            return Record(line_no, offset, end, raw, error=f"invalid UTF-8 at byte {exc.start}", error_kind="malformed")
        try:
            start = 0 if text[0] not in _JSON_WS else len(text) - len(text.lstrip(_JSON_WS))
            obj, stop = _scan_once(text, start)
            if stop != len(text) and not text[stop:].isspace():
                raise ValueError
        except (StopIteration, ValueError, RecursionError):
            return Record(line_no, offset, end, raw, error=_json_problem(text), error_kind="malformed")
        if type(obj) is not dict:
            return Record(
                line_no, offset, end, raw, error=f"not a JSON object ({type(obj).__name__})", error_kind="malformed"
            )
        return self.finish(line_no, offset, end, raw, data, obj)


def _json_problem(text: str) -> str:
    try:
        json.loads(text)
    except json.JSONDecodeError as exc:
        return f"malformed JSON: {exc.msg} at column {exc.colno}"
    except (ValueError, RecursionError):
        pass
    return "malformed JSON"


def _attribute_problem(event_id: str, key: str | None) -> str | None:
    for what, value, limit in (("event_id", event_id, MAX_ATTRIBUTE_VALUE), ("ordering key", key, MAX_ORDERING_KEY)):
        if value is None:
            continue
        try:
            n = len(value.encode("utf-8"))
        except UnicodeEncodeError:
            return f"{what} is not valid Unicode (lone surrogate)"
        if n > limit:
            return f"{what} is {n} bytes; Pub/Sub allows {limit}"
    return None
