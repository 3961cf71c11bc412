"""Helpers for the reliability suite (imported by its test modules).

Drive the real CLI in subprocesses and judge its output.

Every scenario here runs `python -m migrate ...` as an operator would, so exit codes, stderr and
tracebacks are what a person sees.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import signal
import subprocess
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path

CLI_TIMEOUT = 240.0
# Never let rich wrap an error line: a one-line message must stay one line.
_ENV_FIXED = {"COLUMNS": "400", "NO_COLOR": "1", "TERM": "dumb", "PYTHONUNBUFFERED": "1"}


@dataclass
class CliResult:
    args: list[str]
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def json(self) -> dict:
        return json.loads(self.stdout)

    def error_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.startswith("error:")]

    def __str__(self) -> str:  # shown by failing asserts
        head = f"$ migrate {' '.join(self.args)}\n-> exit {self.returncode}"
        return f"{head}\n--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}"


def cli_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.update(_ENV_FIXED)
    if extra:
        env.update(extra)
    return env


def run_cli(
    *args: str | os.PathLike, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = CLI_TIMEOUT
) -> CliResult:
    """Run `python -m migrate ARGS` to completion."""
    argv = [str(a) for a in args]
    proc = subprocess.run(
        [sys.executable, "-m", "migrate", *argv],
        cwd=cwd,
        env=cli_env(env),
        capture_output=True,
        text=True,
        errors="replace",
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    return CliResult(argv, proc.returncode, proc.stdout, proc.stderr)


def start_cli(
    *args: str | os.PathLike, cwd: Path | None = None, env: dict[str, str] | None = None, log_dir: Path
) -> tuple[subprocess.Popen, Path, Path]:
    """Start `python -m migrate ARGS` in its own process group; output goes to files in log_dir."""
    log_dir.mkdir(parents=True, exist_ok=True)
    n = len(list(log_dir.glob("*.stdout")))
    out_path, err_path = log_dir / f"{n:03d}.stdout", log_dir / f"{n:03d}.stderr"
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "migrate", *[str(a) for a in args]],
            cwd=cwd,
            env=cli_env(env),
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    return proc, out_path, err_path


def kill_group(proc: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
    """Signal the process group this test started (never anything else)."""
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass
    proc.wait(timeout=30)


def assert_no_traceback(res: CliResult) -> None:
    assert "Traceback (most recent call last)" not in res.output, str(res)
    assert 'File "' not in res.stderr, str(res)


def assert_clean_error(res: CliResult, exit_code: int, *must_contain: str) -> str:
    """Exit code as expected, no traceback, at least one `error:` line; every word on one error line."""
    assert res.returncode == exit_code, str(res)
    assert_no_traceback(res)
    lines = res.error_lines()
    assert lines, str(res)
    for word in must_contain:
        assert any(word in line for line in lines), f"{word!r} not on any error line\n{res}"
    return "\n".join(lines)


# --- data builders -------------------------------------------------------------------------------


def write_jsonl_gz(path: Path, lines: list[bytes]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wb") as fh:
        fh.write(b"".join(line + b"\n" for line in lines))


def event_line(event_id: str, **extra: object) -> bytes:
    rec = {"event_id": event_id, "ts": "2026-01-01T00:00:00Z", "user_id": "u1", **extra}
    return json.dumps(rec, separators=(",", ":")).encode()


# --- a hostile estate: every awkward thing a data center holds, in one small tree ----------------

OVERSIZED_BYTES = 10 * 1000 * 1000 + 200_000  # one event over Pub/Sub's 10 MB limit
LONG_DIR = "d" * 200


@dataclass
class HostileEstate:
    root: Path
    config: Path
    tree: Path
    good_files: dict[str, bytes]  # relpath -> content: must arrive byte for byte
    anomalies: dict[str, str]  # display relpath -> word the reason must contain
    jsonl_valid_ids: list[str]  # event ids that must arrive (truncated gzip: those before the cut)
    csv_valid_ids: list[str]
    jsonl_bad: int  # malformed JSONL lines (incl. the truncated tail)
    jsonl_oversized: int
    csv_bad: int
    truncated_log: Path


def toml_str(value: object) -> str:
    return json.dumps(str(value), ensure_ascii=False)


def estate_config(
    root: Path,
    *,
    bucket: str,
    topic: str,
    csv_topic: str,
    tree: Path,
    jsonl_glob: str,
    csv_glob: str,
    extra: str = "",
) -> Path:
    text = f"""
