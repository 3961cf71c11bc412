"""python -m bench: run the side-by-side benchmarks and write bench/results/<date>.md and .json.

    python -m bench                    # the full run (S1-S7; rounds: 3 each, S4 2, S6 1)
    python -m bench --quick            # every scenario at tiny size, 1 round: a smoke test
    python -m bench --scenarios S2,S4 --rounds 1 --scale 0.1

Exit 0 when every run finished and its destination verified; 1 otherwise (a tool that is missing,
failed, or copied nothing or only part of the data); 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

from bench.peers import PeerMissing, ensure_gnu_time, ensure_rclone, gcloud
from bench.runner import REPO, Session, Settings

ALL = ["S1", "S1b", "S2", "S3", "S4", "S5", "S6", "S7"]
# Default rounds: at least 3 wherever a target is judged (medians); the event scenario's slowest peer
# takes minutes per round. S5 rides on S1's rounds.
ROUNDS = {"S1": 3, "S1b": 3, "S2": 3, "S3": 3, "S4": 2, "S6": 1, "S7": 3}


def parse_args(argv: list[str]) -> Settings:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes, 1 round: checks only that every tool works")
    ap.add_argument("--rounds", type=int, default=None, help="rounds of every scenario but S6 (default: 3, S4 2)")
    ap.add_argument("--s6-rounds", type=int, default=1, help="rounds of S6 (default 1)")
    ap.add_argument("--scenarios", default=",".join(ALL), help="comma-separated subset of " + ",".join(ALL))
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--scale", type=float, default=1.0, help="scale the full sizes (development only)")
    ap.add_argument("--work", type=Path, default=REPO / "bench" / ".work", help="cached data and run directories")
    ap.add_argument("--out", type=Path, default=None, help="where results go (default bench/results)")
    ap.add_argument("--timeout", type=float, default=None, help="seconds before one tool run is killed")
    ap.add_argument("--raw-threads", type=int, default=8, help="threads of the raw floor uploader")
    ap.add_argument(
        "--emulator-dir", type=Path, default=None, help="where fake-gcs-server keeps its data (default: /dev/shm)"
    )
    ap.add_argument("--migrate-workers", type=int, default=None, help="override migrate's [transfer] workers")
    ap.add_argument("--migrate-hash", action="store_true", help="run `migrate inventory --hash` before planning")
    ap.add_argument("--label", default="", help="name the results <date>-<label>.md/.json (letters, digits, -)")
    ap.add_argument("--keep", action="store_true", help="keep emulator data and state directories of every run")
    a = ap.parse_args(argv)
    canonical = {sid.upper(): sid for sid in ALL}
    scenarios = [canonical.get(x.strip().upper(), x.strip()) for x in a.scenarios.split(",") if x.strip()]
    bad = [x for x in scenarios if x not in ALL]
    if bad:
        ap.error(f"unknown scenario(s) {', '.join(bad)}; choose from {', '.join(ALL)}")
    if a.label and not all(c.isalnum() or c == "-" for c in a.label):
        ap.error("--label takes letters, digits and '-' only")
    if a.scale <= 0:
        ap.error("--scale must be positive")
    if (a.rounds is not None and a.rounds < 1) or a.s6_rounds < 1:
        ap.error("rounds must be at least 1")
    rounds = {sid: 1 if a.quick else (a.rounds or n) for sid, n in ROUNDS.items()}
    rounds["S6"] = 1 if a.quick else a.s6_rounds
    out = a.out or (a.work / "quick-results" if a.quick else REPO / "bench" / "results")
    return Settings(
        quick=a.quick,
        rounds=rounds,
        seed=a.seed,
        scenarios=scenarios,
        work=a.work.resolve(),
        out=out.resolve(),
        timeout=a.timeout or (300.0 if a.quick else 1800.0),
        raw_threads=a.raw_threads,
        emulator_base=a.emulator_dir.resolve() if a.emulator_dir else None,
        migrate_workers=a.migrate_workers,
        migrate_hash=a.migrate_hash,
        scale=a.scale,
        keep=a.keep,
        command=shlex.join(["python", "-m", "bench", *argv]),
        label=a.label,
    )


def main(argv: list[str] | None = None) -> int:
    from bench.report import machine_info, write
    from bench.scenarios import Scenarios

    settings = parse_args(sys.argv[1:] if argv is None else argv)
    session = Session(settings)
    session.log(f"bench: {settings.command}; runs under {session.run_dir}")
    for name, find in (("rclone", ensure_rclone), ("gcloud", gcloud)):
        try:
            session.log(f"{name}: {find()}")
        except PeerMissing as exc:
            session.log(f"{name}: MISSING ({exc}); its runs will fail")
    if not ensure_gnu_time():
        session.log("GNU time (/usr/bin/time) is missing: peak RSS may include the harness's own memory")
    session.compile_migrate()
    sc = Scenarios(session)
    wanted = settings.scenarios
    # the short S6 first, the long S7 last
    steps = [sc.inventory_scenario] if "S6" in wanted else []
    steps += [
        (lambda sid=sid: sc.object_scenario(sid, with_s5=sid == "S1" and "S5" in wanted))
        for sid in ("S1", "S1b", "S2", "S3")
        if sid in wanted or (sid == "S1" and "S5" in wanted)
    ]
    steps += [step for sid, step in (("S4", sc.events_scenario), ("S7", sc.latency_scenario)) if sid in wanted]
    machine = machine_info()
    try:
        for step in steps:
            step()
            # the results so far, rewritten after every scenario: a run stopped early keeps them
            write(session, machine | {"load_average": [round(x, 2) for x in os.getloadavg()]})
    finally:
        session.close()
    md, js, text, all_ok = write(session, machine | {"load_average": [round(x, 2) for x in os.getloadavg()]})
    print()
    print(text)
    session.log(f"results: {md} and {js}")
    if not all_ok:
        failed = sum(1 for r in session.results if not r.ok)
        session.log(f"FAILED: {failed} of {len(session.results)} runs did not finish or did not verify")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
