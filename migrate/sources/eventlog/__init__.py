"""Listener event logs: JSONL or CSV, gzipped or plain, read as records with byte offsets.

Offsets are byte offsets in the *decompressed* stream, so a watermark means the same thing
for a plain and a gzipped file. Resuming a gzip re-decompresses from the start and skips
to the offset (gzip has no random access).

Event ids
  With `event_id_field` set, the id is that field's value (strings as is, other JSON values
  as compact JSON). Otherwise the id is derived: ``blake2b-128(listener + "\\0" + relpath +
  "\\0" + offset)`` in hex, prefixed with ``d-``. ``relpath`` is the file's path relative to the
  non-wildcard directory of the glob pattern that matched it (``/srv/logs/plays/*.jsonl.gz``
  -> base ``/srv/logs/plays``), so the id is stable across runs and across machines that mount
  the same share elsewhere, and it never depends on inode or mtime.

Bad records are yielded, never dropped: ``Record.error`` names the reason and
``Record.error_kind`` is 'malformed' (not a valid record), 'oversized' (valid but over a
Pub/Sub limit) or 'truncated' (the incomplete tail of a truncated gzip).

Blank lines (empty or whitespace only) are skipped: they are neither events nor malformed.

CSV: the first physical line is the header (read even when resuming); each later row is
published as a compact JSON object {column: value}. A quoted field may hold line breaks
(RFC 4180): the row then spans several physical lines (`Record.lines`). A stray quote costs
one bad row, not the rest of the file (csvrows.CsvJoiner).

Modules:
  records.py  Record and the Pub/Sub limits a record must fit
  paths.py    which files a listener reads; file identity, derived event ids, the `source` attribute
  times.py    event times normalised to RFC 3339 UTC, and their ordering key
  streams.py  plain or gzip bytes (concatenated members, salvage before a corruption); prefixes
  parsing.py  a line to a Record: JSONL, event id, time, ordering key, size limits
  csvrows.py  CSV header and rows, rows joined across quoted line breaks
  reader.py   EventReader / iter_records: records from a byte offset, with line numbers
  scan.py     scan_file: counts, id digest, time range and bad lines for inventory and plan
"""

from migrate.sources.eventlog.paths import (
    derived_event_id,
    expand_paths,
    file_identity,
    source_attribute,
)
from migrate.sources.eventlog.reader import EventReader, iter_records
from migrate.sources.eventlog.records import Record
from migrate.sources.eventlog.scan import EventFileScan, scan_file
from migrate.sources.eventlog.streams import Prefix, only_appended, read_prefix
from migrate.sources.eventlog.times import normalize_time, time_key

__all__ = [
    "EventFileScan",
    "EventReader",
    "Prefix",
    "Record",
    "derived_event_id",
    "expand_paths",
    "file_identity",
    "iter_records",
    "normalize_time",
    "only_appended",
    "read_prefix",
    "scan_file",
    "source_attribute",
    "time_key",
]
