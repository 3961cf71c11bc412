"""Bulk inserts into the ledger from a second process, so that producing rows and storing them overlap.

A first inventory of a large tree spends about as long in SQLite as in the walk itself; in one
process the two take turns (threads do not help: every row is bound under the GIL). BulkWriter
starts `python -m migrate.ledger.bulk`, which opens its own connection to the ledger and runs one of
its INSERT statements over each batch of rows it is sent (one transaction per batch) while the caller
goes on walking. The pipe bounds memory: a caller that gets ahead waits in send. Batches travel in
marshal's format (the child is the same interpreter): plain tuples of str and int, dumped 4x faster
than by pickle. Each is framed by its length and loaded from bytes (marshal.load from a stream reads
it a field at a time).

Only the caller's rows go through the child: the caller must not write to the ledger until close()
returns (SQLite has one writer at a time; the child would wait for the caller's lock, and the
caller for the child). It may read every row once stored() returns.
"""

from __future__ import annotations

import io
import marshal
import sqlite3
import struct
import subprocess
import sys

from migrate.ledger.schema import LedgerError, transaction

try:
    import fcntl
except ImportError:  # not on Windows
    fcntl = None

_STDERR_TAIL = 2000
_PIPE_BYTES = 1 << 20
_LENGTH = struct.Struct("<Q")  # the frame of each message: its length in bytes


class BulkWriter:
    """Runs `sql` (one statement or several) over batches of rows in a child process connected to the
    ledger at `db_path`."""

    def __init__(self, db_path: str, sql: str | list[str], *, reindex: str | None = None) -> None:
        """reindex: a table the caller knows to be empty and is the only one to fill: its secondary indexes
        are dropped while the rows go in and built again, in one sort each, after the last batch (a few
        times less work than keeping them up to date row by row; close() waits for it). If the child dies
        first, the index is missing until the ledger is next opened: schema.connect() creates every
        missing index."""
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "migrate.ledger.bulk", db_path],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        _widen(self._proc.stdin)
        self._stored = False
        self._send(([sql] if isinstance(sql, str) else list(sql), reindex))

    def write(self, rows: list[tuple], statement: int = 0) -> None:
        """Queue one batch for sql[statement] (one transaction in the child); blocks while the child is a
        batch behind."""
        self._send((statement, rows))

    def stored(self) -> None:
        """Wait until every batch is committed (an index may still be building); close() must follow."""
        if self._stored:
            return
        self._stored = True
        try:
            self._send(None)
            self._proc.stdin.close()
        except LedgerError:
            return  # the child's own error is the one close() reports
        self._proc.stdout.read(1)  # the child's signal, or nothing if it failed

    def close(self) -> None:
        """Wait until every batch is committed and the child is done; LedgerError if it failed."""
        self.stored()
        err = self._proc.stderr.read()
        if self._proc.wait() != 0:
            raise LedgerError(
                f"bulk insert into the ledger failed: {_last_line(err)}",
                "check that project.state_dir has free space and is not used by another migrate",
            )

    def abort(self) -> None:
        """Stop the child (an error in the caller); batches not yet committed are lost."""
        self._proc.kill()
        self._proc.wait()

    def _send(self, obj) -> None:
        try:
            data = marshal.dumps(obj)
            self._proc.stdin.write(_LENGTH.pack(len(data)))
            self._proc.stdin.write(data)
            self._proc.stdin.flush()
        except (BrokenPipeError, OSError):
            err = self._proc.stderr.read()
            self._proc.wait()
            raise LedgerError(
                f"bulk insert into the ledger failed: {_last_line(err)}",
                "check that project.state_dir has free space and is not used by another migrate",
            ) from None


def _last_line(err: bytes) -> str:
    lines = err.decode("utf-8", "replace").strip().splitlines()
    return lines[-1][-_STDERR_TAIL:] if lines else "the writer process ended"


def serve(db_path: str, source, sink=sys.stderr, done=None) -> int:
    """The child: the first object read is (statements, table to reindex or None), then (statement, rows)
    until None."""
    done = done if done is not None else io.BytesIO()
    conn = sqlite3.connect(db_path, timeout=30, isolation_level=None)
    conn.execute("PRAGMA synchronous=NORMAL")  # the ledger is in WAL mode already (schema.connect)
    conn.execute("PRAGMA busy_timeout=30000")
    try:
        sql, reindex = _receive(source)
        indexes = _drop_indexes(conn, reindex) if reindex else []
        while (batch := _receive(source)) is not None:
            with transaction(conn):
                conn.executemany(sql[batch[0]], batch[1])
        done.write(b".")  # every row is committed: the caller may read them while the indexes build
        done.flush()
        with transaction(conn):
            for create in indexes:
                conn.execute(create)
    except EOFError:
        print("the caller went away before the last batch", file=sink)
        return 1
    except (sqlite3.Error, OSError, ValueError, TypeError) as exc:
        print(f"{type(exc).__name__}: {exc}", file=sink)
        return 1
    finally:
        conn.close()
    return 0


def _widen(pipe) -> None:
    """Let the pipe hold a few batches (Linux: 64 KiB by default, a quarter of one), so that the walk
    goes on while the writer is off the CPU for a moment; memory stays bounded by the pipe."""
    setsize = getattr(fcntl, "F_SETPIPE_SZ", None) if fcntl is not None else None
    if setsize is None:
        return
    try:
        fcntl.fcntl(pipe.fileno(), setsize, _PIPE_BYTES)
    except OSError:
        pass  # above /proc/sys/fs/pipe-max-size for this user: the default size works, a little slower


def _drop_indexes(conn: sqlite3.Connection, table: str) -> list[str]:
    """Drop the secondary indexes of `table`; returns the statements that create them again."""
    with transaction(conn):
        rows = conn.execute(
            "SELECT name, sql FROM sqlite_master WHERE type='index' AND tbl_name=? AND sql IS NOT NULL", (table,)
        ).fetchall()
        for name, _ in rows:
            conn.execute(f'DROP INDEX "{name}"')
    return [create for _, create in rows]


def _receive(source):
    head = source.read(_LENGTH.size)
    if len(head) < _LENGTH.size:
        raise EOFError
    (length,) = _LENGTH.unpack(head)
    data = source.read(length)
    if len(data) < length:
        raise EOFError
    return marshal.loads(data)


if __name__ == "__main__":
    sys.exit(serve(sys.argv[1], sys.stdin.buffer, done=sys.stdout.buffer))
