"""Medians, ratios to migrate, the targets from the issues, and the Markdown/JSON result files."""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from pathlib import Path

from bench import peers
from bench.runner import Result, Session

E2E = "migrate end to end"
GROUPS = [
    ("S1", "Mixed catalog: 200 audio files of 1-5 MiB + 2,000 metadata files < 2 KiB (~600 MiB)", E2E),
    ("S1b", "Artwork estate: 600 images of 200 KiB-1 MiB + 5 masters of 20-60 MiB in deep trees (~0.6 GiB)", E2E),
    ("S2", "20,000 small files of 1-4 KiB", E2E),
    ("S3", "Two 256 MiB files", E2E),
    ("S7-S1", "S1 at 30 ms latency (a proxy adds 30 ms to every response)", E2E),
    ("S7-S2", "5,000 small files of 1-4 KiB at 30 ms latency", E2E),
    ("S4", "1,000,000 listener events (~170 B each) in 10 gzipped JSONL files into Pub/Sub", "migrate run"),
    ("S5-verify", "Verify the S1 destination", "migrate verify"),
    ("S5-noop", "No-op re-run of S1 (everything already there)", "migrate run"),
    ("S6", "Inventory of 1,000,000 tiny files", "migrate inventory"),
]
OBJECT_GROUPS = ("S1", "S1b", "S2", "S3", "S7-S1", "S7-S2")
FILES_S, MIB_S = ("files_per_s", "files/s"), ("MiB_per_s", "MiB/s")
THROUGHPUT = {"S1": [MIB_S], "S1b": [MIB_S], "S2": [FILES_S], "S3": [MIB_S], "S7-S1": [FILES_S, MIB_S]}
THROUGHPUT |= {"S7-S2": [FILES_S, MIB_S], "S4": [("events_per_s", "events/s")]}
RCLONE8, RCLONE64, RAW = "rclone copy --transfers 8", "rclone copy --transfers 64", "raw floor"
# (scenario, peer, migrate row compared, minimum peer-time / migrate-time, what the issue asks)
TARGETS = [
    ("S1", RCLONE8, E2E, 1 / 0.7, "issue 15: S1 end to end at most 0.7x rclone's wall time"),
    ("S1", RAW, E2E, 1 / 1.3, "issue 15: S1 end to end at most 1.3x the raw floor's wall time"),
    ("S1b", RCLONE8, E2E, 1 / 0.7, "issue 15: S1b end to end at most 0.7x rclone's wall time"),
    ("S1b", RAW, E2E, 1 / 1.3, "issue 15: S1b end to end at most 1.3x the raw floor's wall time"),
    ("S2", RAW, "migrate run", 0.8, "issue 15: S2 files/s of `migrate run` at least 0.8x the raw floor's"),
    (
        "S2",
        RAW,
        "migrate run (ramp_up = false)",
        0.8,
        "issue 15: the same without the write ramp (GCS's 1,000 writes/s start; the floor has none)",
    ),
    ("S7-S1", RCLONE8, E2E, 2.0, "issue 15: S1 at 30 ms, migrate at least 2x rclone --transfers 8"),
    ("S7-S1", RCLONE64, E2E, 1.0, "issue 15: S1 at 30 ms, migrate at least rclone --transfers 64"),
    ("S7-S2", RCLONE8, E2E, 2.0, "issue 15: S2 at 30 ms, migrate at least 2x rclone --transfers 8"),
    ("S7-S2", RCLONE64, E2E, 1.0, "issue 15: S2 at 30 ms, migrate at least rclone --transfers 64"),
    ("S6", "find -printf", "migrate inventory", 1 / 2.5, "issue 15: inventory of 1,000,000 files within 2.5x find"),
    ("S1", RCLONE8, E2E, 1.0, "issue 4: mixed catalog (end to end) at most rclone's wall time"),
    ("S1", "gcloud storage rsync -r", E2E, 2.0, "issue 4: mixed catalog (end to end) at most half of gcloud's"),
    ("S2", RCLONE8, E2E, 1.0, "issue 4: small files (end to end), files/s at least rclone's"),
    ("S3", RCLONE8, E2E, 1.0, "issue 4: large files (end to end), throughput at least rclone's"),
    ("S4", "PublisherClient loop", "migrate run", 3.0, "issue 5: at least 3x the events/s of a PublisherClient loop"),
    ("S5-verify", "rclone check", "migrate verify", 1.0, "issue 6: verify the mixed catalog as fast as rclone check"),
]
NOTES = {
    "S2": "`migrate end to end (ramp_up = false)` is migrate with its write ramp off. At its defaults a bucket's "
    "object writes start at 1,000/s and double every 20 minutes, as Google's request-rate guidelines ask "
    "(https://cloud.google.com/storage/docs/request-rate), which holds 20,000 files to about 20 s; the raw floor "
    "and the peers do not ramp.",
    "S3": "gcloud runs with parallel composite uploads off: it turns them on for files over 150 MiB, and "
    "they fail on fake-gcs-server.",
    "S1": "The raw floor streams each file as one simple media upload from 8 threads over keep-alive "
    "connections: no checksums, metadata, retries or ledger.",
    "S7-S1": "Every tool talks to fake-gcs-server through a TCP proxy (bench/latency.py) that holds the first "
    "bytes of every response for 30 ms, as a wide-area round trip would; bandwidth is left alone. migrate runs "
    "at its defaults. The destination is checked on the emulator directly.",
    "S4": "Every tool publishes the line as the message data. The PublisherClient loop adds an event_id "
    "attribute; migrate adds event_id, event_time, source, plan_id and listener. migrate's run is checked by "
    "draining the verification subscription (count and a digest of every message's data); the loop and "
    "the ceiling by the message ids the emulator returned.",
    "S5-verify": "rclone check reads and hashes (MD5) every local file and compares with the listing; migrate "
    "verify lists the bucket once and compares sizes and CRC32Cs with the plan's manifest and the run's ledger.",
    "S5-noop": "A no-op run must leave every object at its generation; any rewrite fails the run. migrate "
    "knows from its ledger that the plan is done; rclone and gcloud list the destination and stat every file.",
    "S6": "find prints one line per file and directory; migrate inventory also records every file in its "
    "SQLite ledger.",
}
RSS_LIMIT = 300 * 1000**2  # issue 2: inventory of 1,000,000 files under 300 MB peak RSS