[project]
id = "test-project"
state_dir = {toml_str(root / "state")}
plans_dir = {toml_str(root / "plans")}

[[catalog]]
name = "audio"
root = {toml_str(tree)}
bucket = {toml_str(bucket)}
prefix = "audio/"

[[listeners]]
name = "plays"
paths = [{toml_str(jsonl_glob)}]
format = "jsonl"
topic = {toml_str(topic)}
event_id_field = "event_id"
event_time_field = "ts"

[[listeners]]
name = "skips"
paths = [{toml_str(csv_glob)}]
format = "csv"
topic = {toml_str(csv_topic)}
event_id_field = "event_id"

[transfer]
workers = 2
retry_initial_delay = 0.05
retry_max_delay = 0.5
retry_deadline = 20
timeout = 10

[pubsub]
publish_timeout = 10
{extra}
"""
    path = root / "migrate.toml"
    path.write_text(text, encoding="utf-8")
    return path


def build_hostile_estate(root: Path, *, bucket: str, topic: str, csv_topic: str) -> HostileEstate:
    """A tree and logs holding every hostile input of the spec, with what must happen to each."""
    tree = root / "tree"
    tree.mkdir(parents=True)
    good: dict[str, bytes] = {
        "plain.ogg": b"OggS plain",
        "empty.ogg": b"",  # 0-byte files must arrive
        "nested/empty too.flac": b"",
        "space and # hash?.ogg": b"OggS odd but legal",
        "ünï/音楽 100%.ogg": "unicode ✓".encode(),
        "deep/" + "/".join([LONG_DIR] * 4) + "/fits.ogg": b"OggS just under 1024 bytes",
    }
    for rel, data in good.items():
        p = tree / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    anomalies: dict[str, str] = {}
    (tree / "line\nbreak.ogg").write_bytes(b"OggS")
    anomalies["line\\nbreak.ogg"] = "CR or LF"
    with open(os.fsencode(tree) + b"/bad-\xff\xfe.ogg", "wb") as fh:
        fh.write(b"OggS")
    anomalies["bad-\\xff\\xfe.ogg"] = "UTF-8"
    too_long = tree / "deep" / "/".join([LONG_DIR] * 5)
    too_long.mkdir(parents=True)
    (too_long / "too-long.ogg").write_bytes(b"OggS")
    anomalies["deep/" + "/".join([LONG_DIR] * 5) + "/too-long.ogg"] = "1024"
    os.mkfifo(tree / "stuck.ogg")
    anomalies["stuck.ogg"] = "FIFO"
    os.symlink(".", tree / "loop")  # a symlink loop
    os.symlink("plain.ogg", tree / "link.ogg")

    logs = root / "logs"
    jsonl_ids: list[str] = []
    lines: list[bytes] = []
    for i in range(40):
        jsonl_ids.append(f"evt-a-{i:04d}")
        lines.append(event_line(jsonl_ids[-1]))
    lines.insert(5, b"not json at all")
    lines.insert(9, b'{"event_id": "broken", "ts": ')
    lines.insert(12, b'{"ts": "2026-01-01T00:00:00Z"}')  # no event_id
    lines.insert(20, event_line("evt-huge", blob="x" * OVERSIZED_BYTES))
    write_jsonl_gz(logs / "plays" / "a.jsonl.gz", lines)
    # a truncated gzip: the events before the cut arrive, the tail is quarantined
    trunc_lines = [event_line(f"evt-t-{i:04d}", pad="p" * 300) for i in range(400)]
    whole = logs / "plays" / "whole.tmp"
    write_jsonl_gz(whole, trunc_lines)
    blob = whole.read_bytes()
    whole.unlink()
    truncated = logs / "plays" / "b-truncated.jsonl.gz"
    truncated.write_bytes(blob[: len(blob) * 2 // 3])
    # what decompresses before the cut, read the way a streaming reader sees it
    seen = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(truncated.read_bytes())
    complete = seen.count(b"\n")
    trunc_ids = [f"evt-t-{i:04d}" for i in range(complete)]
    partial_tail = 1 if len(seen) > seen.rfind(b"\n") + 1 else 0

    csv_dir = logs / "skips"
    csv_dir.mkdir(parents=True)
    csv_ids = [f"skip-{i:03d}" for i in range(12)]
    rows = ["event_id,user_id,ts"] + [f"{e},u{i},2026-01-02T00:00:00Z" for i, e in enumerate(csv_ids)]
    rows.insert(4, "only-two,columns")
    rows.insert(7, 'bad,"unclosed quote,2026')
    rows.insert(9, "a,b,c,d,too many")
    (csv_dir / "skips.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")

    config = estate_config(
        root,
        bucket=bucket,
        topic=topic,
        csv_topic=csv_topic,
        tree=tree,
        jsonl_glob=str(logs / "plays" / "*.jsonl.gz"),
        csv_glob=str(csv_dir / "*.csv"),
    )
    return HostileEstate(
        root=root,
        config=config,
        tree=tree,
        good_files=good,
        anomalies=anomalies,
        jsonl_valid_ids=jsonl_ids + trunc_ids,
        csv_valid_ids=csv_ids,
        jsonl_bad=3 + partial_tail,
        jsonl_oversized=1,
        csv_bad=3,
        truncated_log=truncated,
    )


# --- a proxy that records every object write fake-gcs-server acknowledged --------------------------


class _Replay:
    """An upstream response whose (small) body was read to inspect it, replayed to the proxy."""

    def __init__(self, resp, body: bytes) -> None:
        self.status, self.reason = resp.status, resp.reason
        self._headers = [(k, v) for k, v in resp.getheaders() if k.lower() != "transfer-encoding"]
        self._headers = [(k, v) for k, v in self._headers if k.lower() != "content-length"]
        self._headers.append(("Content-Length", str(len(body))))
        self._body = io.BytesIO(body)

    def getheader(self, name: str, default=None):
        for k, v in self._headers:
            if k.lower() == name.lower():
                return v
        return default

    def getheaders(self):
        return list(self._headers)

    def read(self, n: int = -1) -> bytes:
        return self._body.read(n)


def write_recording_proxy(upstream: str, **kwargs):
    """A tests/faultproxy.FaultProxy (rate 0 unless given) that also records, per (bucket, object),
    every generation the server created: `proxy.writes[(bucket, name)] -> list of generations`.

    A write counts when the server answered it, whether or not the client heard the answer (a
    stalled response still created the object), so more than one generation means an overwrite.
    """
    from faultproxy import FaultProxy, _Handler

    class Handler(_Handler):
        def _forward(self):
            resp, conn = super()._forward()
            if self.command in ("POST", "PUT") and 200 <= resp.status < 300:
                body = resp.read()
                self.proxy.record_write(body)
                return _Replay(resp, body), conn
            return resp, conn

    class RecordingProxy(FaultProxy):
        def __init__(self, *a, **kw) -> None:
            kw.setdefault("rate", 0.0)
            super().__init__(*a, **kw)
            self._server.RequestHandlerClass = Handler
            self.writes: dict[tuple[str, str], list[str]] = {}

        def record_write(self, body: bytes) -> None:
            try:
                doc = json.loads(body)
            except ValueError:
                return
            if isinstance(doc, dict) and doc.get("kind") == "storage#object" and "generation" in doc:
                with self._lock:
                    self.writes.setdefault((doc["bucket"], doc["name"]), []).append(str(doc["generation"]))

    return RecordingProxy(upstream, **kwargs)


# --- draining a topic through an audit subscription of the test's own --------------------------------


def create_audit_subscription(project: str, topic: str, name: str) -> str:
    from migrate import clients

    sub = clients.subscriber_client()
    try:
        path = sub.subscription_path(project, name)
        sub.create_subscription(name=path, topic=f"projects/{project}/topics/{topic}", ack_deadline_seconds=60)
        return path
    finally:
        sub.close()


# --- a mixed estate (objects and events) sized so that a run takes several seconds ----------------


@dataclass
class MixedEstate:
    root: Path
    config: Path
    plans: Path
    ledger: str
    truth: object  # migrate.local.datagen.Estate, with the large files added to its audio numbers
    topic: str
    buckets: list[str]

    @property
    def totals(self) -> dict:
        t = self.truth
        return {"bytes": t.total_bytes, "events": t.events() + t.malformed()}  # type: ignore[attr-defined]


def mixed_estate(
    tmp_path: Path,
    gcs_client,
    project: str,
    *,
    large_mib: tuple[int, ...] = (6, 6),
    transfer: dict | None = None,
    pubsub: dict | None = None,
    seed: int = 7,
    publisher=None,
) -> MixedEstate:
    """datagen at small scale plus a few large files; buckets, topic and verification subscription created.

    `transfer` / `pubsub` override settings (TOML values as Python values).
    """
    import random
    import uuid

    from migrate import clients, names
    from migrate.local import datagen

    tag = f"m{uuid.uuid4().hex[:10]}"
    root = tmp_path / "dc"
    est = datagen.generate(root, scale=0.05, seed=seed, project=project, bucket_prefix=tag, topic_prefix=tag)
    rng = random.Random(seed)
    for i, mib in enumerate(large_mib):
        data = rng.randbytes(mib * 1024 * 1024)
        path = root / "catalog" / "audio" / "_large" / f"big-{i}.flac"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        est.catalog["audio"].files += 1
        est.catalog["audio"].bytes += len(data)
    config = datagen.write_estate_config(root, project=project, buckets=est.buckets, topics=est.topics, workers=2)
    settings = {
        "transfer": {
            "bandwidth_limit": "4MiB/s",
            "large_file_threshold": "2MiB",
            "chunk_size": "512KiB",
            "retry_initial_delay": 0.05,
            "retry_max_delay": 1.0,
            "retry_deadline": 30,
            "timeout": 10,
            **(transfer or {}),
        },
        "pubsub": {"events_per_second": 120, "publish_timeout": 10, "batch_max_messages": 50, **(pubsub or {})},
    }
    text = config.read_text()
    for key, value in settings["transfer"].items():
        text = _set_key(text, key, value)
    text += "\n[pubsub]\n" + "".join(f"{k} = {_toml(v)}\n" for k, v in settings["pubsub"].items())
    config.write_text(text)
    for b in est.buckets.values():
        gcs_client.create_bucket(b)
    topic = est.topics["plays"]
    pub = publisher or clients.publisher_client()
    sub = clients.subscriber_client()
    try:
        topic_path = pub.topic_path(project, topic)
        pub.create_topic(name=topic_path)
        sub.create_subscription(
            name=sub.subscription_path(project, names.verification_subscription(topic)), topic=topic_path
        )
    finally:
        sub.close()
    return MixedEstate(
        root=root,
        config=config,
        plans=root / "plans",
        ledger=str(root / ".migrate" / "ledger.sqlite"),
        truth=est,
        topic=topic,
        buckets=list(est.buckets.values()),
    )


def _toml(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    return json.dumps(str(v))


def _set_key(text: str, key: str, value: object) -> str:
    """Set key in the [transfer] table of a datagen config (the file's last table)."""
    import re

    line = f"{key} = {_toml(value)}"
    pattern = re.compile(rf"^{re.escape(key)} = .*$", re.M)
    if pattern.search(text.split("[transfer]", 1)[1]):
        head, tail = text.split("[transfer]", 1)
        return head + "[transfer]" + pattern.sub(line, tail, count=1)
    return text.rstrip("\n") + "\n" + line + "\n"


def planned_objects(manifest: Path) -> set[tuple[str, str]]:
    """(bucket, object) of every object item in a plan manifest."""
    out = set()
    with open(manifest, encoding="utf-8") as fh:
        for line in fh:
            item = json.loads(line)
            if item["kind"] == "object":
                out.add((item["bucket"], item["object"]))
    return out


def find_key(doc: object, key: str) -> object:
    """The first value of `key` anywhere in a JSON document (depth first), or None."""
    if isinstance(doc, dict):
        if key in doc:
            return doc[key]
        children = list(doc.values())
    elif isinstance(doc, list):
        children = doc
    else:
        return None
    for child in children:
        got = find_key(child, key)
        if got is not None:
            return got
    return None
