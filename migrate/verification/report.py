"""Write plans/<name>.verify.json and plans/<name>.verify.md (the listing .verify.txt is problems.py)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from migrate.plan import write_text_atomic
from migrate.units import format_bytes, format_duration
from migrate.verification.model import EventSourceResult, VerifyReport


def report_paths(plan_path: Path, name: str) -> dict[str, Path]:
    base = Path(plan_path).parent
    return {
        "json": base / f"{name}.verify.json",
        "md": base / f"{name}.verify.md",
        "txt": base / f"{name}.verify.txt",
    }


def write_json(rep: VerifyReport, path: Path) -> None:
    write_text_atomic(path, json.dumps(rep.to_dict(), indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def write_markdown(rep: VerifyReport, path: Path) -> None:
    write_text_atomic(path, render_markdown(rep))


def _code(text: str) -> str:
    text = text.replace("\n", "\\n").replace("|", "\\|")
    return f"`` {text} ``" if "`" in text else f"`{text}`"


def _n(v: int) -> str:
    return f"{v:,}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out + [""]


def _examples(title: str, names: list[str], total: int) -> list[str]:
    if not names:
        return []
    more = f" (first {len(names)} of {_n(total)})" if total > len(names) else ""
    return [f"**{title}**{more}:", ""] + [f"- {_code(n)}" for n in names] + [""]


def render_markdown(rep: VerifyReport) -> str:
    when = datetime.fromtimestamp(rep.started_at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    verdict = "PASS: everything matches" if rep.ok else "FAIL: differences found"
    lines = [
        f"# Verification of plan {_code(rep.plan_name)}",
        "",
        f"- Plan id: `{rep.plan_id}` ({_code(rep.plan_path)})",
        f"- Verified: {when}, in {format_duration(rep.duration_s)}",
        f"- Strict: {'yes (extra objects are errors)' if rep.strict else 'no (extra objects are reported only)'}",
        f"- **Result: {verdict}**",
        "",
    ]
    lines += _objects(rep)
    lines += _events(rep)
    counts = ", ".join(f"`{s}` {_n(n)}" for s, n in rep.problem_counts.items())
    txt = Path(rep.files.get("txt", "")).name
    lines += [
        "## Listing",
        "",
        f"One line per problem in `{txt}`, sorted by path: `+` missing at the destination, `*` differs, "
        f"`-` only at the destination, `!` error. Lines: {counts or 'none'}.",
        "",
    ]
    if rep.notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in rep.notes] + [""]
    return "\n".join(lines)


def _objects(rep: VerifyReport) -> list[str]:
    o = rep.objects
    if not (o.planned or o.previously_migrated or o.listings):
        return []
    rows = [
        ["Planned (manifest)", _n(o.planned)],
        ["Already migrated before the plan (checked too)", _n(o.previously_migrated)],
        ["Listed under the prefixes", _n(o.listed)],
        ["Matched (size and CRC32C)", _n(o.matched)],
        ["Missing", _n(o.missing)],
        ["Size mismatch", _n(o.size_mismatch)],
        ["CRC32C mismatch", _n(o.crc32c_mismatch)],
        ["Failed in the run", _n(o.run_failed)],
        ["Changed at source during the run", _n(o.source_changed)],
        ["Conflict (bucket holds other content)", _n(o.conflict)],
        [
            f"Extra (only at the destination; {'error' if o.extra_is_error else 'not an error without --strict'})",
            _n(o.extra),
        ],
        ["Matched by size only (no CRC32C to compare)", _n(o.crc32c_unknown)],
        ["Rewritten since the run (live generation differs)", _n(o.generation_changed)],
    ]
    out = ["## Objects", ""] + _table(["", "Objects"], rows)
    out += _table(
        ["Bucket", "Prefix", "Objects listed", "Pages"],
        [[_code(li.bucket), _code(li.prefix or "(whole bucket)"), _n(li.objects), _n(li.pages)] for li in o.listings],
    )
    if o.deep is not None:
        d = o.deep
        out += [
            f"**Deep check** (`--deep {d.spec}`, seed {d.seed}): re-downloaded {_n(d.sampled)} of {_n(d.candidates)} "
            f"matched objects ({format_bytes(d.bytes)}): {_n(d.ok)} ok, {_n(d.corrupt)} corrupt "
            f"({_n(d.metadata_mismatch)} whose bytes no longer match their listed CRC32C), {_n(d.errors)} errors.",
            "",
        ]
        out += _examples("Corrupt", d.corrupt_names, d.corrupt)
        out += _examples("Download errors", d.error_names, d.errors)
    titles = {
        "missing": ("Missing", o.missing),
        "size_mismatch": ("Size mismatch", o.size_mismatch),
        "crc32c_mismatch": ("CRC32C mismatch", o.crc32c_mismatch),
        "run_failed": ("Failed in the run", o.run_failed),
        "source_changed": ("Changed at source", o.source_changed),
        "conflict": ("Conflict", o.conflict),
        "extra": ("Extra", o.extra),
        "generation_changed": ("Rewritten since the run", o.generation_changed),
    }
    for key, (title, total) in titles.items():
        out += _examples(title, o.examples.get(key, []), total)
    return out


def _events(rep: VerifyReport) -> list[str]:
    if not rep.events and not rep.drains:
        return []
    out = ["## Events", ""]
    out += _table(
        [
            "Source",
            "Topic",
            "Inventory",
            "Quarantined",
            "Expected",
            "Received",
            "Missing",
            "Duplicates (explained)",
            "Unexpected",
            "Digest",
        ],
        [_event_row(e) for e in rep.events],
    )
    if rep.drains:
        out += _table(
            ["Subscription", "Pulls", "Read", "New", "Acked", "This plan", "Other plans", "Foreign", "Stopped"],
            [
                [
                    _code(d.subscription),
                    _n(d.pulls),
                    _n(d.received),
                    _n(d.new),
                    _n(d.acked),
                    _n(d.this_plan),
                    _n(d.other_plans),
                    _n(d.foreign),
                    d.stopped,
                ]
                for d in rep.drains
            ],
        )
    for e in rep.events:
        out += _examples(f"{e.source}: missing event ids", e.examples.get("missing", []), e.missing)
        out += _examples(f"{e.source}: duplicated event ids", e.examples.get("duplicates", []), e.duplicates)
        out += _examples(f"{e.source}: unexpected event ids", e.examples.get("unexpected", []), e.unexpected)
        out += _examples(
            f"{e.source}: log files failed or changed in the run", e.examples.get("run_failed", []), e.run_failed
        )
        out += _examples(f"{e.source}: unreadable log files", e.unreadable, len(e.unreadable))
    return out


def _event_row(e: EventSourceResult) -> list[str]:
    digest = "match" if e.digest_match else "differs"
    return [
        _code(e.source),
        _code(e.topic) if e.topic else "",
        f"{_n(e.inventory_events)} `{e.inventory_digest}`",
        f"{_n(e.quarantined)} ({_n(e.quarantined_valid)} valid)",
        f"{_n(e.expected_events)} `{e.expected_digest}`",
        f"{_n(e.received_events)} `{e.received_digest}`",
        _n(e.missing),
        f"{_n(e.duplicates)} ({_n(e.duplicates_explained)})",
        _n(e.unexpected),
        digest,
    ]
