"""Large files on the Dask engine: a resumable upload whose worker is SIGKILLed resumes its session.

On gcp-storage-emulator behind the recording wire proxy (test_large_files explains why that emulator
for resumed sessions), with a LocalCluster of worker processes the driver connects to.
"""

from __future__ import annotations

from pathlib import Path

import dask_kit
import pytest
from test_large_files import MIB, _session_state, on_resumable_gcs, one_file_plan, resumable_gcs  # noqa: F401

from migrate.targets.buckets import RESUMABLE
from migrate.transfer.run import RunOptions, run_plan
from migrate.verification.verify import verify_plan

distributed = pytest.importorskip("distributed")


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_worker_killed_mid_resumable_upload_resumes_the_recorded_session(
    tmp_path,
    write_config,
    on_resumable_gcs,  # noqa: F811 (the fixture, imported)
):
    proxy, client = on_resumable_gcs
    size = 64 * MIB
    # 2 task slots share the cap: one upload runs at 16 MiB/s, about 4 s for the file
    transfer = {"chunk_size": "4MiB", "bandwidth_limit": "32MiB/s", "workers": 2}
    bucket, _, cfg, plan = one_file_plan(tmp_path, write_config, client, "dask-kill", size, 6, transfer)
    state_dir = Path(cfg.project.state_dir)
    with dask_kit.local_cluster(2, 1, ("cat",)) as cluster, distributed.Client(cluster) as dc:
        options = RunOptions(engine="dask", scheduler=cluster.scheduler_address)
        th, out = dask_kit.in_thread(lambda: run_plan(cfg, plan, options=options))
        # the driver started the session and recorded it before any byte; the worker's acknowledged offsets follow
        assert dask_kit.wait_for(lambda: (_session_state(state_dir) or {}).get("offset", 0) >= 16 * MIB, 120)
        assert len(proxy.log.resumable_starts()) == 1
        dask_kit.kill_worker(dc, "migrate-obj")
        at_kill = _session_state(state_dir)
        th.join(timeout=240)
    assert "error" not in out, out.get("error")
    summary = out["result"]
    assert summary.status == "ok", summary.to_dict()
    assert summary.objects.done == 1 and summary.objects.failed == 0
    assert summary.engine["tasks_rerun"] >= 1 and summary.engine["workers_lost"] >= 1, summary.engine
    assert at_kill["kind"] == RESUMABLE and at_kill["uri"] and 0 < at_kill["offset"] < size

    total = proxy.log.upload_bytes()
    print(f"killed at {at_kill['offset'] / MIB:.0f} MiB acknowledged; {total / MIB:.1f} MiB sent = {total / size:.2f}x")
    assert total < 2 * size, f"{total / MIB:.1f} MiB sent for a {size / MIB:.0f} MiB file"
    assert len(proxy.log.resumable_starts()) == 1  # the rerun resumed the recorded session, never a new one
    queries = [
        r for r in proxy.log.snapshot() if r.method == "PUT" and r.headers.get("content-range") == f"bytes */{size}"
    ]
    # the first attempt sent into the fresh session at once; the rerun asked what the session holds
    assert len(queries) == 1, queries
    finals = [r for r in proxy.log.snapshot() if r.method == "PUT" and r.status in (200, 201)]
    assert len(finals) == 1  # one finalize: one generation
    assert summary.objects.reused_bytes >= at_kill["offset"]  # the killed attempt's bytes were not sent again
    assert client.bucket(bucket).get_blob("c/master.flac").size == size
    assert _session_state(state_dir) is None  # done: the session state is cleared
    rep = verify_plan(cfg, plan)
    assert rep.ok and rep.objects.matched == 1
