"""Run one measured step in a fresh environment and check its result.

A `Session` owns the settings, the results and the per-run working directories. Every measured
step is a child process (see measure.py), and every step that claims to have moved data is checked
against the destination before it counts.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bench.measure import Measured, run_measured

REPO = Path(__file__).resolve().parent.parent
EMULATOR_VARS = ("STORAGE_EMULATOR_HOST", "PUBSUB_EMULATOR_HOST")

TMPFS = Path("/dev/shm")


def default_emulator_base() -> Path | None:
    """tmpfs, when there is room: the emulator's disk flushes on a shared VM disk would otherwise
    dominate small-file scenarios and measure the disk rather than the tools."""
    try:
        st = os.statvfs(TMPFS)
    except OSError:
        return None
    return TMPFS if st.f_bavail * st.f_frsize > 4 * 1024**3 else None


# (ok, check document, extra metrics, error text)
CheckFn = Callable[[Measured], tuple[bool, dict, dict, str | None]]


@dataclass
class Result:
    """One measured step (one tool, one round)."""

    scenario: str
    tool: str
    round: int
    ok: bool
    error: str | None = None
    wall: float | None = None
    cpu: float | None = None
    peak_rss: int | None = None
    metrics: dict = field(default_factory=dict)
    check: dict = field(default_factory=dict)
    aux: bool = False  # a preparation step reported on its own (migrate inventory/plan), not compared
    log_dir: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Settings:
    quick: bool
    rounds: dict[str, int]  # per scenario: S1 (with S5), S2, S3, S4, S6
    seed: int
    scenarios: list[str]
    work: Path
    out: Path
    timeout: float
    raw_threads: int = 8
    emulator_base: Path | None = None  # where fake-gcs-server roots go (default: tmpfs when there is one)
    migrate_workers: int | None = None
    migrate_hash: bool = False
    scale: float = 1.0
    keep: bool = False
    command: str = ""
    label: str = ""  # results go to <date>-<label>.md/.json (default: <date>.md, or <date>-partial.md)


class Session:
    def __init__(self, settings: Settings) -> None:
        self.s = settings
        stamp = time.strftime("%Y%m%d-%H%M%S")
        self.run_dir = settings.work / "runs" / stamp
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.results: list[Result] = []
        self.started = time.monotonic()
        self.load_at_start = os.getloadavg()
        self.datasets: dict[str, dict] = {}  # scenario -> dataset.json of the data it ran on
        self.emulator_base = (settings.emulator_base or default_emulator_base() or self.run_dir) / f"gcs-{stamp}"

    def compile_migrate(self) -> None:
        """Byte-compile the migrate package the runs import from the repository, as `pip install` does for
        an installed copy. Without it, where PYTHONDONTWRITEBYTECODE is set (this machine sets it), every
        CLI call compiles each module it imports from source again: 0.03-0.1 s of CPU per call, which no
        installed migrate pays."""
        import compileall

        compileall.compile_dir(str(REPO / "migrate"), quiet=1)

    def emulator_root(self, scenario: str, rnd: int, tool: str) -> Path:
        """A new, empty filesystem-backend root for one fake-gcs-server."""
        return self.emulator_base / scenario / f"r{rnd}-{tool.replace(' ', '-')}"

    def close(self) -> None:
        shutil.rmtree(self.emulator_base, ignore_errors=True)

    # --- environment ---------------------------------------------------------------------------

    def base_env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in EMULATOR_VARS}
        env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        env.update(extra)
        return env

    def python(self, *args: str) -> list[str]:
        return [sys.executable, *args]

    def migrate(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "migrate", *args]

    def workdir(self, scenario: str, rnd: int, tool: str) -> Path:
        wd = self.run_dir / scenario / f"r{rnd}-{tool.replace(' ', '-')}"
        wd.mkdir(parents=True, exist_ok=True)
        return wd

    def cleanup(self, *paths: Path, force: bool = False) -> None:
        if self.s.keep and not force:
            return
        for p in paths:
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)

    # --- steps ---------------------------------------------------------------------------------

    def log(self, text: str) -> None:
        elapsed = time.monotonic() - self.started
        print(f"[{elapsed:7.1f}s] {text}", flush=True)

    def record(self, result: Result) -> Result:
        self.results.append(result)
        if result.ok:
            rss = f"{result.peak_rss / 2**20:.0f} MiB" if result.peak_rss else "-"
            self.log(
                f"{result.scenario} r{result.round} {result.tool}: ok  wall {result.wall:.2f}s  "
                f"cpu {result.cpu:.2f}s  rss {rss}"
            )
        else:
            self.log(f"{result.scenario} r{result.round} {result.tool}: FAILED  {result.error}")
        return result

    def fail(self, scenario: str, tool: str, rnd: int, error: str, aux: bool = False) -> Result:
        return self.record(Result(scenario, tool, rnd, ok=False, error=error, aux=aux))

    def step(
        self,
        scenario: str,
        tool: str,
        rnd: int,
        argv: list[str],
        *,
        env: dict[str, str],
        log_dir: Path,
        check: CheckFn | None = None,
        aux: bool = False,
        cwd: Path | None = None,
    ) -> Result:
        """Run argv measured; a non-zero exit or a failed check makes the step fail."""
        m = run_measured(argv, env=env, cwd=cwd or log_dir, log_dir=log_dir, timeout=self.s.timeout)
        res = Result(
            scenario,
            tool,
            rnd,
            ok=False,
            wall=round(m.wall, 4),
            cpu=round(m.cpu, 4),
            peak_rss=m.peak_rss,
            aux=aux,
            log_dir=str(log_dir),
            metrics={
                "cpu_user": round(m.cpu_user, 4),
                "cpu_sys": round(m.cpu_sys, 4),
                "max_proc_rss": m.max_proc_rss,
                "max_proc_rss_exact": m.max_proc_rss_exact,
            },
        )
        if m.timed_out:
            res.error = f"timed out after {self.s.timeout:.0f}s (killed)"
        elif m.returncode != 0:
            tail = m.stderr_tail(4).replace("\n", " | ") or m.stdout()[-300:].replace("\n", " | ")
            res.error = f"exit {m.returncode}: {tail[-400:]}"
        elif check is not None:
            try:
                ok, doc, metrics, error = check(m)
            except Exception as exc:  # a check that crashes is a failed check, never a pass
                ok, doc, metrics, error = False, {}, {}, f"check crashed: {type(exc).__name__}: {exc}"
            res.ok, res.check, res.error = ok, doc, error
            res.metrics.update(metrics)
        else:
            res.ok = True
        return self.record(res)
