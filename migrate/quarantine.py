"""The quarantine: bad event records, kept with their raw bytes so nothing is silently dropped.

`<state_dir>/quarantine/<plan_id>.jsonl`, one JSON object per record:
  {"file", "line", "offset", "reason", "raw_b64", "listener", "kind"}

A record is written when replay reads it, before the file's watermark may pass it, and `sync()`
makes the writes durable before a watermark commit. A run resumed after a crash re-reads the
records above the watermark: the entries already in the file for those offsets are loaded at
open, so a record is never written twice. A line torn by a crash mid-write is cut off at open.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path

QUARANTINE_DIR = "quarantine"


def quarantine_path(state_dir: Path | str, plan_id: str) -> Path:
    return Path(state_dir) / QUARANTINE_DIR / f"{plan_id}.jsonl"


def iter_quarantine(state_dir: Path | str, plan_id: str) -> Iterator[dict]:
    """Entries of a plan's quarantine (none if there is no file). Torn or unreadable lines are skipped."""
    path = quarantine_path(state_dir, plan_id)
    if not path.exists():
        return
    with open(path, "rb") as fh:
        for line in fh:
            if not line.endswith(b"\n"):
                return
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict):
                yield entry


def reasons_by_file(state_dir: Path | str, plan_id: str) -> dict[str, dict[int, str]]:
    """file -> {byte offset: reason} of a plan's quarantine (small: bad records only)."""
    out: dict[str, dict[int, str]] = {}
    for entry in iter_quarantine(state_dir, plan_id):
        try:
            out.setdefault(str(entry["file"]), {})[int(entry["offset"])] = str(entry.get("reason", ""))
        except (KeyError, TypeError, ValueError):
            continue
    return out


class Quarantine:
    """Append-only writer for one plan's quarantine, de-duplicated by (file, offset)."""

    def __init__(self, state_dir: Path | str, plan_id: str, resume_from: Mapping[str, int] | None = None) -> None:
        """resume_from maps file -> watermark: existing entries at or above it are remembered as
        written (entries below a watermark are never re-read). None remembers every entry."""
        self.path = quarantine_path(state_dir, plan_id)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._seen: set[tuple[str, int]] = set()
        self._cut_torn_tail()
        for entry in iter_quarantine(state_dir, plan_id):
            file, offset = entry.get("file"), entry.get("offset")
            if not isinstance(file, str) or not isinstance(offset, int):
                continue
            if resume_from is None or (file in resume_from and offset >= resume_from[file]):
                self._seen.add((file, offset))
        self._fh = open(self.path, "ab")  # noqa: SIM115 - kept open for appends, closed by close()
        self._dirty = False
        self.written = 0
        self.skipped = 0

    def _cut_torn_tail(self) -> None:
        try:
            with open(self.path, "rb+") as fh:
                size = fh.seek(0, os.SEEK_END)
                if size == 0:
                    return
                fh.seek(size - 1)
                if fh.read(1) == b"\n":
                    return
                # Find the last newline and cut after it.
                pos = size
                while pos > 0:
                    step = min(65536, pos)
                    fh.seek(pos - step)
                    block = fh.read(step)
                    nl = block.rfind(b"\n")
                    if nl >= 0:
                        fh.truncate(pos - step + nl + 1)
                        return
                    pos -= step
                fh.truncate(0)
        except FileNotFoundError:
            return

    def add(
        self, file: str, line: int, offset: int, reason: str, raw: bytes, *, listener: str = "", kind: str = ""
    ) -> bool:
        """Append one record; False (nothing written) if (file, offset) is already there."""
        key = (file, offset)
        if key in self._seen:
            self.skipped += 1
            return False
        entry = {
            "file": file,
            "line": line,
            "offset": offset,
            "reason": reason,
            "raw_b64": base64.b64encode(raw).decode("ascii"),
            "listener": listener,
            "kind": kind,
        }
        self._fh.write(json.dumps(entry, ensure_ascii=False).encode("utf-8") + b"\n")
        self._seen.add(key)
        self._dirty = True
        self.written += 1
        return True

    def forget_below(self, file: str, watermark: int) -> None:
        """Drop remembered keys of `file` below its new watermark (they will never be re-read)."""
        if self._seen:
            self._seen = {k for k in self._seen if k[0] != file or k[1] >= watermark}

    def sync(self) -> None:
        """Make every entry written so far durable (before a watermark passes it)."""
        if self._dirty:
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._dirty = False

    def close(self) -> None:
        if not self._fh.closed:
            self.sync()
            self._fh.close()

    def __enter__(self) -> Quarantine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
