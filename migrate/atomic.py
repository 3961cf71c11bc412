"""Files written whole or not at all: write a sibling `<name>.tmp`, then `os.replace` it into place."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any


@contextlib.contextmanager
def atomic_open(path: Path | str, mode: str = "w", **kwargs: Any) -> Iterator[IO]:
    """Open `<path>.tmp` for writing; on a clean exit it replaces `path`, on an error it is removed."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    if "b" not in mode:
        kwargs.setdefault("encoding", "utf-8")
    try:
        with open(tmp, mode, **kwargs) as fh:
            yield fh
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def write_text_atomic(path: Path | str, text: str) -> None:
    with atomic_open(path) as fh:
        fh.write(text)
