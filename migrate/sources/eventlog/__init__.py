"""Listener event logs: JSONL or CSV, gzipped or plain, read as records with byte offsets."""

from migrate.sources.eventlog.reader import (
    EventFileScan,
    EventReader,
    Prefix,
    Record,
    derived_event_id,
    expand_paths,
    file_identity,
    glob_base,
    iter_records,
    normalize_time,
    only_appended,
    read_prefix,
    scan_file,
    source_attribute,
    time_key,
)

__all__ = [
    "EventFileScan",
    "EventReader",
    "Prefix",
    "Record",
    "derived_event_id",
    "expand_paths",
    "file_identity",
    "glob_base",
    "iter_records",
    "normalize_time",
    "only_appended",
    "read_prefix",
    "scan_file",
    "source_attribute",
    "time_key",
]
