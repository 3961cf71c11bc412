"""`migrate verify`: prove that every planned object and event arrived.

verify_plan() loads the plan (refusing a tampered one), then
  objects: lists each bucket+prefix once and joins the listing with the plan in SQLite
           (verification/objects.py); with `deep`, re-downloads a seeded sample (verification/deep.py);
  events:  drains each topic's verification subscription, re-reads the source logs and compares
           hashed ids in the ledger (verification/events.py);
and writes plans/<name>.verify.json, .verify.md and the sorted line-per-problem .verify.txt.
It returns the report; the caller decides the exit code (`report.ok`, or `raise_for_report`).
"""

from __future__ import annotations

import time
from pathlib import Path

from migrate.config import Config
from migrate.errors import VerificationFailed
from migrate.ledger import connect
from migrate.ledger.items import register_items
from migrate.plan import Plan, load_plan
from migrate.progress import Event, Reporter, null_reporter
from migrate.quarantine import reasons_by_file
from migrate.retry import describe
from migrate.verification import deep as deep_check
from migrate.verification import drain as draining
from migrate.verification import events, objects
from migrate.verification.drain import DrainSettings
from migrate.verification.model import DeepResult, VerifyReport
from migrate.verification.problems import MATCH, ProblemLines
from migrate.verification.report import report_paths, write_json, write_markdown

__all__ = ["DrainSettings", "VerifyReport", "raise_for_report", "verify_plan"]

TEMP_TABLES = ("verify_listing", "verify_skipped", "verify_deep", "verify_lines", "verify_expected")


def verify_plan(
    cfg: Config,
    plan_path: Path,
    *,
    deep: str | None = None,
    show: int = 20,
    strict: bool = False,
    seed: int = 0,
    report: Reporter = null_reporter,
    include_matches: bool = False,
    drain: DrainSettings | None = None,
    gcs_client=None,
    reader_factory: draining.ReaderFactory | None = None,
) -> VerifyReport:
    """Verify one plan against its buckets and topics; write the report files; return the report.

    deep: a sample size ('50') or share ('5%') of matched objects to re-download and re-hash.
    show: how many names/ids per problem kind the report lists (the .txt listing has them all).
    strict: extra objects under the prefixes (and messages not written by migrate) are errors.
    include_matches: also write `=` lines for every match into the .txt listing.
    """
    plan = load_plan(plan_path)
    if deep is not None:
        deep_check.parse_deep(deep)
    show = max(0, int(show))
    conn = connect(cfg.project.state_dir)
    try:
        register_items(conn, plan)
        rep = VerifyReport(plan.plan_id, plan.name, str(plan.path), strict=strict, show=show, started_at=time.time())
        rep.foreign_is_error = strict
        t0 = time.monotonic()
        lines = ProblemLines(conn, include_matches=include_matches)
        _verify_objects(
            conn,
            cfg,
            plan,
            rep,
            lines,
            deep=deep,
            seed=seed,
            show=show,
            strict=strict,
            report=report,
            gcs_client=gcs_client,
        )
        _verify_events(
            conn,
            cfg,
            plan,
            rep,
            lines,
            show=show,
            settings=drain or DrainSettings(),
            report=report,
            reader_factory=reader_factory,
        )
        rep.problem_counts = lines.counts()
        rep.problems = sum(n for s, n in rep.problem_counts.items() if s != MATCH)
        paths = report_paths(plan.path, plan.name)
        rep.files = {k: str(v) for k, v in paths.items()}
        report(Event("phase", name="writing report"))
        lines.write(paths["txt"])
        rep.duration_s = time.monotonic() - t0
        write_json(rep, paths["json"])
        write_markdown(rep, paths["md"])
        report(Event("finish", data=rep.to_dict()))
        return rep
    finally:
        for t in TEMP_TABLES:
            conn.execute(f"DROP TABLE IF EXISTS temp.{t}")
        conn.close()


def raise_for_report(rep: VerifyReport) -> None:
    """VerificationFailed (exit 1) unless everything matched."""
    if rep.ok:
        return
    why = []
    if rep.objects.failures():
        why.append(f"{rep.objects.failures():,} object problem(s)")
    bad = [e.source for e in rep.events if not e.ok]
    if bad:
        why.append(f"events differ for {', '.join(bad)}")
    if any(d.stopped == "timeout" for d in rep.drains):
        why.append("draining stopped at its time limit")
    if rep.foreign_is_error and any(d.foreign for d in rep.drains):
        why.append("messages not written by migrate (--strict)")
    raise VerificationFailed(
        f"plan {rep.plan_name}: verification failed: {'; '.join(why)}; see {rep.files.get('md', '')}",
        f"the per-path listing is {rep.files.get('txt', '')}; resume with `migrate run` and verify again",
    )


