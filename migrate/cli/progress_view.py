"""The `migrate run` display, fed by progress Events from any thread.

Workers only bump counters under a lock (`__call__`); what is drawn is computed from those
counters by one renderer: rich's Live thread on a terminal, or a ticker thread that writes one
status line to stderr every few seconds when there is no terminal (logs, CI).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass

from rich.console import Group
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from migrate.cli import render
from migrate.progress import Event
from migrate.units import format_bytes, format_duration

WINDOW = 10.0  # seconds of history behind the displayed rates


@dataclass
class Counters:
    phase: str = "starting"
    objects_total: int = 0
    bytes_total: int = 0
    objects_done: int = 0
    bytes_sent: int = 0
    bytes_reused: int = 0
    failed: int = 0
    source_changed: int = 0
    retries: int = 0
    event_files: int = 0
    events_total: int = 0
    events: int = 0
    event_bytes: int = 0
    quarantined: int = 0


class RunProgress:
    """A Reporter; use as a context manager around run_plan. mode: 'rich', 'lines' or 'off'."""

    def __init__(self, mode: str = "rich", *, interval: float = 5.0) -> None:
        self.mode = mode
        self.interval = interval
        self.c = Counters()
        self._lock = threading.Lock()
        self._started = time.monotonic()
        self._samples: deque[tuple[float, int, int]] = deque()  # (time, bytes sent, events)
        self._live: Live | None = None
        self._ticker: threading.Thread | None = None
        self._closing = threading.Event()

    # -- the Reporter

    def __call__(self, event: Event) -> None:
        c = self.c
        kind = event.kind
        with self._lock:
            if kind == "bytes":
                c.bytes_sent += event.n
            elif kind == "object_done":
                c.objects_done += 1
                c.bytes_reused += int(event.data.get("reused", 0) or 0)
            elif kind == "object_failed":
                c.failed += 1
            elif kind == "source_changed":
                c.source_changed += 1
            elif kind == "retry":
                c.retries += 1
            elif kind == "events":
                c.events += event.n
                c.event_bytes += int(event.data.get("bytes", 0) or 0)
            elif kind == "quarantined":
                c.quarantined += event.n
            elif kind == "phase":
                c.phase = event.name
            elif kind == "start":
                d = event.data
                c.objects_total = int(d.get("objects", 0))
                c.bytes_total = int(d.get("bytes", 0))
                c.event_files = int(d.get("files", 0))
                c.events_total = int(d.get("events", 0))
                self._started = time.monotonic()
                self._samples.clear()
                self._samples.append((self._started, c.bytes_sent, c.events))
            elif kind == "finish":
                c.phase = "finished"
        if kind == "identity" and self.mode != "off":
            render.identity(event.data, err=True)

    # -- numbers shared by both displays

    def _rates(self) -> tuple[float, float]:
        """(bytes/s, events/s) over the last WINDOW seconds."""
        t = time.monotonic()
        with self._lock:
            sample = (t, self.c.bytes_sent, self.c.events)
        self._samples.append(sample)
        while len(self._samples) > 2 and t - self._samples[0][0] > WINDOW:
            self._samples.popleft()
        t0, b0, e0 = self._samples[0]
        dt = t - t0
        if dt <= 0:
            return 0.0, 0.0
        return max(0.0, (sample[1] - b0) / dt), max(0.0, (sample[2] - e0) / dt)

    def _eta(self, rate: float) -> str:
        c = self.c
        left = c.bytes_total - c.bytes_sent - c.bytes_reused
        if rate <= 0 or left <= 0 or c.phase != "copying objects":
            return "-"
        return format_duration(left / rate)

    def line(self) -> str:
        """One status line (the no-terminal display)."""
        c = self.c
        rate, ev_rate = self._rates()
        parts = [f"[{format_duration(time.monotonic() - self._started)}] {c.phase}"]
        if c.objects_total:
            done = c.bytes_sent + c.bytes_reused
            pct = 100.0 * done / c.bytes_total if c.bytes_total else 100.0
            parts.append(
                f"objects {c.objects_done:,}/{c.objects_total:,}, {format_bytes(done)}/{format_bytes(c.bytes_total)}"
                f" ({pct:.0f}%), {format_bytes(rate)}/s, ETA {self._eta(rate)}"
            )
        if c.event_files or c.events:
            parts.append(f"events {c.events:,}/{c.events_total:,}, {ev_rate:,.0f}/s, quarantined {c.quarantined:,}")
        parts.append(f"retries {c.retries:,}, failed {c.failed:,}, source-changed {c.source_changed:,}")
        return " | ".join(parts)

    def renderable(self) -> Group:
        c = self.c
        rate, ev_rate = self._rates()
        grid = Table.grid(padding=(0, 2))
        grid.add_column(min_width=8)
        grid.add_column(width=32)
        grid.add_column()
        if c.objects_total:
            done = c.bytes_sent + c.bytes_reused
            grid.add_row(
                Text("objects", style="bold"),
                ProgressBar(total=max(c.bytes_total, 1), completed=min(done, c.bytes_total), width=32),
                Text(
                    f"{c.objects_done:,}/{c.objects_total:,} files  {format_bytes(done)}/{format_bytes(c.bytes_total)}"
                    f"  {format_bytes(rate)}/s  ETA {self._eta(rate)}"
                ),
            )
        if c.event_files or c.events:
            grid.add_row(
                Text("events", style="bold"),
                ProgressBar(total=max(c.events_total, 1), completed=min(c.events, c.events_total), width=32),
                Text(
                    f"{c.events:,}/{c.events_total:,}  {ev_rate:,.0f} ev/s  {format_bytes(c.event_bytes)}"
                    f"  quarantined {c.quarantined:,}"
                ),
            )
        status = Text(
            f"{c.phase} · {format_duration(time.monotonic() - self._started)} · retries {c.retries:,}"
            f" · failed {c.failed:,} · source-changed {c.source_changed:,}",
            style="red" if c.failed else "dim",
        )
        return Group(grid, status)

    # -- lifecycle

    def __enter__(self) -> RunProgress:
        if self.mode == "rich":
            self._live = Live(
                get_renderable=self.renderable, console=render.err_console, refresh_per_second=4, transient=False
            )
            self._live.__enter__()
        elif self.mode == "lines":
            self._ticker = threading.Thread(target=self._tick, name="migrate-progress", daemon=True)
            self._ticker.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._closing.set()
        if self._live is not None:
            self._live.__exit__(*exc)
            self._live = None
        if self._ticker is not None:
            self._ticker.join(timeout=1.0)
            self._ticker = None
            if self.c.phase != "starting":
                self._print_line()

    def _tick(self) -> None:
        while not self._closing.wait(self.interval):
            self._print_line()

    def _print_line(self) -> None:
        render.err_console.print(Text(self.line()), highlight=False, soft_wrap=True)


def mode_for(*, as_json: bool, quiet: bool) -> str:
    if as_json or quiet:
        return "off"
    return "rich" if render.err_console.is_terminal else "lines"
