"""`migrate verify PLAN`: prove every planned object and event arrived; exit 0 only if everything matches."""

from __future__ import annotations

from typing import Annotated

import typer

from migrate.cli.common import ConfigOpt, JsonOpt, QuietOpt, errors_to_exit, print_json, resolve_plan_path

PlanArg = Annotated[str, typer.Argument(help="The plan: plans/<name>.plan.json, or just its name.", show_default=False)]
DeepOpt = Annotated[
    str | None,
    typer.Option(
        "--deep", help="Also re-download and re-hash a seeded random sample of objects: a count (50) or a share (5%)."
    ),
]
ShowOpt = Annotated[int, typer.Option("--show", min=0, help="List up to N names or event ids per kind of problem.")]
StrictOpt = Annotated[
    bool,
    typer.Option("--strict", help="Extra objects under the prefixes, and messages not written by migrate, are errors."),
]
SeedOpt = Annotated[int, typer.Option("--seed", help="Seed of the --deep sample (same seed, same objects).")]
PullTimeoutOpt = Annotated[
    float,
    typer.Option("--pull-timeout", min=0.1, help="Seconds a pull may wait for messages before it counts as empty."),
]
QuietPeriodOpt = Annotated[
    float,
    typer.Option(
        "--quiet-period",
        min=0.0,
        help="Stop draining once nothing arrived for this many seconds and nothing is in flight"
        " (draining stops earlier when every expected event has been seen).",
    ),
]
StreamsOpt = Annotated[int, typer.Option("--streams", min=1, max=64, help="Parallel pull streams per subscription.")]
MatchesOpt = Annotated[
    bool, typer.Option("--matches", help="Also write '= path' lines for matches to the .verify.txt listing.")
]


def register(app: typer.Typer) -> None:
    @app.command("verify")
    @errors_to_exit
    def verify(
        plan: PlanArg,
        deep: DeepOpt = None,
        show_limit: ShowOpt = 20,  # not `show`: that name is the renderer below
        strict: StrictOpt = False,
        seed: SeedOpt = 0,
        matches: MatchesOpt = False,
        pull_timeout: PullTimeoutOpt = 10.0,
        quiet_period: QuietPeriodOpt = 30.0,
        streams: StreamsOpt = 4,
        config: ConfigOpt = None,
        as_json: JsonOpt = False,
        quiet: QuietOpt = False,
    ) -> None:
        """Compare the buckets and topics with the plan: missing, differing, extra objects; missing, duplicate,
        unexpected events. Writes plans/<name>.verify.json, .verify.md and .verify.txt (one line per problem)."""
        from migrate.cli import render
        from migrate.config import load_config
        from migrate.verification.verify import DrainSettings, raise_for_report, verify_plan

        cfg = load_config(config, check_roots=False)
        path = resolve_plan_path(cfg.project.plans_dir, plan)
        with render.status_spinner(f"verifying {path.name}", enabled=not (as_json or quiet)) as spinner:
            rep = verify_plan(
                cfg,
                path,
                deep=deep,
                show=show_limit,
                strict=strict,
                seed=seed,
                report=spinner,
                include_matches=matches,
                drain=DrainSettings(pull_timeout=pull_timeout, quiet_seconds=quiet_period, streams=streams),
            )
        if as_json:
            print_json(rep.to_dict())
        elif not quiet:
            show(rep)
        raise_for_report(rep)


def show(rep) -> None:
    from rich.markup import escape

    from migrate.cli import render
    from migrate.units import format_bytes, format_duration

    verdict = "[bold green]everything matches[/]" if rep.ok else "[bold red]differences found[/]"
    render.info(
        f"[bold]verify {escape(rep.plan_name)}[/]  plan {rep.plan_id}: {verdict}  ({format_duration(rep.duration_s)})"
    )
    o = rep.objects
    if o.listings:
        rows = [
            ("expected", o.planned + o.previously_migrated),
            ("listed", o.listed),
            ("matched", o.matched),
            ("missing", o.missing),
            ("size mismatch", o.size_mismatch),
            ("CRC32C mismatch", o.crc32c_mismatch),
            ("failed in run", o.run_failed),
            ("changed at source", o.source_changed),
            ("conflict", o.conflict),
            ("extra" + ("" if o.extra_is_error else " (reported only)"), o.extra),
            ("size only (no CRC32C)", o.crc32c_unknown),
            ("rewritten since run", o.generation_changed),
        ]
        keep = {"expected", "listed", "matched"}
        render.table("objects", ["", "objects"], [(k, f"{v:,}") for k, v in rows if v or k in keep], right=("objects",))
        if o.deep is not None:
            d = o.deep
            render.info(
                f"deep: re-hashed {d.sampled:,} of {d.candidates:,} ({format_bytes(d.bytes)}): {d.ok:,} ok, "
                f"{d.corrupt:,} corrupt, {d.errors:,} errors"
            )
        shown = [(k.replace("_", " "), v) for k, v in o.examples.items() if k != "crc32c_unknown"]
        if o.deep is not None:
            shown += [("corrupt (deep)", o.deep.corrupt_names), ("download error (deep)", o.deep.error_names)]
        for label, names in shown:
            for n in names:
                render.info(f"  {label}: {escape(n)}")
    if rep.events:
        render.table(
            "events",
            ["source", "expected", "received", "missing", "duplicates", "unexpected", "digest"],
            [
                (
                    e.source,
                    f"{e.expected_events:,}",
                    f"{e.received_events:,}",
                    f"{e.missing:,}",
                    f"{e.duplicates:,}"
                    + (f" ({e.duplicates_explained:,} explained)" if e.duplicates_explained else ""),
                    f"{e.unexpected:,}",
                    "match" if e.digest_match else "differs",
                )
                for e in rep.events
            ],
            right=("expected", "received", "missing", "duplicates", "unexpected"),
        )
        for e in rep.events:
            for kind in ("missing", "duplicates", "unexpected", "run_failed"):
                for eid in e.examples.get(kind, []):
                    render.info(f"  {escape(e.source)} {kind.replace('_', ' ')}: {escape(eid)}")
            for u in e.unreadable:
                render.info(f"  {escape(e.source)} unreadable: {escape(u)}")
    for note in rep.notes:
        render.info(f"[dim]note:[/] {escape(note)}")
    render.info(
        f"report {escape(rep.files['md'])}, listing {escape(rep.files['txt'])} ({rep.problems:,} problem lines)"
    )
