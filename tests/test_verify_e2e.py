"""verify after the real pipeline: inventory -> plan -> provision -> run -> verify, on a generated estate."""

from __future__ import annotations

from pathlib import Path

import pipeline

from migrate.config import load_config
from migrate.ledger import connect
from migrate.local.provision import provision
from migrate.verification.verify import DrainSettings, verify_plan

FAST_DRAIN = DrainSettings(pull_timeout=1.0, quiet_seconds=2.0, max_seconds=300)


def test_real_run_verifies_clean_then_names_what_breaks(estate, emulators, gcs_client):
    cfg = load_config(estate.config_path)
    plan = pipeline.plan(cfg, "e2e")
    plan_path = Path(plan.paths["plan"])
    provision(Path(plan.paths["tfvars"]))
    summary = pipeline.run(cfg, plan_path, workers=4)
    assert summary.status == "ok", summary

    rep = verify_plan(cfg, plan_path, deep="10%", drain=FAST_DRAIN)
    assert rep.ok, rep.to_dict()
    o = rep.objects
    assert o.matched == o.planned + o.previously_migrated > 0 and o.crc32c_unknown == 0
    assert o.deep.sampled >= 1 and o.deep.ok == o.deep.sampled
    (plays,) = [e for e in rep.events if e.source == "plays"]
    assert plays.received_events == plays.expected_events == estate.events("plays") > 0
    assert plays.digest_match and plays.expected_digest == plays.inventory_digest

    conn = connect(cfg.project.state_dir)
    try:
        bucket, name = conn.execute(
            "SELECT bucket, object FROM items WHERE plan_id = ? AND kind = 'object' ORDER BY seq LIMIT 1",
            (rep.plan_id,),
        ).fetchone()
    finally:
        conn.close()
    gcs_client.bucket(bucket).blob(name).delete()
    again = verify_plan(cfg, plan_path, drain=FAST_DRAIN)
    assert not again.ok
    assert again.objects.missing == 1 and again.objects.examples["missing"] == [f"gs://{bucket}/{name}"]
    (plays2,) = [e for e in again.events if e.source == "plays"]
    assert plays2.digest_match and plays2.received_before == plays.received_events  # remembered, not re-drained
