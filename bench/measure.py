"""Run one tool as a child process and measure it: wall time, CPU time and peak RSS.

CPU time is the user+sys time of the child and every descendant it waited for, as the kernel reports
it through wait4(2); the emulators run in their own processes and are never counted. Peak RSS is the
larger of two figures: the kernel's high-water mark of the largest single process in the tree
(ru_maxrss), and the largest sum of proportional set sizes (PSS: shared pages split between
the processes sharing them) over the whole process tree seen by a sampler (every SAMPLE_SECONDS).
The second matters for tools that fork workers (gcloud), where summing RSS would count the pages
the workers share with their parent several times.

ru_maxrss of a process started by this (large) Python process would include the memory image it had
before exec, so the tool is started through GNU time (/usr/bin/time, a small C program) and its
figure is read from there; without GNU time it falls back to our own wait4, flagged as inflated.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

SAMPLE_SECONDS = 0.1
_PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass
class Measured:
    """One finished child process."""

    argv: list[str]
    returncode: int
    wall: float
    cpu_user: float
    cpu_sys: float
    peak_rss: int  # bytes
    max_proc_rss: int  # bytes: the kernel's high-water mark of the largest single process
    max_proc_rss_exact: bool  # False when it may include this harness's image (no GNU time)
    timed_out: bool
    stdout_path: Path
    stderr_path: Path

    @property
    def cpu(self) -> float:
        return self.cpu_user + self.cpu_sys

    def stdout(self) -> str:
        return _read(self.stdout_path)

    def stderr_tail(self, lines: int = 8) -> str:
        text = _read(self.stderr_path).strip().splitlines()
        return "\n".join(text[-lines:])


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return kids
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as fh:
                kids.extend(int(x) for x in fh.read().split())
        except OSError:
            continue
    return kids


def _pss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as fh:
            for line in fh:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:  # no smaps_rollup: resident pages
        with open(f"/proc/{pid}/statm") as fh:
            return int(fh.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return 0


def tree_memory(root_pid: int) -> int:
    """Sum of PSS (bytes) of a process and all its live descendants."""
    total = 0
    stack = [root_pid]
    seen: set[int] = set()
    while stack:
        pid = stack.pop()
        if pid in seen:
            continue
        seen.add(pid)
        total += _pss(pid)
        stack.extend(_children(pid))
    return total


class _Sampler(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.peak = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.peak = max(self.peak, tree_memory(self.pid))
            self._stop_event.wait(SAMPLE_SECONDS)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


def run_measured(
    argv: list[str],
    *,
    env: dict[str, str],
    cwd: Path,
    log_dir: Path,
    timeout: float,
    stdout_name: str = "stdout.txt",
) -> Measured:
    """Run argv to completion (or until `timeout`, then kill its process group) and measure it."""
    log_dir.mkdir(parents=True, exist_ok=True)
    out_path = log_dir / stdout_name
    err_path = log_dir / "stderr.txt"
    usage_path = log_dir / "rusage.txt"
    gnu_time = shutil.which("time", path="/usr/bin:/bin")
    full = [gnu_time, "-f", "%M", "-o", str(usage_path), "--", *argv] if gnu_time else list(argv)
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(
            full, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=err, start_new_session=True
        )
    sampler = _Sampler(proc.pid)
    sampler.start()
    timed_out = threading.Event()

    def _kill() -> None:
        timed_out.set()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)

    timer = threading.Timer(timeout, _kill)
    timer.daemon = True
    timer.start()
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    finally:
        timer.cancel()
    wall = time.perf_counter() - start
    sampler.stop()
    proc.returncode = os.waitstatus_to_exitcode(status)
    # Whatever the tool left behind in its session (it should be nothing) must not outlive it.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    max_proc = usage.ru_maxrss * 1024
    exact = False
    if gnu_time:
        with contextlib.suppress(OSError, ValueError, IndexError):
            max_proc = int(usage_path.read_text().split()[-1]) * 1024
            exact = True
    return Measured(
        argv=list(argv),
        returncode=proc.returncode,
        wall=wall,
        cpu_user=usage.ru_utime,
        cpu_sys=usage.ru_stime,
        peak_rss=max(max_proc, sampler.peak),
        max_proc_rss=max_proc,
        max_proc_rss_exact=exact,
        timed_out=timed_out.is_set(),
        stdout_path=out_path,
        stderr_path=err_path,
    )
