"""Faults: a flaky GCS front end, a GCS outage (short and long), a frozen Pub/Sub emulator.

Each scenario uses its own emulator or proxy where it kills or freezes something, never the session's.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter

import pytest
from procgroup import freeze, thaw
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

from migrate import clients
from migrate.local.emulators import start_gcs, start_pubsub

PLAN = "f1"


def _plan_id(est) -> str:
    return json.loads((est.plans / f"{PLAN}.plan.json").read_text())["plan_id"]


def _prepare(est, env: dict | None = None) -> None:
    res = run_cli("inventory", "--config", est.config, "--hash", "--json", env=env)
    assert res.returncode == 0, str(res)
    res = run_cli("plan", "--config", est.config, "--name", PLAN, "--json", env=env)
    assert res.returncode == 0, str(res)


def _done_share(est) -> float:
    import sqlite3

    try:
        conn = sqlite3.connect(f"file:{est.ledger}?mode=ro", uri=True, timeout=1)
        try:
            row = conn.execute(
                "SELECT COALESCE(SUM(size), 0) FROM items WHERE kind='object' AND state='done'"
            ).fetchone()
        finally:
            conn.close()
    except sqlite3.Error:
        return 0.0
    return row[0] / max(1, est.totals["bytes"])


def _wait_for(pred, proc, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        assert proc.poll() is None, "the run ended before the fault could be injected"
        time.sleep(0.05)
    raise AssertionError("the run never got there")


def _check_events(est, audit: str, summary: dict) -> tuple[int, int]:
    msgs = drain(audit)
    for m in msgs:
        assert json.loads(m.data)["event_id"] == m.attributes["event_id"]
    counts = Counter(m.attributes["event_id"] for m in msgs)
    want = {eid for lt in est.truth.logs["plays"] for eid in lt.event_ids}
    assert set(counts) == want
    return sum(n - 1 for n in counts.values()), len(want)


@pytest.mark.slow
def test_flaky_gcs_20_percent_faults(tmp_path, emulators, gcs_client):
    est = mixed_estate(
        tmp_path,
        gcs_client,
        emulators.project,
        large_mib=(3,),
        transfer={"bandwidth_limit": "0", "timeout": 2, "retry_max_attempts": 12, "retry_deadline": 60},
        pubsub={"events_per_second": 0},
    )
    audit = create_audit_subscription(emulators.project, est.topic, f"{est.topic}-audit")
    _prepare(est)
    with write_recording_proxy(emulators.gcs, rate=0.2, seed=11, stall_seconds=4.0) as proxy:
        res = run_cli("run", "--config", est.config, PLAN, "--json", env={"STORAGE_EMULATOR_HOST": proxy.url})
        injected = dict(proxy.counts)
    assert res.returncode == 0, f"{res}\ninjected: {injected}"
    assert_no_traceback(res)
    summary = res.json()
    retries = find_key(summary, "retries")
    assert proxy.injected > 0, injected
    assert isinstance(retries, int) and retries >= 1, (retries, injected)
    planned = planned_objects(est.plans / f"{PLAN}.manifest.jsonl")
    multi = {k: v for k, v in proxy.writes.items() if k in planned and len(v) > 1}
    assert not multi, multi
    verify = run_cli("verify", "--config", est.config, PLAN, "--json")
    assert verify.returncode == 0, str(verify)
    _check_events(est, audit, summary)


@pytest.fixture
def own_gcs(tmp_path):
    gcs = start_gcs(tmp_path / "own-gcs", log_path=tmp_path / "own-gcs.log")
    try:
        yield gcs
    finally:
        gcs.stop()


def _own_client(gcs):
    saved = os.environ.get("STORAGE_EMULATOR_HOST")
    os.environ["STORAGE_EMULATOR_HOST"] = gcs.url
    try:
        return clients.gcs_client("test-project")
    finally:
        if saved is None:
            os.environ.pop("STORAGE_EMULATOR_HOST", None)
        else:
            os.environ["STORAGE_EMULATOR_HOST"] = saved


@pytest.mark.slow
def test_short_gcs_outage_is_ridden_out(tmp_path, emulators, own_gcs, started):
    est = mixed_estate(
        tmp_path, _own_client(own_gcs), emulators.project, transfer={"retry_deadline": 60, "retry_max_attempts": 50}
    )
    env = {"STORAGE_EMULATOR_HOST": own_gcs.url}
    _prepare(est, env)
    proc, out, err = start_cli("run", "--config", est.config, PLAN, "--json", env=env, log_dir=tmp_path / "logs")
    started.append(proc)
    _wait_for(lambda: _done_share(est) >= 0.2, proc)
    own_gcs.kill()
    time.sleep(3.0)
    own_gcs.restart()
    try:
        proc.wait(timeout=180)
    finally:
        if proc.poll() is None:
            kill_group(proc)
    assert proc.returncode == 0, out.read_text() + err.read_text()
    assert "Traceback" not in err.read_text()
    verify = run_cli("verify", "--config", est.config, PLAN, "--json", env=env)
    assert verify.returncode == 0, str(verify)


@pytest.mark.slow
def test_long_gcs_outage_stops_resumably_then_completes(tmp_path, emulators, own_gcs, started):
    est = mixed_estate(
        tmp_path,
        _own_client(own_gcs),
        emulators.project,
        transfer={"retry_deadline": 3, "retry_max_attempts": 5, "retry_max_delay": 0.5},
    )
    env = {"STORAGE_EMULATOR_HOST": own_gcs.url}
    _prepare(est, env)
    proc, out, err = start_cli("run", "--config", est.config, PLAN, env=env, log_dir=tmp_path / "logs")
    started.append(proc)
    _wait_for(lambda: _done_share(est) >= 0.2, proc)
    own_gcs.kill()
    try:
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            kill_group(proc)
    stderr = err.read_text()
    assert proc.returncode == 1, out.read_text() + stderr
    assert "Traceback" not in stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert any("resum" in line or "again" in line for line in errors), stderr  # says the run is resumable
    own_gcs.restart()
    again = run_cli("run", "--config", est.config, PLAN, "--json", env=env)
    assert again.returncode == 0, str(again)
    verify = run_cli("verify", "--config", est.config, PLAN, "--json", env=env)
    assert verify.returncode == 0, str(verify)


@pytest.mark.slow
def test_pubsub_frozen_past_publish_timeout_recovers_exactly(tmp_path, emulators, gcs_client, started, monkeypatch):
    ps = start_pubsub(tmp_path / "own-pubsub", project=emulators.project, log_path=tmp_path / "own-pubsub.log")
    try:
        monkeypatch.setenv("PUBSUB_EMULATOR_HOST", ps.host)
        est = mixed_estate(
            tmp_path,
            gcs_client,
            emulators.project,
            large_mib=(),
            transfer={"bandwidth_limit": "0"},
            pubsub={"events_per_second": 100, "publish_timeout": 2, "batch_max_messages": 20},
        )
        audit = create_audit_subscription(emulators.project, est.topic, f"{est.topic}-audit")
        env = {"PUBSUB_EMULATOR_HOST": ps.host}
        _prepare(est, env)
        proc, out, err = start_cli("run", "--config", est.config, PLAN, "--json", env=env, log_dir=tmp_path / "logs")
        started.append(proc)
        import sqlite3

        def published() -> int:
            try:
                conn = sqlite3.connect(f"file:{est.ledger}?mode=ro", uri=True, timeout=1)
                try:
                    return conn.execute("SELECT COALESCE(SUM(published), 0) FROM offsets").fetchone()[0]
                finally:
                    conn.close()
            except sqlite3.Error:
                return 0

        _wait_for(lambda: published() >= est.truth.events() // 4, proc)
        freeze(ps)
        time.sleep(5.0)  # past publish_timeout = 2 s
        thaw(ps)
        try:
            proc.wait(timeout=180)
        finally:
            if proc.poll() is None:
                kill_group(proc)
        stdout, stderr = out.read_text(), err.read_text()
        assert proc.returncode == 0, stdout + stderr
        assert "Traceback" not in stderr
        summary = json.loads(stdout)
        dupes, valid = _check_events(est, audit, summary)
        bound = find_key(summary, "max_possible_duplicates")
        assert bound is not None and dupes <= bound, (dupes, bound)
        assert find_key(summary, "quarantined") == est.truth.malformed()
        verify = run_cli("verify", "--config", est.config, PLAN, "--json", env=env)
        assert verify.returncode == 0, str(verify)
    finally:
        ps.stop()
