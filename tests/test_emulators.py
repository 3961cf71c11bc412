"""The emulator harness: start, answer, stop without leftovers, restart keeps data."""

from __future__ import annotations

import os
import socket
import urllib.request
from pathlib import Path

import pytest
from procgroup import freeze, thaw

from migrate import clients
from migrate.errors import MigrateError
from migrate.local.emulators import free_port, local_emulators, start_gcs


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status == 200
    except OSError:
        return False


def _state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _processes_mentioning(text: str) -> list[int]:
    pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
    return [p for p in pids if text in _cmdline(p) and _state_or_gone(p) not in ("Z", "gone")]


def _state_or_gone(pid: int) -> str:
    try:
        return _state(pid)
    except OSError:
        return "gone"


def test_gcs_restart_keeps_data_on_the_filesystem_root(tmp_path: Path, monkeypatch):
    gcs = start_gcs(tmp_path / "root", log_path=tmp_path / "gcs.log")
    try:
        monkeypatch.setenv(clients.STORAGE_EMULATOR_ENV, gcs.url)
        client = clients.gcs_client("test-project")
        client.create_bucket("restart-me")
        client.bucket("restart-me").blob("a/b.txt").upload_from_string(b"survives")
        port = gcs.port

        gcs.kill()  # an outage
        assert not gcs.running()
        assert not _answers(f"{gcs.url}/storage/v1/b")

        gcs.restart()
        assert gcs.port == port and gcs.running()
        assert client.bucket("restart-me").blob("a/b.txt").download_as_bytes() == b"survives"

        gcs.restart()  # a graceful restart too
        assert [b.name for b in client.list_blobs("restart-me")] == ["a/b.txt"]
    finally:
        gcs.stop()
    assert not gcs.running()
    assert (tmp_path / "gcs.log").exists()


def test_gcs_port_in_use_is_a_one_line_error(tmp_path: Path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        with pytest.raises(MigrateError) as info:
            start_gcs(tmp_path / "root", port=busy.getsockname()[1], log_path=tmp_path / "gcs.log")
    assert "fake-gcs-server" in info.value.message
    assert "\n" not in info.value.one_line()
    assert info.value.fix


def test_missing_gcloud_is_a_one_line_error(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no gcloud here
    with pytest.raises(MigrateError) as info, local_emulators(tmp_path / "w"):
        pass
    assert "gcloud" in info.value.message
    assert "install" in info.value.fix
    # fake-gcs-server started first; it must have been stopped again.
    assert _processes_mentioning(str(tmp_path / "w" / "gcs")) == []


def test_local_emulators_lifecycle_leaves_nothing_behind(tmp_path: Path, monkeypatch):
    monkeypatch.setenv(clients.PUBSUB_EMULATOR_ENV, "previous:1")
    monkeypatch.delenv(clients.STORAGE_EMULATOR_ENV, raising=False)
    with pytest.raises(RuntimeError, match="boom"), local_emulators(tmp_path / "w") as emus:
        assert os.environ[clients.STORAGE_EMULATOR_ENV] == emus.gcs
        assert os.environ[clients.PUBSUB_EMULATOR_ENV] == emus.pubsub
        assert _answers(f"{emus.gcs}/storage/v1/b")
        assert _answers(f"http://{emus.pubsub}/")
        members = emus.pubsub_server.processes()
        assert any("java" in _cmdline(p) for p in members), members

        freeze(emus.pubsub_server)
        assert {_state(p) for p in members} == {"T"}
        thaw(emus.pubsub_server)
        assert _answers(f"http://{emus.pubsub}/")

        gcs_pid, port = emus.gcs_server.pid, emus.pubsub_server.port
        raise RuntimeError("boom")

    assert os.environ[clients.PUBSUB_EMULATOR_ENV] == "previous:1"
    assert clients.STORAGE_EMULATOR_ENV not in os.environ
    assert _state_or_gone(gcs_pid) in ("Z", "gone")
    for pid in members:
        assert _state_or_gone(pid) in ("Z", "gone"), _cmdline(pid)
    assert _processes_mentioning(f"--port={port}") == []  # no java child lingers
    assert (tmp_path / "w" / "pubsub-emulator.log").stat().st_size > 0


def test_free_port_is_bindable():
    port = free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


def test_emulators_die_with_their_owner_even_on_sigkill(tmp_path: Path):
    import json
    import signal
    import subprocess
    import sys
    import time

    script = (
        "import json, sys, time\n"
        "from pathlib import Path\n"
        "from migrate.local.emulators import local_emulators\n"
        "with local_emulators(Path(sys.argv[1])) as e:\n"
        "    print(json.dumps([e.gcs_server.pid, *e.pubsub_server.processes()]), flush=True)\n"
        "    time.sleep(600)\n"
    )
    owner = subprocess.Popen([sys.executable, "-c", script, str(tmp_path / "w")], stdout=subprocess.PIPE, text=True)
    try:
        pids = json.loads(owner.stdout.readline())
        assert len(pids) >= 3  # fake-gcs-server, gcloud, java
        assert all(_state_or_gone(p) not in ("Z", "gone") for p in pids)
    finally:
        owner.send_signal(signal.SIGKILL)
        owner.wait()
    for _ in range(300):  # the reapers act within moments; bounded wait, not a timing assertion
        alive = [p for p in pids if _state_or_gone(p) not in ("Z", "gone")]
        if not alive:
            break
        time.sleep(0.1)
    assert alive == [], [_cmdline(p) for p in alive]
