"""Writing source files for tests: catalog trees and listener logs (plain or gzipped)."""

from __future__ import annotations

import gzip
from pathlib import Path


def write_tree(root: Path, files: dict[str, bytes]) -> Path:
    """root/<relpath> for each entry, parents created."""
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return root


def write_log(path: Path, lines: list[bytes], *, gz: bool, trailing_newline: bool = True) -> Path:
    """A log of `lines` joined by newlines; gzip with a fixed mtime, so the bytes are reproducible."""
    data = b"\n".join(lines) + (b"\n" if trailing_newline and lines else b"")
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as fh:
            fh.write(data)
    else:
        path.write_bytes(data)
    return path
