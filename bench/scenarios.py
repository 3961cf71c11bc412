"""The scenarios: S1-S3 object copies (with S5 verify and no-op re-runs riding on S1), S4 event
replay, S6 inventory of a large tree. Each round runs the tools interleaved, each in a fresh emulator."""

from __future__ import annotations

import contextlib
import json
import subprocess
from collections.abc import Callable
from pathlib import Path

from bench import datasets, events_extra, peers
from bench.gcs import check_bucket, create_bucket
from bench.measure import Measured
from bench.migrate_side import inventory_files, plan_path, write_config
from bench.pubsub import PROJECT, create_topic, drain
from bench.runner import Result, Session

BUCKET = "bench-target"
PREFIX = "catalog/"
TOPIC = "bench-plays"
MiB = 1024 * 1024

E2E = "migrate end to end"  # inventory + plan + run of one round, the compared row of every object scenario
OBJECT_TOOLS = ["migrate", "rclone", "gcloud", "raw"]
# S2 also runs migrate without its write ramp: at defaults a bucket's object writes start at 1,000/s
# (https://cloud.google.com/storage/docs/request-rate), which caps 20,000 small files at about 20 s on any
# machine; the extra row shows the per-file cost that the ramp hides. No peer ramps.
NO_RAMP = " (ramp_up = false)"
EXTRA_TOOLS = {"S2": ["migrate-noramp"]}
OBJECT_LABELS = {
    "migrate": E2E,
    "migrate-noramp": E2E + NO_RAMP,
    "rclone": "rclone copy --transfers 8",
    "gcloud": "gcloud storage rsync -r",
    "raw": "raw floor",
}
EVENT_TOOLS = ["migrate", "keyed", "loop", "raw"]
EVENT_LABELS = {"migrate": "migrate run", "loop": "PublisherClient loop", "raw": "raw publish ceiling"}
EVENT_LABELS["keyed"] = events_extra.KEYED_LABEL
S5_ROWS = {
    "migrate": [("S5-verify", "migrate verify"), ("S5-verify", "rclone check"), ("S5-noop", "migrate run")],
    "rclone": [("S5-noop", OBJECT_LABELS["rclone"])],
    "gcloud": [("S5-noop", OBJECT_LABELS["gcloud"])],
}
S6_LABELS = {"migrate": "migrate inventory", "find": "find -printf"}
OBJECT_SCENARIOS = ("S1", "S1b", "S2", "S3")
# S7: the same copies through a proxy that adds LATENCY seconds to every response (a WAN round trip)
LATENCY = 0.030
LATENCY_TOOLS = ["migrate", "rclone", "rclone64", "gcloud"]
LATENCY_LABELS = OBJECT_LABELS | {"rclone64": "rclone copy --transfers 64"}
LATENCY_CASES = {"S7-S1": "S1", "S7-S2": "S7-S2"}  # S7 case -> the dataset it copies


def sizes(quick: bool, scale: float = 1.0) -> dict:
    if quick:
        return {
            "S1": dict(audio=6, audio_min=64 * 1024, audio_max=256 * 1024, meta=20, meta_max=2000),
            "S1b": dict(
                art=20, art_min=8 * 1024, art_max=64 * 1024, masters=1, master_min=MiB, master_max=2 * MiB, depth=7
            ),
            "S2": dict(count=60, size_min=1024, size_max=4096),
            "S3": dict(count=2, size=3 * MiB),
            "S4": dict(events=3000, files=3),
            "S6": dict(count=3000),
            "S7-S2": dict(count=60, size_min=1024, size_max=4096),
        }

    def n(x: int) -> int:
        return max(1, int(x * scale))

    return {
        "S1": dict(audio=n(200), audio_min=1 * MiB, audio_max=5 * MiB, meta=n(2000), meta_max=2000),
        "S1b": dict(
            art=n(600),
            art_min=200 * 1024,
            art_max=1 * MiB,
            masters=n(5),
            master_min=20 * MiB,
            master_max=60 * MiB,
            depth=8,
        ),  # fmt: skip
        "S2": dict(count=n(20_000), size_min=1024, size_max=4096),
        "S3": dict(count=2, size=n(256 * MiB)),
        "S4": dict(events=n(1_000_000), files=10),
        "S6": dict(count=n(1_000_000)),
        # S2's shape at a quarter of its size: at 30 ms a request the slower peers take minutes per round
        "S7-S2": dict(count=n(5_000), size_min=1024, size_max=4096),
    }


