"""Crashes: SIGKILL `migrate run` at seeded moments spread over a mixed run, resume each time.

Afterwards verify passes, no object was written twice (a recording proxy sees every generation the
server created), every valid event arrived, and duplicates stay within the bound the run reported,
each carrying its original event_id.
"""

from __future__ import annotations

import json
import random
import sqlite3
import time
from collections import Counter

import pytest
from pubsubkit import drain
from relkit import (
    assert_no_traceback,
    create_audit_subscription,
    find_key,
    kill_group,
    mixed_estate,
    planned_objects,
    run_cli,
    start_cli,
    write_recording_proxy,
)

SEED = 20260101
KILLS = 6
PLAN = "crash"


def _progress(ledger: str, plan_id: str, totals: dict) -> float:
    """Share of the plan's work the ledger records as done (objects by bytes, events by lines)."""
    try:
        conn = sqlite3.connect(f"file:{ledger}?mode=ro", uri=True, timeout=1)
        try:
            done_bytes = conn.execute(
                "SELECT COALESCE(SUM(size), 0) FROM items WHERE plan_id=? AND kind='object' AND state='done'",
                (plan_id,),
            ).fetchone()[0]
            done_events = conn.execute(
                "SELECT COALESCE(SUM(published + quarantined), 0) FROM offsets WHERE plan_id=?", (plan_id,)
            ).fetchone()[0]
        finally:
            conn.close()
    except sqlite3.Error:
        return 0.0
    shares = []
    if totals["bytes"]:
        shares.append(done_bytes / totals["bytes"])
    if totals["events"]:
        shares.append(done_events / totals["events"])
    return sum(shares) / len(shares)


@pytest.mark.slow
def test_sigkill_at_seeded_moments_then_resume(tmp_path, emulators, gcs_client, started):
    est = mixed_estate(tmp_path, gcs_client, emulators.project)
    audit = create_audit_subscription(emulators.project, est.topic, f"{est.topic}-audit")
    with write_recording_proxy(emulators.gcs) as proxy:
        env = {"STORAGE_EMULATOR_HOST": proxy.url}
        assert run_cli("inventory", "--config", est.config, "--hash", "--json", env=env).returncode == 0
        res = run_cli("plan", "--config", est.config, "--name", PLAN, "--json", env=env)
        assert res.returncode == 0, str(res)
        plan_doc = json.loads((est.plans / f"{PLAN}.plan.json").read_text())
        plan_id = plan_doc["plan_id"]
        totals = est.totals
        rng = random.Random(SEED)
        # kill points: shares of the work done, spread over the run (one early, before much is done)
        points = sorted([0.0] + [rng.uniform(0.05, 0.95) for _ in range(KILLS - 1)])
        kills = []
        logs = tmp_path / "runlogs"
        for point in points:
            proc, _, err = start_cli("run", "--config", est.config, PLAN, "--json", env=env, log_dir=logs)
            started.append(proc)
            extra_delay = rng.uniform(0.2, 1.0)  # the early kill lands during start-up and preflight
            t0 = time.monotonic()
            while proc.poll() is None:
                if point == 0.0:
                    if time.monotonic() - t0 >= extra_delay:
                        break
                elif _progress(est.ledger, plan_id, totals) >= point:
                    break
                time.sleep(0.02)
            if proc.poll() is None:
                kill_group(proc)
                kills.append((round(point, 2), round(_progress(est.ledger, plan_id, totals), 3)))
            else:
                # it finished before the kill point: fine, the remaining points hit a finished plan
                assert proc.returncode == 0, err.read_text()
        assert len(kills) >= 5, kills  # the spread really interrupted the run at least five times
        final = run_cli("run", "--config", est.config, PLAN, "--json", env=env)
        assert final.returncode == 0, str(final)
        assert_no_traceback(final)
        summary = final.json()
        verify = run_cli("verify", "--config", est.config, PLAN, "--json", env=env)
        assert verify.returncode == 0, str(verify)

    # no planned object was written twice (part objects of composite uploads may be re-sent; they are
    # temporary), and no part object is left behind
    planned = planned_objects(est.plans / f"{PLAN}.manifest.jsonl")
    assert len(planned) == est.truth.total_files
    multi = {k: v for k, v in proxy.writes.items() if k in planned and len(v) > 1}
    assert not multi, multi
    assert planned <= set(proxy.writes)
    listing = {(b, o.name): o for b in est.buckets for o in gcs_client.list_blobs(b)}
    assert set(listing) == planned, sorted(set(listing) ^ planned)[:10]
    # the generation the ledger acknowledged is the one in the bucket, and the only one ever written
    conn = sqlite3.connect(est.ledger)
    try:
        rows = conn.execute(
            "SELECT bucket, object, generation FROM items WHERE plan_id=? AND kind='object'", (plan_id,)
        ).fetchall()
    finally:
        conn.close()
    assert len(rows) == len(planned)
    for bucket, name, generation in rows:
        assert str(generation) == str(listing[(bucket, name)].generation) == proxy.writes[(bucket, name)][0], name

    # every valid event arrived; duplicates within the reported bound; ids intact
    msgs = drain(audit)
    ids = [m.attributes["event_id"] for m in msgs]
    for m in msgs:
        assert json.loads(m.data)["event_id"] == m.attributes["event_id"]
    counts = Counter(ids)
    want = {eid for lt in est.truth.logs["plays"] for eid in lt.event_ids}
    assert set(counts) == want
    dupes = sum(n - 1 for n in counts.values())
    bound = _duplicate_bound(summary, est.ledger, plan_id)
    assert dupes <= bound, (dupes, bound, kills)


def _duplicate_bound(summary: dict, ledger: str, plan_id: str) -> int:
    """The run's reported maximum of possible duplicates (summary, else the ledger's in-flight record)."""
    for key in ("max_possible_duplicates", "possible_duplicates", "max_duplicates"):
        found = find_key(summary, key)
        if found is not None:
            return int(found)
    conn = sqlite3.connect(ledger)
    try:
        return int(
            conn.execute("SELECT COALESCE(SUM(in_flight_max), 0) FROM offsets WHERE plan_id=?", (plan_id,)).fetchone()[
                0
            ]
        )
    finally:
        conn.close()
