"""The plan's numbers, aggregated in SQL from temp.plan_obj / temp.plan_ev (never row by row in Python)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from migrate.config import STORAGE_CLASSES, Config
from migrate.plan import DONE_SKIP_REASONS, SKIP_REASONS
from migrate.planning.batching import batch_stats
from migrate.planning.costs import plan_costs
from migrate.planning.estimate import storage_costs, transfer_estimate
from migrate.planning.listing import BucketListing

EXAMPLES = 10


def planned_objects(conn: sqlite3.Connection) -> Iterator[sqlite3.Row]:
    """Planned catalog files in plan order (the table's primary key order: source, relpath)."""
    return conn.execute("SELECT * FROM plan_obj WHERE code IS NULL ORDER BY ord, relpath")


def planned_logs(conn: sqlite3.Connection) -> Iterator[sqlite3.Row]:
    return conn.execute("SELECT * FROM plan_ev WHERE code IS NULL ORDER BY ord, path")


def object_batches(conn: sqlite3.Connection, cfg: Config):
    return batch_stats(
        planned_objects(conn),
        size=lambda r: r["size"],
        key=lambda r: r["ord"],
        max_files=cfg.transfer.batch_max_files,
        max_bytes=cfg.transfer.batch_max_bytes,
    )


@dataclass(frozen=True)
class Cell:
    """One group of plan_obj rows: the whole catalog side of the summary comes from one GROUP BY scan."""

    source: str
    bucket: str
    storage_class: str
    code: str | None
    overwrite: bool
    done_before: bool
    unhashed: bool
    is_file: bool
    files: int
    bytes: int


def _cells(conn: sqlite3.Connection) -> list[Cell]:
    rows = conn.execute(
        "SELECT source, bucket, storage_class, code, overwrite, done_before, crc32c IS NULL, kind = 'file',"
        " COUNT(*), SUM(size) FROM plan_obj GROUP BY 1, 2, 3, 4, 5, 6, 7, 8 ORDER BY 1, 2, 3, 4, 5, 6, 7, 8"
    )
    return [Cell(*r[:3], r[3], *(bool(v) for v in r[4:8]), r[8], int(r[9] or 0)) for r in rows]


def _tally(cells: list[Cell], pred: Callable[[Cell], bool]) -> dict:
    chosen = [c for c in cells if pred(c)]
    return {"files": sum(c.files for c in chosen), "bytes": sum(c.bytes for c in chosen)}


def _planned(c: Cell) -> bool:
    return c.code is None


def _done(c: Cell) -> bool:
    return c.code in DONE_SKIP_REASONS


def build_summary(
    conn: sqlite3.Connection, cfg: Config, listings: list[BucketListing], *, snapshot: sqlite3.Row, conflicts: int
) -> dict:
    cells = _cells(conn)
    batches = object_batches(conn, cfg)
    objects = _tally(cells, _planned)
    objects.update(
        batches=batches.batches,
        largest_batch_files=batches.largest_files,
        largest_batch_bytes=batches.largest_bytes,
        files_over_batch_max_bytes=batches.oversized,
        overwrite=_tally(cells, lambda c: _planned(c) and c.overwrite)["files"],
        missing_after_earlier_run=_tally(cells, lambda c: _planned(c) and c.done_before)["files"],
    )
    events = _events(conn, cfg)
    by_reason: dict[str, dict] = {}
    for code in sorted({c.code for c in cells if c.code}):
        by_reason[code] = {**_tally(cells, lambda c, code=code: c.code == code), "description": SKIP_REASONS[code]}
    for code, n, b in conn.execute(
        "SELECT code, COUNT(*), SUM(size) FROM plan_ev WHERE code IS NOT NULL GROUP BY code"
    ):
        by_reason[code] = {"files": n, "bytes": int(b or 0), "description": SKIP_REASONS[code]}
    by_reason = dict(sorted(by_reason.items()))
    skipped = {
        "files": sum(v["files"] for v in by_reason.values()),
        "bytes": sum(v["bytes"] for v in by_reason.values()),
        "by_reason": by_reason,
    }
    done = [v for c, v in by_reason.items() if c in DONE_SKIP_REASONS]
    skipped["not_done"] = {  # skipped for a reason other than "the destination already has it"
        "files": skipped["files"] - sum(v["files"] for v in done),
        "bytes": skipped["bytes"] - sum(v["bytes"] for v in done),
    }
    unhashed = _tally(cells, lambda c: c.is_file and c.unhashed)["files"]
    regular = _tally(cells, lambda c: c.is_file)["files"]
    inventoried = _tally(cells, lambda c: True)
    inventoried["log_files"] = conn.execute("SELECT COUNT(*) FROM plan_ev").fetchone()[0]

    classes: dict[str, dict] = {}
    stored = {
        sc: _tally(cells, lambda c, sc=sc: c.storage_class == sc and (_planned(c) or _done(c)))["bytes"]
        for sc in STORAGE_CLASSES
        if any(c.storage_class == sc for c in cells)
    }
    costs = storage_costs(cfg, stored)
    for sc in stored:
        planned = _tally(cells, lambda c, sc=sc: c.storage_class == sc and _planned(c))
        classes[sc] = {**planned, "stored_bytes": stored[sc], **costs[sc]}

    estimates = transfer_estimate(cfg, objects["files"], objects["bytes"], events["events"], events["publish_requests"])
    estimates["monthly_storage_cost"] = round(sum(c["monthly_cost"] for c in classes.values()), 6)
    costs = plan_costs(conn, cfg)
    estimates["run_and_verify_cost"] = costs["run_and_verify_cost"]
    estimates["deep_verify_all_cost"] = costs["deep_verify_all_cost"]

    summary = {
        "objects": objects,
        "events": events,
        "inventoried": inventoried,
        "already_migrated": _tally(cells, _done),
        "skipped": skipped,
        "compare": {
            "by": "crc32c" if unhashed == 0 else ("size" if unhashed == regular else "crc32c+size"),
            "unhashed_files": unhashed,
            "size_only_matches": _tally(cells, lambda c: c.code == "already-migrated" and c.unhashed)["files"],
        },
        "conflicts": {"policy": cfg.transfer.conflict_policy, "count": conflicts},
        "catalog_sources": _catalog_sources(cells, cfg),
        "listener_sources": _listener_sources(conn, cfg),
        "buckets": _buckets(cells, listings),
        "storage_classes": classes,
        "estimates": estimates,
        "costs": costs,
        "examples": _examples(conn),
        "malformed_examples": _malformed_examples(conn),
    }
    summary["warnings"] = _warnings(cfg, snapshot, summary)
    return summary


def _events(conn: sqlite3.Connection, cfg: Config) -> dict:
    m = max(1, cfg.pubsub.batch_max_messages)
    ev = conn.execute(
        "SELECT COUNT(*), SUM(events), SUM(event_bytes), SUM(malformed), SUM(oversized), SUM((events + ? - 1) / ?)"
        " FROM plan_ev WHERE code IS NULL",
        (m, m),
    ).fetchone()
    return {
        "files": ev[0],
        "events": int(ev[1] or 0),
        "bytes": int(ev[2] or 0),
        "malformed": int(ev[3] or 0),
        "oversized": int(ev[4] or 0),
        "batches": ev[0],
        "publish_requests": int(ev[5] or 0),
    }


def _catalog_sources(cells: list[Cell], cfg: Config) -> list[dict]:
    out = []
    for src in cfg.catalog:
        mine = [c for c in cells if c.source == src.name]
        out.append(
            {
                "name": src.name,
                "root": str(src.root),
                "bucket": src.bucket,
                "prefix": src.prefix,
                "storage_class": src.storage_class,
                "inventoried": _tally(mine, lambda c: True),
                "planned": _tally(mine, _planned),
                "already_migrated": _tally(mine, _done),
                "skipped": _tally(mine, lambda c: not _planned(c) and not _done(c)),
            }
        )
    return out


def _listener_sources(conn: sqlite3.Connection, cfg: Config) -> list[dict]:
    out = []
    for src in cfg.listeners:
        row = conn.execute(
            "SELECT COUNT(*), SUM(events), SUM(event_bytes), SUM(malformed), SUM(oversized), SUM(size),"
            " SUM(changed_since_replay), SUM(start_offset > 0), SUM(start_offset)"
            " FROM plan_ev WHERE source = ? AND code IS NULL",
            (src.name,),
        ).fetchone()
        total, replayed = conn.execute(
            "SELECT COUNT(*), SUM(code = 'replayed-earlier') FROM plan_ev WHERE source = ?", (src.name,)
        ).fetchone()
        out.append(
            {
                "name": src.name,
                "topic": src.topic,
                "format": src.format,
                "log_files": total,
                "planned_files": row[0],
                "events": int(row[1] or 0),
                "event_bytes": int(row[2] or 0),
                "malformed": int(row[3] or 0),
                "oversized": int(row[4] or 0),
                "file_bytes": int(row[5] or 0),
                "replayed_earlier": int(replayed or 0),
                "changed_since_replay": int(row[6] or 0),
                "appended_since_replay": int(row[7] or 0),
                "bytes_replayed_before": int(row[8] or 0),
            }
        )
    return out


def _buckets(cells: list[Cell], listings: list[BucketListing]) -> list[dict]:
    return [
        {
            "bucket": lst.bucket,
            "exists": lst.exists,
            "listed_objects": lst.objects,
            "prefixes": list(lst.prefixes),
            **_tally(cells, lambda c, b=lst.bucket: c.bucket == b and _planned(c)),
        }
        for lst in listings
    ]


def _examples(conn: sqlite3.Connection) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for table, col in (("plan_obj", "relpath"), ("plan_ev", "path")):
        codes = [r[0] for r in conn.execute(f"SELECT DISTINCT code FROM {table} WHERE code IS NOT NULL ORDER BY code")]
        for code in codes:
            rows = conn.execute(
                f"SELECT source, {col}, size, detail FROM {table} WHERE code = ? ORDER BY ord, {col} LIMIT ?",
                (code, EXAMPLES),
            )
            out[code] = [{"source": r[0], "relpath": r[1], "size": r[2], "detail": r[3]} for r in rows]
    return dict(sorted(out.items()))


def _malformed_examples(conn: sqlite3.Connection) -> list[dict]:
    rows = conn.execute(
        "SELECT b.source, b.path, b.line, b.reason FROM bad_lines b"
        " JOIN plan_ev e ON e.source = b.source AND e.path = b.path AND e.code IS NULL"
        " ORDER BY e.ord, b.path, b.line LIMIT ?",
        (EXAMPLES,),
    )
    return [{"source": r[0], "path": r[1], "line": r[2], "reason": r[3]} for r in rows]


def _warnings(cfg: Config, snapshot: sqlite3.Row, s: dict) -> list[str]:
    from migrate.planning.tfvars import storage_class_conflicts

    out: list[str] = []
    if snapshot["config_digest"] != cfg.digest():
        out.append(
            f"the config changed since inventory snapshot {snapshot['id']}; if sources, roots or globs changed,"
            " run `migrate inventory` again"
        )
    for src in s["catalog_sources"]:
        if src["inventoried"]["files"] == 0:
            out.append(
                f"catalog source '{src['name']}' has no inventoried entries (empty, or added after the inventory)"
            )
    for src in s["listener_sources"]:
        if src["log_files"] == 0:
            out.append(
                f"listener '{src['name']}' has no inventoried log files (none matched, or added after the inventory)"
            )
        if src["appended_since_replay"]:
            out.append(
                f"listener '{src['name']}': {src['appended_since_replay']} log file(s) grew after an earlier run"
                " replayed them; only the lines appended since are planned (start_offset in the manifest)"
            )
        if src["changed_since_replay"]:
            out.append(
                f"listener '{src['name']}': {src['changed_since_replay']} log file(s) changed after an earlier run"
                " replayed them; replaying them again re-publishes their events (consumers dedupe by event_id)"
            )
    if s["compare"]["unhashed_files"]:
        out.append(
            f"{s['compare']['unhashed_files']} file(s) were inventoried without --hash: objects already in a bucket"
            " were compared by size only; run `migrate inventory --hash` for CRC32C comparison"
        )
    missing = [b["bucket"] for b in s["buckets"] if not b["exists"]]
    if missing:
        out.append(
            f"{len(missing)} bucket(s) do not exist yet ({', '.join(missing)}); create them from the plan's"
            " .tfvars.json before `migrate run`"
        )
    if s["objects"]["missing_after_earlier_run"]:
        out.append(
            f"{s['objects']['missing_after_earlier_run']} object(s) that an earlier run copied are no longer in their"
            " bucket (deleted after migration?); they are planned again"
        )
    if s["objects"]["overwrite"]:
        out.append(f"{s['objects']['overwrite']} object(s) in the buckets differ and will be overwritten")
    for bucket, classes in storage_class_conflicts(cfg).items():
        out.append(
            f"bucket {bucket}: sources ask for storage classes {', '.join(classes)}; the bucket default is the warmest"
        )
    return out