def _bucket_check(endpoint: str, dataset: datasets.Dataset) -> Callable[[Measured], tuple]:
    def check(_: Measured) -> tuple[bool, dict, dict, str | None]:
        c = check_bucket(endpoint, BUCKET, PREFIX, dataset)
        error = None if c.ok else f"destination does not hold the data: {c.summary()}"
        return c.ok, c.to_dict(), {}, error

    return check


def _unchanged_check(endpoint: str, dataset: datasets.Dataset, before: dict[str, str]) -> Callable:
    """A no-op re-run must leave the data in place and write no new generation of any object."""

    def check(_: Measured) -> tuple[bool, dict, dict, str | None]:
        c = check_bucket(endpoint, BUCKET, PREFIX, dataset)
        rewritten = sum(1 for name, gen in c.generations.items() if before.get(name) != gen)
        doc = c.to_dict() | {"rewritten": rewritten}
        if not c.ok:
            return False, doc, {}, f"destination no longer holds the data: {c.summary()}"
        if rewritten:
            return False, doc, {}, f"not a no-op: wrote {rewritten} objects again"
        return True, doc, {}, None

    return check


class Scenarios:
    def __init__(self, session: Session) -> None:
        self.x = session
        self.s = session.s
        self.data_dir = self.s.work / "data"
        self.size = sizes(self.s.quick, self.s.scale)
        self.gcloud_dir = session.run_dir / "gcloud-config"
        self._gcloud_warm = False

    # --- datasets ------------------------------------------------------------------------------

    def dataset(self, sid: str) -> datasets.Dataset:
        p, seed = self.size[sid], self.s.seed
        self.x.log(f"{sid}: preparing data {p}")
        make = {
            "S1": datasets.mixed_catalog,
            "S1b": datasets.artwork_estate,
            "S2": datasets.small_files,
            "S7-S2": datasets.small_files,
            "S3": datasets.large_files,
            "S4": datasets.event_logs,
            "S6": datasets.inventory_tree,
        }[sid]
        ds = make(self.data_dir, seed=seed, **p)
        self.x.datasets[sid] = ds.info
        return ds

    def _transfer(self, defaults: bool = False) -> dict:
        t: dict = {}
        if self.s.migrate_workers and not defaults:
            t["workers"] = self.s.migrate_workers
        if self.s.quick:
            t["large_file_threshold"] = "1MiB"  # so the small quick files still exercise the large-file path
        return t

    # --- S1-S3 (+ S5) --------------------------------------------------------------------------

    def _warm_up(self, ds: datasets.Dataset) -> None:
        """Untimed: read the source once so no tool pays for a cold page cache, and let gcloud create
        its private config directory's state, which its first call would otherwise be charged for."""
        for m in ds.iter_manifest():
            with open(ds.root / m["relpath"], "rb") as fh:
                while fh.read(datasets.CHUNK):
                    pass
        if not self._gcloud_warm:
            self._gcloud_warm = True
            cfg = peers.gcloud_config(self.gcloud_dir, "http://127.0.0.1:9")
            with contextlib.suppress(Exception):
                subprocess.run(
                    [peers.gcloud(), "config", "list"],
                    env=self.x.base_env(**peers.gcloud_env(cfg)),
                    capture_output=True,
                    timeout=120,
                )

    def object_scenario(self, sid: str, with_s5: bool) -> None:
        ds = self.dataset(sid)
        self._warm_up(ds)
        for rnd in range(1, self.s.rounds[sid] + 1):
            for tool in OBJECT_TOOLS + EXTRA_TOOLS.get(sid, []):
                self._object_run(sid, ds, tool, rnd, with_s5)

    def _object_run(self, sid: str, ds: datasets.Dataset, tool: str, rnd: int, with_s5: bool) -> None:

        label = OBJECT_LABELS[tool]
        wd = self.x.workdir(sid, rnd, tool)
        gcs_root = self.x.emulator_root(sid, rnd, tool)
        gcs = self._fresh_gcs(sid, label, rnd, gcs_root, wd)
        if gcs is None:
            return
        try:
            create_bucket(gcs.url, BUCKET)
            env = self.x.base_env(STORAGE_EMULATOR_HOST=gcs.url)
            check = _bucket_check(gcs.url, ds)
            if tool == "migrate":
                res = self._migrate_copy(sid, ds, rnd, wd, env, check)
            elif tool == "migrate-noramp":
                transfer = self._transfer() | {"ramp_up": False}
                res = self._migrate_copy(sid, ds, rnd, wd, env, check, transfer=transfer, tag=NO_RAMP)
            elif tool == "rclone":
                conf = peers.rclone_config(wd / "rclone.conf", gcs.url)
                argv = self._rclone_copy(conf, ds)
                res = self.x.step(sid, label, rnd, argv, env=env, log_dir=wd / "run", check=check)
            elif tool == "gcloud":
                res = self._gcloud_run(sid, label, rnd, ds, wd, gcs.url, env, check)
            else:
                argv = self.x.python(
                    "-m", "bench.rawfloor", "--endpoint", gcs.url, "--bucket", BUCKET, "--prefix", PREFIX,
                    "--threads", str(self.s.raw_threads), str(ds.root),
                )  # fmt: skip
                res = self.x.step(sid, label, rnd, argv, env=env, log_dir=wd / "run", check=check)
            if res.ok:
                self._add_rates(res, ds)
                if with_s5:
                    self._s5_followups(tool, ds, rnd, wd, gcs.url, env)
            elif with_s5:
                for scenario, label_s5 in S5_ROWS.get(tool, []):
                    self.x.fail(scenario, label_s5, rnd, f"not measured: {label} of S1 failed")
        except Exception as exc:
            self.x.fail(sid, label, rnd, f"harness error: {type(exc).__name__}: {exc}")
        finally:
            gcs.stop()
            self.x.cleanup(gcs_root, force=True)

    def _fresh_gcs(self, sid: str, label: str, rnd: int, gcs_root: Path, wd: Path):
        """A fresh fake-gcs-server for one timed run, or None (the round recorded as failed)."""
        from migrate.local.emulators import start_gcs

        try:
            return start_gcs(gcs_root, log_path=wd / "fake-gcs-server.log")
        except Exception as exc:
            self.x.fail(sid, label, rnd, f"could not start fake-gcs-server: {exc}")
            return None

    @staticmethod
    def _add_rates(res: Result, ds: datasets.Dataset) -> None:
        if res.wall:
            res.metrics["MiB_per_s"] = round(ds.bytes / MiB / res.wall, 2)
            res.metrics["files_per_s"] = round(ds.files / res.wall, 1)

    def _rclone_copy(self, conf: Path, ds: datasets.Dataset, transfers: int = 8) -> list[str]:
        rclone = peers.ensure_rclone()
        argv = [rclone, "--config", str(conf), "copy", "--transfers", str(transfers)]
        return argv + [str(ds.root), f"emu:{BUCKET}/{PREFIX}"]

    def _gcloud_argv(self, ds: datasets.Dataset) -> list[str]:
        return [peers.gcloud(), "storage", "rsync", "-r", str(ds.root), f"gs://{BUCKET}/{PREFIX.rstrip('/')}"]

    def _gcloud_run(self, sid, label, rnd, ds, wd, endpoint, env, check) -> Result:
        cfg = peers.gcloud_config(self.gcloud_dir, endpoint)
        env = env | peers.gcloud_env(cfg)
        return self.x.step(sid, label, rnd, self._gcloud_argv(ds), env=env, log_dir=wd / "run", check=check)

    def _migrate_prepare(
        self, sid: str, rnd: int, wd: Path, env: dict, cfg: Path, name: str, tag: str = ""
    ) -> list[Result] | None:
        inv = ["inventory", "-c", str(cfg), "--json"] + (["--hash"] if self.s.migrate_hash else [])
        argv = self.x.migrate(*inv)
        r1 = self.x.step(sid, f"migrate inventory{tag}", rnd, argv, env=env, log_dir=wd / "inventory", aux=True)
        if not r1.ok:
            return None
        argv = self.x.migrate("plan", "-c", str(cfg), "--name", name, "--json")
        r2 = self.x.step(sid, f"migrate plan{tag}", rnd, argv, env=env, log_dir=wd / "plan", aux=True)
        return [r1, r2] if r2.ok else None

    def _migrate_copy(self, sid, ds, rnd, wd, env, check, transfer: dict | None = None, tag: str = "") -> Result:
        """inventory, plan and run as three CLI calls; each is a row, and their sum is the end-to-end row.
        `tag` marks the rows of a non-default configuration (the labels get it appended)."""
        cfg = write_config(
            wd / "migrate.toml",
            wd,
            catalog={"name": "bench", "root": str(ds.root), "bucket": BUCKET, "prefix": PREFIX},
            transfer=self._transfer() if transfer is None else transfer,
        )
        name = "s1" if sid == "S1" else sid.lower().replace("-", "")
        prep = self._migrate_prepare(sid, rnd, wd, env, cfg, name, tag)
        if prep is None:
            self.x.fail(sid, E2E + tag, rnd, "migrate inventory/plan failed (see the rows below)")
            return self.x.fail(sid, f"migrate run{tag}", rnd, "migrate inventory/plan failed", aux=True)
        argv = self.x.migrate("run", "-c", str(cfg), str(plan_path(wd, name)), "--json")
        run = self.x.step(sid, f"migrate run{tag}", rnd, argv, env=env, log_dir=wd / "run", check=check, aux=True)
        steps = [*prep, run]
        e2e = Result(
            sid,
            E2E + tag,
            rnd,
            ok=run.ok,
            error=run.error,
            wall=round(sum(r.wall or 0 for r in steps), 4),
            cpu=round(sum(r.cpu or 0 for r in steps), 4),
            peak_rss=max(r.peak_rss or 0 for r in steps),
            check=run.check,
            log_dir=str(wd),
            metrics={"run_wall": run.wall, "inventory_wall": prep[0].wall, "plan_wall": prep[1].wall},
        )
        if run.ok:
            self._add_rates(run, ds)
        return self.x.record(e2e)

    def _s5_followups(self, tool: str, ds: datasets.Dataset, rnd: int, wd: Path, endpoint: str, env: dict) -> None:
        """On the destination a tool just filled: verify (migrate vs rclone check) and no-op re-runs."""
        before = check_bucket(endpoint, BUCKET, PREFIX, ds).generations
        same = _unchanged_check(endpoint, ds, before)
        if tool == "migrate":
            cfg, plan = wd / "migrate.toml", plan_path(wd, "s1")
            conf = peers.rclone_config(wd / "rclone.conf", endpoint)
            verify = self.x.migrate("verify", "-c", str(cfg), str(plan), "--json")
            check = [peers.ensure_rclone(), "--config", str(conf), "check", str(ds.root), f"emu:{BUCKET}/{PREFIX}"]
            steps = [("migrate verify", verify), ("rclone check", check)]
            for label, argv in steps if rnd % 2 else steps[::-1]:  # alternate who goes first
                self.x.step("S5-verify", label, rnd, argv, env=env, log_dir=wd / label.replace(" ", "-"), check=same)
            argv = self.x.migrate("run", "-c", str(cfg), str(plan), "--json")
            self.x.step("S5-noop", "migrate run", rnd, argv, env=env, log_dir=wd / "noop", check=same)
        elif tool == "rclone":
            argv = self._rclone_copy(wd / "rclone.conf", ds)
            self.x.step("S5-noop", OBJECT_LABELS[tool], rnd, argv, env=env, log_dir=wd / "noop", check=same)
        elif tool == "gcloud":
            env = env | peers.gcloud_env(peers.gcloud_config(self.gcloud_dir, endpoint))
            argv = self._gcloud_argv(ds)
            self.x.step("S5-noop", OBJECT_LABELS[tool], rnd, argv, env=env, log_dir=wd / "noop", check=same)

    # --- S7 ------------------------------------------------------------------------------------

    def latency_scenario(self) -> None:
        """S1 and a quarter of S2 through the latency proxy: migrate at its defaults against rclone
        (8 and 64 transfers) and gcloud storage, each on a fresh emulator behind a fresh proxy."""
        for case, data_sid in LATENCY_CASES.items():
            ds = self.dataset(data_sid)
            self.x.datasets[case] = ds.info
            self._warm_up(ds)
            for rnd in range(1, self.s.rounds["S7"] + 1):
                for tool in LATENCY_TOOLS:
                    self._latency_run(case, ds, tool, rnd)

    def _latency_run(self, sid: str, ds: datasets.Dataset, tool: str, rnd: int) -> None:
        from bench.latency import LatencyProxy

        label = LATENCY_LABELS[tool]
        wd = self.x.workdir(sid, rnd, tool)
        gcs_root = self.x.emulator_root(sid, rnd, tool)
        gcs = self._fresh_gcs(sid, label, rnd, gcs_root, wd)
        if gcs is None:
            return
        try:
            create_bucket(gcs.url, BUCKET)
            check = _bucket_check(gcs.url, ds)  # checked on the emulator itself, not through the proxy
            with LatencyProxy(gcs.url, LATENCY, log_path=wd / "proxy.log") as proxy:
                env = self.x.base_env(STORAGE_EMULATOR_HOST=proxy.url)
                if tool == "migrate":
                    # at its defaults: only quick mode's tiny large-file threshold, as in S1-S3
                    res = self._migrate_copy(sid, ds, rnd, wd, env, check, transfer=self._transfer(defaults=True))
                elif tool in ("rclone", "rclone64"):
                    conf = peers.rclone_config(wd / "rclone.conf", proxy.url)
                    argv = self._rclone_copy(conf, ds, transfers=64 if tool == "rclone64" else 8)
                    res = self.x.step(sid, label, rnd, argv, env=env, log_dir=wd / "run", check=check)
                else:
                    res = self._gcloud_run(sid, label, rnd, ds, wd, proxy.url, env, check)
            if res.ok:
                self._add_rates(res, ds)
        except Exception as exc:
            self.x.fail(sid, label, rnd, f"harness error: {type(exc).__name__}: {exc}")
        finally:
            gcs.stop()
            self.x.cleanup(gcs_root, force=True)

    # --- S4 ------------------------------------------------------------------------------------

    def events_scenario(self) -> None:
        ds = self.dataset("S4")
        for rnd in range(1, self.s.rounds["S4"] + 1):
            for tool in EVENT_TOOLS:
                self._events_run(ds, tool, rnd)

    def _events_run(self, ds: datasets.Dataset, tool: str, rnd: int) -> None:
        from migrate.local.emulators import start_pubsub
        from migrate.names import verification_subscription

        sid, label = "S4", EVENT_LABELS[tool]
        wd = self.x.workdir(sid, rnd, tool)
        try:
            ps = start_pubsub(wd / "pubsub", project=PROJECT, log_path=wd / "pubsub-emulator.log")
        except Exception as exc:
            self.x.fail(sid, label, rnd, f"could not start the Pub/Sub emulator: {exc}")
            return
        try:
            sub = verification_subscription(TOPIC)
            create_topic(ps.host, TOPIC, sub)
            # the plain migrate run is checked on a second subscription: `migrate verify` drains the first
            check_sub = events_extra.add_check_subscription(ps.host, PROJECT, TOPIC) if tool == "migrate" else sub
            env = self.x.base_env(PUBSUB_EMULATOR_HOST=ps.host)
            files = [str(p) for p in sorted((ds.root / "plays").glob("*.jsonl.gz"))]
            expected, digest = int(ds.info["events"]), ds.info["digest"]

            def check(m: Measured) -> tuple[bool, dict, dict, str | None]:
                metrics = {"events": expected, "events_per_s": round(expected / m.wall, 1)}
                if tool not in ("migrate", "keyed"):
                    # Our own peers: count the message ids the emulator returned (draining costs minutes).
                    published = json.loads(m.stdout().strip().splitlines()[-1])
                    doc = {"acked": published["published"], "expected": expected}
                    if tool == "raw":
                        metrics["publish_seconds"] = published["publish_seconds"]
                        metrics["events_per_s_publish_phase"] = round(expected / published["publish_seconds"], 1)
                    ok = published["published"] == expected
                    return ok, doc, metrics, None if ok else f"{published['published']} of {expected} acknowledged"
                # The tool under test: drain the verification subscription, count and digest every message.
                got = drain(ps.host, check_sub, expected)
                doc = got.to_dict() | {"expected": expected, "expected_digest": digest}
                if got.count != expected or got.digest != digest:
                    why = f"subscription holds {got.count} messages (expected {expected})"
                    if got.count == expected:
                        why = "subscription holds the expected count but other data (digest differs)"
                    return False, doc, metrics, why
                return True, doc, metrics, None

            if tool in ("migrate", "keyed"):
                listener = {
                    "name": "plays",
                    "paths": [str(ds.root / "plays" / "*.jsonl.gz")],
                    "format": "jsonl",
                    "topic": TOPIC,
                    "event_id_field": "event_id",
                    "event_time_field": "ts",
                }
                if tool == "keyed":
                    listener["ordering_key_field"] = events_extra.KEY_FIELD
                cfg = write_config(wd / "migrate.toml", wd, listener=listener)
                if not self._migrate_prepare(sid, rnd, wd, env, cfg, "s4"):
                    self.x.fail(sid, label, rnd, "migrate inventory/plan failed (see the rows above)")
                    return
                argv = self.x.migrate("run", "-c", str(cfg), str(plan_path(wd, "s4")), "--json")
            elif tool == "loop":
                argv = self.x.python("-m", "bench.pubsub_loop", "--project", PROJECT, "--topic", TOPIC, *files)
            else:
                argv = self.x.python("-m", "bench.pubsub_raw", "--project", PROJECT, "--topic", TOPIC, *files)
            res = self.x.step(sid, label, rnd, argv, env=env, log_dir=wd / "run", check=check)
            if tool == "migrate" and res.ok:
                argv = events_extra.verify_argv(self.x.migrate, cfg, plan_path(wd, "s4"))
                verified = events_extra.verify_check(expected)
                self.x.step(sid, events_extra.VERIFY_LABEL, rnd, argv, env=env, log_dir=wd / "verify", check=verified)
        except Exception as exc:
            self.x.fail(sid, label, rnd, f"harness error: {type(exc).__name__}: {exc}")
        finally:
            ps.stop()
            self.x.cleanup(wd / "pubsub")

    # --- S6 ------------------------------------------------------------------------------------

    def inventory_scenario(self) -> None:
        ds = self.dataset("S6")
        expected_lines = ds.files + int(ds.info["dirs"])
        for rnd in range(1, self.s.rounds["S6"] + 1):
            for tool in ("migrate", "find"):
                label = S6_LABELS[tool]
                wd = self.x.workdir("S6", rnd, tool)
                env = self.x.base_env()
                try:
                    if tool == "migrate":
                        cfg = write_config(
                            wd / "migrate.toml", wd, catalog={"name": "bench", "root": str(ds.root), "bucket": BUCKET}
                        )

                        def check(m: Measured) -> tuple[bool, dict, dict, str | None]:
                            files = inventory_files(m.stdout())
                            ok = files == ds.files
                            return ok, {"files": files}, {}, None if ok else f"inventoried {files} of {ds.files}"

                        argv = self.x.migrate("inventory", "-c", str(cfg), "--json")
                    else:

                        def check(m: Measured) -> tuple[bool, dict, dict, str | None]:
                            with open(m.stdout_path, "rb") as fh:
                                lines = sum(block.count(b"\n") for block in iter(lambda: fh.read(1 << 20), b""))
                            ok = lines == expected_lines
                            return ok, {"lines": lines}, {}, None if ok else f"listed {lines} of {expected_lines}"

                        argv = ["find", str(ds.root), "-printf", "%s %T@ %i %p\n"]
                    self.x.step("S6", label, rnd, argv, env=env, log_dir=wd / "run", check=check)
                except Exception as exc:
                    self.x.fail("S6", label, rnd, f"harness error: {type(exc).__name__}: {exc}")
                finally:
                    self.x.cleanup(wd / "state", wd / "run" / "stdout.txt")