def _verify_objects(
    conn,
    cfg: Config,
    plan: Plan,
    rep: VerifyReport,
    lines: ProblemLines,
    *,
    deep,
    seed,
    show,
    strict,
    report,
    gcs_client,
) -> None:
    o = rep.objects
    objects.setup(conn)
    objects.load_skipped(conn, plan)
    roots = objects.plan_roots(conn, plan.plan_id)
    if not roots:
        return
    if gcs_client is None:
        from migrate.clients import gcs_client as make_client
        from migrate.clients import gcs_endpoint

        impersonate, endpoint = cfg.project.impersonate_service_account, cfg.storage.endpoint
        if deep:  # the deep check downloads through the storage client; the listing needs only the endpoint
            gcs_client = make_client(
                cfg.project.id, pool_size=max(deep_check.MAX_WORKERS, 4), impersonate=impersonate, endpoint=endpoint
            )
        else:
            gcs_client = gcs_endpoint(cfg.project.id, impersonate=impersonate, endpoint=endpoint)
    objects.load_listing(conn, gcs_client, roots, cfg.transfer, o, report)
    report(Event("phase", name="comparing objects"))
    sampler = deep_check.Sampler(conn, seed) if deep else None
    objects.compare(conn, plan.plan_id, o, lines, show=show, strict=strict, sample=sampler)
    if sampler is not None and deep is not None:
        o.deep = DeepResult(spec=deep, seed=seed)

        def on_retry(exc: BaseException, attempt: int) -> None:
            o.retries += 1
            report(Event("retry", name="deep", data={"error": describe(exc)}))

        deep_check.run_deep(
            gcs_client, sampler, o.deep, lines, cfg.transfer, show=show, report=report, on_retry=on_retry
        )
    if o.crc32c_unknown:
        rep.notes.append(
            f"{o.crc32c_unknown:,} object(s) were compared by size only (no CRC32C in the plan: inventory ran "
            "without hashing); `--deep` re-hashes a sample against the listed CRC32C."
        )
    if o.generation_changed:
        rep.notes.append(
            f"{o.generation_changed:,} object(s) were rewritten after the run (live generation differs from the "
            "one the run wrote). Only live generations are listed (no versions=True listing): older generations "
            "kept by bucket versioning are neither listed nor checked."
        )
    if o.extra and not strict:
        rep.notes.append(f"{o.extra:,} extra object(s) under the prefixes are reported only; `--strict` fails on them.")


def _verify_events(
    conn, cfg: Config, plan: Plan, rep: VerifyReport, lines: ProblemLines, *, show, settings, report, reader_factory
) -> None:
    if not events.topics_of(plan):
        return
    before = events.previously_seen(conn, plan.plan_id)
    quarantine = reasons_by_file(cfg.project.state_dir, plan.plan_id)
    # expected first: the drain stops as soon as every expected event has been seen
    expected = events.load_expected(conn, cfg, plan, quarantine, lines, show=show, report=report)
    rep.drains = draining.drain_all(conn, cfg, plan, settings, report, reader_factory)
    report(Event("phase", name="comparing events"))
    rep.events = events.compare(conn, plan.plan_id, expected, lines, show=show, before=before)
    earlier = sum(e.received_before for e in rep.events)
    if earlier:
        rep.notes.append(
            f"{earlier:,} event(s) were drained by an earlier verify of this plan. Draining acks messages, so "
            "they cannot be read twice: verify keeps what it has seen in the ledger (event_ids) and counts them "
            "again here, so re-running verify reports the same result plus anything that arrived since."
        )
    for d in rep.drains:
        rep.notes.append(
            f"draining {d.subscription} stopped: {d.why_stopped()} ({d.received:,} message(s) in {d.seconds:g} s"
            f" over {d.streams} stream(s), {d.rate:,.0f}/s)."
        )
        if d.stopped == "timeout":
            rep.notes.append(
                f"draining {d.subscription} stopped at the time limit with messages still arriving: event counts "
                "are incomplete; run verify again once the run has finished."
            )
        if d.other_plans:
            rep.notes.append(
                f"{d.other_plans:,} message(s) on {d.topic} belong to other plans; they are kept in the ledger "
                "for those plans' verify."
            )
        if d.foreign:
            rep.notes.append(
                f"{d.foreign:,} message(s) on {d.topic} lack migrate's attributes (plan_id, event_id, listener)"
                + ("; an error with --strict." if not rep.strict else ".")
            )
    for e in rep.events:
        if e.duplicates_explained:
            rep.notes.append(
                f"{e.source}: {e.duplicates_explained:,} of {e.duplicates:,} duplicate(s) are explained by "
                f"{e.interrupted_runs} interrupted run(s) (up to {e.in_flight_max:,} events in flight); consumers "
                "deduplicate them by the event_id attribute."
            )
        if e.source_drift:
            rep.notes.append(
                f"{e.source}: the source logs no longer match the inventory (count or id digest): they changed "
                "after planning; expected events are taken from the logs as they are now."
            )