def machine_info() -> dict:
    mem = 0
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    mem = int(line.split()[1]) * 1024
    except OSError:
        pass
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        from migrate import __version__ as migrate_version
    except Exception:
        migrate_version = "unknown"
    try:
        rclone = peers.version([peers.ensure_rclone(install=False), "version"])
    except peers.PeerMissing:
        rclone = "missing"
    try:
        gcloud = peers.version([peers.gcloud(), "version", '--format=value("Google Cloud SDK")'])
    except peers.PeerMissing:
        gcloud = "missing"
    return {
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "cores": os.cpu_count(),
        "memory_bytes": mem,
        "cpu": cpu,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "migrate": migrate_version,
        "rclone": rclone,
        "gcloud": gcloud,
    }


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def summarize(results: list[Result]) -> list[dict]:
    """One row per (scenario, tool): medians over the rounds that finished and verified."""
    rows: dict[tuple[str, str], dict] = {}
    for r in results:
        row = rows.setdefault(
            (r.scenario, r.tool), {"scenario": r.scenario, "tool": r.tool, "aux": r.aux, "runs": 0, "ok": 0, "_r": []}
        )
        row["runs"] += 1
        if r.ok:
            row["ok"] += 1
            row["_r"].append(r)
        else:
            row.setdefault("errors", []).append(f"round {r.round}: {r.error}")
    out = []
    for row in rows.values():
        ok = row.pop("_r")
        row["wall"] = _median([r.wall for r in ok])
        row["wall_range"] = [min(r.wall for r in ok), max(r.wall for r in ok)] if ok else None
        row["cpu"] = _median([r.cpu for r in ok])
        row["peak_rss"] = _median([r.peak_rss for r in ok])
        keys = {k for r in ok for k in r.metrics if isinstance(r.metrics[k], int | float)}
        row["metrics"] = {k: _median([r.metrics[k] for r in ok if k in r.metrics]) for k in sorted(keys)}
        out.append(row)
    for sid, _, base in GROUPS:
        ref = next((r for r in out if r["scenario"] == sid and r["tool"] == base and r["wall"]), None)
        run = next((r for r in out if r["scenario"] == sid and r["tool"] == "migrate run" and r["wall"]), None)
        for row in out:
            if row["scenario"] == sid and not row["aux"]:
                row["time_vs_migrate"] = round(row["wall"] / ref["wall"], 2) if ref and row["wall"] else None
                if sid in OBJECT_GROUPS:
                    row["time_vs_migrate_run"] = round(row["wall"] / run["wall"], 2) if run and row["wall"] else None
    return out


