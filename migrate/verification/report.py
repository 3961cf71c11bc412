"""Write plans/<name>.verify.json and plans/<name>.verify.md (the listing .verify.txt is problems.py)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from migrate import markdown as md
from migrate.atomic import write_text_atomic
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


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return md.table(header, ([md.Md(c) for c in r] for r in rows)) + [""]


def _examples(title: str, names: list[str], total: int) -> list[str]:
    if not names:
        return []
    more = f" (first {len(names)} of {md.num(total)})" if total > len(names) else ""
    return [f"**{title}**{more}:", ""] + [f"- {md.code(n)}" for n in names] + [""]


def render_markdown(rep: VerifyReport) -> str:
    when = datetime.fromtimestamp(rep.started_at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    verdict = "PASS: everything matches" if rep.ok else "FAIL: differences found"
    lines = [
        f"# Verification of plan {md.code(rep.plan_name)}",
        "",
        f"- Plan id: `{rep.plan_id}` ({md.code(rep.plan_path)})",
        f"- Verified: {when}, in {format_duration(rep.duration_s)}",
        f"- Strict: {'yes (extra objects are errors)' if rep.strict else 'no (extra objects are reported only)'}",
        f"- **Result: {verdict}**",
        "",
    ]
    lines += _objects(rep)
    lines += _events(rep)
    counts = ", ".join(f"`{s}` {md.num(n)}" for s, n in rep.problem_counts.items())
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
        ["Planned (manifest)", md.num(o.planned)],
        ["Already migrated before the plan (checked too)", md.num(o.previously_migrated)],
        ["Listed under the prefixes", md.num(o.listed)],
        ["Matched (size and CRC32C)", md.num(o.matched)],
        ["Missing", md.num(o.missing)],
        ["Size mismatch", md.num(o.size_mismatch)],
        ["CRC32C mismatch", md.num(o.crc32c_mismatch)],
        ["Failed in the run", md.num(o.run_failed)],
        ["Changed at source during the run", md.num(o.source_changed)],
        ["Conflict (bucket holds other content)", md.num(o.conflict)],
        [
            f"Extra (only at the destination; {'error' if o.extra_is_error else 'not an error without --strict'})",
            md.num(o.extra),
        ],
        ["Matched by size only (no CRC32C to compare)", md.num(o.crc32c_unknown)],
        ["Rewritten since the run (live generation differs)", md.num(o.generation_changed)],
    ]
    out = ["## Objects", ""] + _table(["", "Objects"], rows)
    out += _table(
        ["Bucket", "Prefix", "Objects listed", "Pages"],
        [
            [md.code(li.bucket), md.code(li.prefix or "(whole bucket)"), md.num(li.objects), md.num(li.pages)]
            for li in o.listings
        ],
    )
    if o.deep is not None:
        d = o.deep
        out += [
            f"**Deep check** (`--deep {d.spec}`, seed {d.seed}): re-downloaded {md.num(d.sampled)} of"
            f" {md.num(d.candidates)} matched objects ({format_bytes(d.bytes)}): {md.num(d.ok)} ok,"
            f" {md.num(d.corrupt)} corrupt ({md.num(d.metadata_mismatch)} whose bytes no longer match their listed"
            f" CRC32C), {md.num(d.errors)} errors.",
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
            ["Subscription", "Pulls", "Read", "New", "Acked", "This plan", "Other plans", "Foreign", "Rate", "Stopped"],
            [
                [
                    md.code(d.subscription),
                    md.num(d.pulls),
                    md.num(d.received),
                    md.num(d.new),
                    md.num(d.acked),
                    md.num(d.this_plan),
                    md.num(d.other_plans),
                    md.num(d.foreign),
                    f"{md.num(round(d.rate))}/s, {d.streams} streams",
                    f"{d.stopped}: {d.why_stopped()}",
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
        md.code(e.source),
        md.code(e.topic) if e.topic else "",
        f"{md.num(e.inventory_events)} `{e.inventory_digest}`",
        f"{md.num(e.quarantined)} ({md.num(e.quarantined_valid)} valid)",
        f"{md.num(e.expected_events)} `{e.expected_digest}`",
        f"{md.num(e.received_events)} `{e.received_digest}`",
        md.num(e.missing),
        f"{md.num(e.duplicates)} ({md.num(e.duplicates_explained)})",
        md.num(e.unexpected),
        digest,
    ]
