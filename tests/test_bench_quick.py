"""The benchmark harness: quick mode end to end, and the checks that keep a benchmark honest."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # bench/ is not an installed package

from bench import datasets  # noqa: E402
from bench.gcs import check_bucket  # noqa: E402
from bench.measure import run_measured  # noqa: E402
from bench.peers import ensure_gnu_time  # noqa: E402
from bench.report import summarize, targets  # noqa: E402
from bench.runner import REPO, Result  # noqa: E402

QUICK_ROWS = {
    ("S1", "migrate end to end"),
    ("S1", "migrate run"),
    ("S1b", "migrate end to end"),
    ("S1b", "rclone copy --transfers 8"),
    ("S1b", "raw floor"),
    ("S7-S1", "migrate end to end"),
    ("S7-S1", "rclone copy --transfers 8"),
    ("S7-S1", "rclone copy --transfers 64"),
    ("S7-S1", "gcloud storage rsync -r"),
    ("S7-S2", "migrate end to end"),
    ("S7-S2", "rclone copy --transfers 64"),
    ("S1", "rclone copy --transfers 8"),
    ("S1", "gcloud storage rsync -r"),
    ("S1", "raw floor"),
    ("S2", "migrate end to end"),
    ("S2", "rclone copy --transfers 8"),
    ("S2", "gcloud storage rsync -r"),
    ("S2", "raw floor"),
    ("S3", "migrate end to end"),
    ("S3", "rclone copy --transfers 8"),
    ("S3", "gcloud storage rsync -r"),
    ("S3", "raw floor"),
    ("S4", "migrate run"),
    ("S4", "PublisherClient loop"),
    ("S4", "raw publish ceiling"),
    ("S5-verify", "migrate verify"),
    ("S5-verify", "rclone check"),
    ("S5-noop", "migrate run"),
    ("S5-noop", "rclone copy --transfers 8"),
    ("S5-noop", "gcloud storage rsync -r"),
    ("S6", "migrate inventory"),
    ("S6", "find -printf"),
}


@pytest.mark.slow
def test_quick_mode_runs_every_tool_and_every_destination_verifies(tmp_path: Path) -> None:
    out = tmp_path / "results"
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--work", str(tmp_path / "work"), "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
    )
    docs = list(out.glob("*.json"))
    assert len(docs) == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    doc = json.loads(docs[0].read_text())
    failed = [f"{r['scenario']} {r['tool']}: {r['error']}" for r in doc["runs"] if not r["ok"]]
    assert not failed, "\n".join(failed)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    seen = {(r["scenario"], r["tool"]) for r in doc["runs"]}
    assert seen >= QUICK_ROWS, f"missing rows: {sorted(QUICK_ROWS - seen)}"
    for r in doc["runs"]:
        assert r["wall"] > 0 and r["peak_rss"] > 0, r
    md = (out / docs[0].name.replace(".json", ".md")).read_text()
    assert "## S1" in md and "## S6" in md and "## S7-S2" in md and "reproduce: `python -m bench --quick" in md
    e2e = {(r["scenario"], r["round"]): r for r in doc["runs"] if r["tool"] == "migrate end to end"}
    steps = [r for r in doc["runs"] if r["tool"] in ("migrate inventory", "migrate plan", "migrate run")]
    for (sid, rnd), row in e2e.items():  # end to end is the sum of the round's three steps
        parts = [r["wall"] for r in steps if r["scenario"] == sid and r["round"] == rnd]
        assert len(parts) == 3 and abs(row["wall"] - sum(parts)) < 0.01, (sid, row, parts)


def _upload(endpoint: str, bucket: str, name: str, data: bytes) -> None:
    q = urllib.parse.urlencode({"uploadType": "media", "name": name})
    req = urllib.request.Request(f"{endpoint}/upload/storage/v1/b/{bucket}/o?{q}", data=data, method="POST")
    with urllib.request.urlopen(req, timeout=30) as resp:
        assert resp.status == 200


def test_destination_check_fails_a_tool_that_copied_nothing_or_part(emulators, bucket, tmp_path: Path) -> None:
    ds = datasets.small_files(tmp_path, count=5, size_min=10, size_max=20, seed=3)
    empty = check_bucket(emulators.gcs, bucket, "p/", ds)
    assert not empty.ok and len(empty.missing) == 5 and empty.objects == 0

    items = list(ds.iter_manifest())
    for m in items[:4]:
        _upload(emulators.gcs, bucket, "p/" + m["relpath"], (ds.root / m["relpath"]).read_bytes())
    partial = check_bucket(emulators.gcs, bucket, "p/", ds)
    assert not partial.ok and partial.missing == ["p/" + items[4]["relpath"]]

    _upload(emulators.gcs, bucket, "p/" + items[4]["relpath"], (ds.root / items[4]["relpath"]).read_bytes())
    assert check_bucket(emulators.gcs, bucket, "p/", ds).ok

    same_size = bytes(b ^ 0xFF for b in (ds.root / items[0]["relpath"]).read_bytes())
    _upload(emulators.gcs, bucket, "p/" + items[0]["relpath"], same_size)
    corrupt = check_bucket(emulators.gcs, bucket, "p/", ds)
    assert not corrupt.ok and corrupt.crc_mismatch == ["p/" + items[0]["relpath"]]


def test_measurement_sees_a_childs_memory_and_not_the_harness(tmp_path: Path) -> None:
    assert ensure_gnu_time(), "GNU time is needed for exact peak RSS (apt-get install time)"
    hog = run_measured(
        [sys.executable, "-c", "x = bytearray(150 * 2**20); x[::4096] = b'1' * len(x[::4096])"],
        env={"PATH": "/usr/bin:/bin"},
        cwd=tmp_path,
        log_dir=tmp_path / "hog",
        timeout=120,
    )
    assert hog.returncode == 0 and hog.peak_rss >= 150 * 2**20 and hog.cpu > 0
    ballast = bytearray(200 * 2**20)  # the harness grows; a tiny child must not inherit that figure
    ballast[::4096] = b"1" * len(ballast[::4096])
    tiny = run_measured(["true"], env={"PATH": "/usr/bin:/bin"}, cwd=tmp_path, log_dir=tmp_path / "tiny", timeout=60)
    assert tiny.returncode == 0 and tiny.max_proc_rss_exact and tiny.peak_rss < 50 * 2**20
    failing = run_measured(["false"], env={"PATH": "/usr/bin:/bin"}, cwd=tmp_path, log_dir=tmp_path / "f", timeout=60)
    assert failing.returncode == 1
    del ballast


def test_summary_medians_ratios_and_a_failed_round() -> None:
    e2e = "migrate end to end"
    runs = [
        Result("S1", e2e, 1, True, wall=10.0, cpu=5.0, peak_rss=100),
        Result("S1", e2e, 2, True, wall=12.0, cpu=6.0, peak_rss=120),
        Result("S1", e2e, 3, True, wall=30.0, cpu=7.0, peak_rss=110),
        Result("S1", "migrate run", 1, True, wall=8.0, cpu=4.0, peak_rss=100, aux=True),
        Result("S1", "rclone copy --transfers 8", 1, True, wall=24.0, cpu=9.0, peak_rss=300),
        Result("S1", "rclone copy --transfers 8", 2, False, error="exit 1: boom"),
        Result("S1", "gcloud storage rsync -r", 1, True, wall=20.0, cpu=9.0, peak_rss=300),
        Result("S1", "raw floor", 1, True, wall=10.0, cpu=1.0, peak_rss=30),
    ]
    rows = {r["tool"]: r for r in summarize(runs)}
    assert rows[e2e]["wall"] == 12.0 and rows[e2e]["time_vs_migrate"] == 1.0
    assert rows[e2e]["wall_range"] == [10.0, 30.0]
    assert rows["rclone copy --transfers 8"]["time_vs_migrate"] == 2.0
    assert rows["rclone copy --transfers 8"]["time_vs_migrate_run"] == 3.0
    assert rows["rclone copy --transfers 8"]["ok"] == 1 and rows["rclone copy --transfers 8"]["runs"] == 2
    met = {t["target"]: t["met"] for t in targets(list(rows.values()))}
    assert met["issue 15: S1 end to end at most 0.7x rclone's wall time"] is True  # 24 / 12 = 2.0 >= 1/0.7
    assert met["issue 15: S1 end to end at most 1.3x the raw floor's wall time"] is True  # 10 / 12 >= 1/1.3
    assert met["issue 4: mixed catalog (end to end) at most half of gcloud's"] is False  # 20 / 12 < 2