def targets(rows: list[dict]) -> list[dict]:
    found = []
    for sid, peer, basis, need, what in TARGETS:
        row = next((r for r in rows if r["scenario"] == sid and r["tool"] == peer), None)
        base = next((r for r in rows if r["scenario"] == sid and r["tool"] == basis), None)
        if row is None or base is None:
            continue
        ratio = round(row["wall"] / base["wall"], 2) if row.get("wall") and base.get("wall") else None
        met = bool(ratio and ratio >= need)
        found.append(
            {"target": what, "scenario": sid, "peer": peer, "basis": basis, "need": need, "ratio": ratio, "met": met}
        )
    inv = next((r for r in rows if r["scenario"] == "S6" and r["tool"] == "migrate inventory"), None)
    if inv is not None:
        rss = inv.get("peak_rss")
        found.append(
            {
                "target": "issue 2: inventory of 1,000,000 files under 300 MB peak RSS",
                "scenario": "S6",
                "peak_rss": rss,
                "met": bool(rss and rss < RSS_LIMIT),
            }
        )
    return found


def _fmt_s(v: float | None) -> str:
    return "—" if v is None else (f"{v:.2f} s" if v < 100 else f"{v:.0f} s")


def _fmt_rss(v: float | None) -> str:
    return "—" if v is None else f"{v / 2**20:.0f} MiB"


def _fmt_rate(v: float | None) -> str:
    return "—" if v is None else (f"{v:,.1f}" if v < 100 else f"{v:,.0f}")


def _end_to_end(group: list[dict]) -> str | None:
    """migrate's inventory + plan + run (sum of medians), and each peer's time relative to that."""
    parts = {r["tool"]: r["wall"] for r in group if r["tool"] in ("migrate inventory", "migrate plan", "migrate run")}
    if len(parts) != 3 or not all(parts.values()):
        return None
    total = sum(parts.values())
    peers = [
        f"{r['tool']} {r['wall'] / total:.2f}x"
        for r in group
        if not r["aux"] and r["tool"] != "migrate run" and r["wall"]
    ]
    text = f"migrate end to end (inventory + plan + run, sum of medians): {_fmt_s(total)}"
    return text + (f"; relative to that: {', '.join(peers)}." if peers else ".")


OBJECT_NOTE = (
    "`end to end` is the headline: for migrate, `inventory` + `plan` + `run` of the same round, three CLI calls "
    "(each a row below); for the peers, their one command. `x migrate` is a tool's end-to-end wall time divided "
    "by migrate's, `x migrate run` the same against `migrate run` alone (a plan made beforehand)."
)


def _range(r: dict) -> str:
    return "—" if not r["wall_range"] else f"{r['wall_range'][0]:.2f}–{r['wall_range'][1]:.2f}"


def _ratio(v: float | None) -> str:
    return "—" if v is None else f"{v:.2f}"


def _table(group: list[dict], rates: list[tuple[str, str]], obj: bool) -> list[str]:
    """One scenario's table: compared rows first, then migrate's steps (object scenarios) or preparation."""
    if obj:
        head = ["tool", "ok", "end to end", "range", "`run` alone", "CPU", "peak RSS"]
        head += [unit for _, unit in rates] + ["x migrate", "x migrate run"]
    else:
        head = ["tool", "ok", "wall", "wall range", "CPU", "peak RSS"] + [unit for _, unit in rates] + ["x migrate"]
    runs = {r["tool"]: r for r in group if r["tool"].startswith("migrate run")}
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in sorted(group, key=lambda r: r["aux"]):
        step = r["aux"]
        label = r["tool"] + ((" (step)" if obj else " (preparation)") if step else "")
        cells = [label, f"{r['ok']}/{r['runs']}", _fmt_s(r["wall"]), _range(r)]
        if obj:  # an end-to-end row (E2E, or E2E plus a configuration's tag) shows its own run's wall
            run = runs.get("migrate run" + r["tool"][len(E2E) :]) if r["tool"].startswith(E2E) else None
            cells.append(_fmt_s(run["wall"]) if run else "—")
        cells += [_fmt_s(r["cpu"]), _fmt_rss(r["peak_rss"])]
        for key, _ in rates:
            shown = not step or (obj and r["tool"].startswith("migrate run"))
            cells.append(_fmt_rate(r["metrics"].get(key)) if shown else "—")
        cells.append("—" if step else _ratio(r.get("time_vs_migrate")))
        if obj:
            cells.append("—" if step else _ratio(r.get("time_vs_migrate_run")))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def markdown(session: Session, rows: list[dict], tgts: list[dict], machine: dict, finished: float) -> str:
    s = session.s
    mem = machine["memory_bytes"] / 2**30
    lines = [
        f"# Benchmarks {time.strftime('%Y-%m-%d')}" + (" (quick mode: smoke test, sizes are tiny)" if s.quick else ""),
        "",
        f"- machine: {machine['cores']} cores ({machine['cpu']}), {mem:.1f} GiB memory, Linux {machine['kernel']}; "
        f"load average at start {session.load_at_start[0]:.2f}, at end {machine['load_average'][0]:.2f}",
        f"- tools: migrate {machine['migrate']}, {machine['rclone']}, Google Cloud SDK {machine['gcloud']}, "
        f"Python {machine['python']}",
        "- rounds (interleaved, a fresh emulator for every run): "
        + ", ".join(f"{k} {v}" for k, v in s.rounds.items() if k in s.scenarios or (k == "S1" and "S5" in s.scenarios))
        + f"; seed {s.seed}"
        + (f"; sizes scaled by {s.scale}" if s.scale != 1.0 else ""),
        f"- emulator data: {session.emulator_base.parent} (fake-gcs-server's filesystem backend; tmpfs when it is "
        "/dev/shm, so the shared VM disk's flushes do not dominate)",
        f"- reproduce: `{s.command}`",
        f"- total bench time: {finished / 60:.1f} min",
        "",
        "Each run gets a fresh fake-gcs-server (filesystem backend) or Pub/Sub emulator, and counts only if the "
        "destination then holds exactly the data (every object's size and CRC32C; every event once, by a digest "
        "of the message data drained from a subscription created before the run). Figures are medians over the "
        "rounds. CPU is user+sys of the tool's process tree (the emulator's own CPU is not counted); peak RSS is "
        "that of the tool's process tree. `x migrate` is the tool's wall time divided by migrate's: above 1 means "
        "migrate is faster.",
        "",
    ]
    for sid, title, _ in GROUPS:
        group = [r for r in rows if r["scenario"] == sid]
        if not group:
            continue
        rates = THROUGHPUT.get(sid, [])
        obj = sid in OBJECT_GROUPS
        lines += [f"## {sid}: {title}", ""]
        info = session.datasets.get("S1" if sid.startswith("S5") else sid)
        if info:
            size = f"{info['bytes'] / 2**20:,.1f} MiB"
            what = f"{info['files']:,} files, {size}"
            if "events" in info:
                what = f"{info['events']:,} events in {what} gzipped"
            lines += [f"Data: {what}.", ""]
        lines += _table(group, rates, obj)
        if sid == "S4":
            ceiling = next((r for r in group if r["tool"] == "raw publish ceiling"), None)
            if ceiling and ceiling["metrics"].get("events_per_s_publish_phase"):
                lines += [
                    "",
                    f"Raw ceiling, publish phase only (requests pre-built before the clock starts): "
                    f"{_fmt_rate(ceiling['metrics']['events_per_s_publish_phase'])} events/s. "
                    "The events/s column divides by each tool's whole wall time, process start included.",
                ]
        e2e = None if obj else _end_to_end(group)
        if e2e:
            lines += ["", e2e]
        if obj:
            lines += ["", OBJECT_NOTE]
        if sid in NOTES:
            lines += ["", NOTES[sid]]
        errors = [(r["tool"], e) for r in group for e in r.get("errors", [])]
        if errors:
            lines += ["", "Failed runs:", ""] + [f"- {tool}, {e}" for tool, e in errors]
        lines.append("")
    if tgts:
        lines += ["## Targets from the issues", "", "| target | measured | met |", "|---|---|---|"]
        for t in tgts:
            if "ratio" in t:
                got = "—" if t["ratio"] is None else f"{t['peer']} takes {t['ratio']:.2f}x the time of {t['basis']}"
                got += f" (needs >= {t['need']:.2f}x)"
            else:
                got = f"{_fmt_rss(t['peak_rss'])} peak RSS"
            lines.append(f"| {t['target']} | {got} | {'yes' if t['met'] else '**no**'} |")
        lines.append("")
    return "\n".join(lines)


def write(session: Session, machine: dict) -> tuple[Path, Path, str, bool]:
    """Write <out>/<date>.md and .json; returns (md path, json path, markdown, every run ok)."""
    s = session.s
    finished = time.monotonic() - session.started
    rows = summarize(session.results)
    tgts = targets(rows)
    text = markdown(session, rows, tgts, machine, finished)
    s.out.mkdir(parents=True, exist_ok=True)
    stem = time.strftime("%Y-%m-%d")
    full = not s.quick and s.scale == 1.0 and set(s.scenarios) >= {"S1", "S1b", "S2", "S3", "S4", "S5", "S6", "S7"}
    if s.label:
        stem += f"-{s.label}"
    elif not full and not s.quick:
        stem += "-partial"
    md, js = s.out / f"{stem}.md", s.out / f"{stem}.json"
    md.write_text(text + "\n", encoding="utf-8")
    doc = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": s.command,
        "machine": machine,
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(s).items()},
        "seconds": round(finished, 1),
        "summary": rows,
        "targets": tgts,
        "runs": [r.to_dict() for r in session.results],
    }
    js.write_text(json.dumps(doc, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")
    return md, js, text, all(r.ok for r in session.results)
