"""A seeded, realistic on-prem estate: catalog trees and listener logs, with ground truth.

Used by `migrate demo`, the tests and bench/. The same (scale, seed) always gives the same
bytes, and `Estate` records exactly what an inventory must find.
"""

from __future__ import annotations

import gzip
import json
import os
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

ARTISTS = [
    "Aurora Lane",
    "Björk Ensemble",
    "Sigur Rós Tribute",
    "坂本 Trio",
    "The #Hashtags",
    "What? Band",
    "Los Días",
    "Motörhead Covers",
    "Nina & the Nines",
    "Zoë Keating Quartet",
    "DJ 100%",
    "Ørsted Sound",
]
WORDS = ["night", "river", "glass", "echo", "summer", "static", "blue", "north", "paper", "gold", "drift", "signal"]
PLATFORMS = ["ios", "android", "web", "desktop", "tv"]
COUNTRIES = ["US", "GB", "DE", "FR", "BR", "JP", "IN", "SE", "MX", "NG"]
KIB = 1024
MIB = 1024 * 1024


@dataclass
class SourceTruth:
    files: int = 0
    bytes: int = 0
    excluded: int = 0
    symlinks: int = 0
    anomalies: dict[str, str] = field(default_factory=dict)  # display relpath -> reason keyword
    largest: int = 0


@dataclass
class LogTruth:
    path: Path
    events: int = 0
    malformed_lines: list[int] = field(default_factory=list)
    event_ids: list[str] = field(default_factory=list)


@dataclass
class Estate:
    root: Path
    config_path: Path
    catalog: dict[str, SourceTruth]
    logs: dict[str, list[LogTruth]]
    buckets: dict[str, str]
    topics: dict[str, str]

    @property
    def total_files(self) -> int:
        return sum(s.files for s in self.catalog.values())

    @property
    def total_bytes(self) -> int:
        return sum(s.bytes for s in self.catalog.values())

    def events(self, listener: str = "plays") -> int:
        return sum(lt.events for lt in self.logs[listener])

    def malformed(self, listener: str = "plays") -> int:
        return sum(len(lt.malformed_lines) for lt in self.logs[listener])


def _title(rng: random.Random, n: int = 2) -> str:
    return " ".join(rng.choice(WORDS).capitalize() for _ in range(n))


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _audio_size(rng: random.Random, scale: float) -> int:
    # log-uniform between 32 KiB and 3 MiB: many small previews, some full tracks
    size = int(32 * KIB * (96 ** rng.random()))
    return max(1, int(size * min(1.0, max(scale, 0.05) * 2)))


def generate(
    root: Path | str,
    scale: float = 1.0,
    seed: int = 7,
    *,
    project: str = "demo-project",
    bucket_prefix: str = "acme",
    topic_prefix: str = "listener",
    awkward: bool = True,
    large_files: int = 1,
) -> Estate:
    """Write the estate under root and return its ground truth.

    Layout: root/catalog/{audio,artwork,metadata}, root/logs/plays/*.jsonl.gz, root/migrate.toml.
    `awkward` adds names that must become anomalies (invalid UTF-8, newline, over 1024 bytes),
    a symlink, a symlink loop, and an excluded .snapshot directory.
    """
    root = Path(root)
    rng = random.Random(seed)
    cat = root / "catalog"
    truth = {"audio": SourceTruth(), "artwork": SourceTruth(), "metadata": SourceTruth()}

    n_tracks = max(6, int(400 * scale))
    n_artists = min(len(ARTISTS), max(2, n_tracks // 30))
    tracks_left = n_tracks
    t_index = 0
    for a in range(n_artists):
        artist = ARTISTS[a]
        n_albums = max(1, min(4, tracks_left // 8 or 1))
        for b in range(n_albums):
            album = f"{2000 + rng.randrange(25)} - {_title(rng)}"
            album_dir = f"{artist}/{album}"
            per_album = (
                max(1, min(tracks_left, rng.randint(4, 12))) if a < n_artists - 1 or b < n_albums - 1 else tracks_left
            )
            tracks = []
            for t in range(per_album):
                ext = ".flac" if rng.random() < 0.2 else ".ogg"
                name = f"{t + 1:02d} {_title(rng, rng.randint(1, 3))}{ext}"
                size = _audio_size(rng, scale)
                if t_index % 97 == 5:
                    size = 0  # empty files happen (failed rips)
                _write(cat / "audio" / album_dir / name, rng.randbytes(size))
                truth["audio"].files += 1
                truth["audio"].bytes += size
                truth["audio"].largest = max(truth["audio"].largest, size)
                tracks.append({"no": t + 1, "title": name.rsplit(".", 1)[0][3:], "file": name, "bytes": size})
                t_index += 1
            tracks_left -= per_album
            meta = json.dumps({"artist": artist, "album": album, "tracks": tracks}, ensure_ascii=False, indent=1)
            data = meta.encode()
            _write(cat / "metadata" / album_dir / "album.json", data)
            truth["metadata"].files += 1
            truth["metadata"].bytes += len(data)
            truth["metadata"].largest = max(truth["metadata"].largest, len(data))
            art = rng.randbytes(rng.randint(8 * KIB, 160 * KIB))
            _write(cat / "artwork" / album_dir / "cover.jpg", art)
            truth["artwork"].files += 1
            truth["artwork"].bytes += len(art)
            truth["artwork"].largest = max(truth["artwork"].largest, len(art))
            if tracks_left <= 0:
                break
        if tracks_left <= 0:
            break

    # A few large masters, each in a deep path.
    for i in range(large_files):
        size = int(max(1, 24 * scale) * MIB)
        data = rng.randbytes(size)
        _write(cat / "audio" / "_masters" / "2019" / "session tapes" / "reel 1" / f"master-{i + 1:02d}.flac", data)
        truth["audio"].files += 1
        truth["audio"].bytes += size
        truth["audio"].largest = max(truth["audio"].largest, size)

    # Excluded: storage snapshots and files outside the include globs.
    _write(cat / "audio" / ".snapshot" / "hourly.0" / "01 Old.ogg", b"snapshot copy")
    _write(cat / "audio" / "Thumbs.db", b"junk")
    truth["audio"].excluded += 2

    if awkward:
        _add_awkward(cat / "audio", truth["audio"])

    logs = _generate_logs(root / "logs" / "plays", rng, scale)
    buckets = {name: f"{bucket_prefix}-catalog-{name}" for name in truth}
    topics = {"plays": f"{topic_prefix}-plays"}
    config_path = write_estate_config(root, project=project, buckets=buckets, topics=topics)
    return Estate(root, config_path, truth, {"plays": logs}, buckets, topics)


def _add_awkward(audio: Path, truth: SourceTruth) -> None:
    odd = audio / "_odd names"
    odd.mkdir(parents=True, exist_ok=True)
    # names that are fine for GCS but awkward for tools
    for name in ("space and # hash.ogg", "question?.ogg", "ünïcödé 音楽.ogg", "100% [live].ogg"):
        (odd / name).write_bytes(b"OggS" + name.encode())
        truth.files += 1
        truth.bytes += 4 + len(name.encode())
    # invalid UTF-8
    bad = os.fsencode(odd) + b"/bad-\xff\xfe-name.ogg"
    with open(bad, "wb") as fh:
        fh.write(b"OggS")
    truth.anomalies["_odd names/bad-\\xff\\xfe-name.ogg"] = "UTF-8"
    # newline in the name
    (odd / "line\nbreak.ogg").write_bytes(b"OggS")
    truth.anomalies["_odd names/line\\nbreak.ogg"] = "CR or LF"
    # over 1024 bytes once prefixed: 5 directories of 220 bytes
    deep = odd
    for i in range(5):
        deep = deep / (f"{i}" + "d" * 219)
    deep.mkdir(parents=True, exist_ok=True)
    (deep / "too-long.ogg").write_bytes(b"OggS")
    rel = "/".join(["_odd names"] + [f"{i}" + "d" * 219 for i in range(5)] + ["too-long.ogg"])
    truth.anomalies[rel] = "1024"
    # symlinks are not followed: one to a file, one loop
    os.symlink("space and # hash.ogg", odd / "link-to-track.ogg")
    os.symlink(".", odd / "loop")
    truth.symlinks += 2


def _generate_logs(log_dir: Path, rng: random.Random, scale: float) -> list[LogTruth]:
    log_dir.mkdir(parents=True, exist_ok=True)
    n_files = max(2, int(6 * scale))
    per_file = max(50, int(4000 * scale))
    start = datetime(2026, 1, 1, tzinfo=UTC)
    out: list[LogTruth] = []
    serial = 0
    for d in range(n_files):
        day = start + timedelta(days=d)
        path = log_dir / f"plays-{day:%Y%m%d}.jsonl.gz"
        lt = LogTruth(path)
        lines: list[bytes] = []
        bad_every = max(25, per_file // 3)
        for i in range(per_file):
            line_no = len(lines) + 1
            if i % bad_every == bad_every - 1:
                lines.append(b'{"event_id": "broken", "user_id": 12, "ts": ' if i % 2 else b"not json at all")
                lt.malformed_lines.append(line_no)
                continue
            serial += 1
            ts = day + timedelta(seconds=i * 86400 // per_file)
            event_id = f"evt-{seed_tag(rng)}-{serial:08d}"
            rec = {
                "event_id": event_id,
                "user_id": f"u{rng.randrange(1, 50_000):06d}",
                "track_id": f"t{rng.randrange(1, 400_000):07d}",
                "ms_played": rng.randrange(1_000, 400_000),
                "ts": ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{rng.randrange(1000):03d}Z",
                "platform": rng.choice(PLATFORMS),
                "country": rng.choice(COUNTRIES),
            }
            lines.append(json.dumps(rec, separators=(",", ":")).encode())
            lt.events += 1
            lt.event_ids.append(event_id)
        with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6, mtime=0) as fh:
            fh.write(b"\n".join(lines) + b"\n")
        out.append(lt)
    return out


def seed_tag(rng: random.Random) -> str:
    return f"{rng.getrandbits(16):04x}"


def write_estate_config(
    root: Path,
    *,
    project: str = "demo-project",
    buckets: dict[str, str] | None = None,
    topics: dict[str, str] | None = None,
    state_dir: str = ".migrate",
    plans_dir: str = "plans",
    workers: int = 8,
) -> Path:
    """Write root/migrate.toml for a generated estate; paths are relative to root."""
    buckets = buckets or {
        "audio": "acme-catalog-audio",
        "artwork": "acme-catalog-artwork",
        "metadata": "acme-catalog-metadata",
    }
    topics = topics or {"plays": "listener-plays"}
    text = f"""# Generated by migrate.local.datagen for a sample data center.
[project]
id = "{project}"
state_dir = "{state_dir}"
plans_dir = "{plans_dir}"

[[catalog]]
name = "audio"
root = "catalog/audio"
include = ["**/*.ogg", "**/*.flac"]
exclude = ["**/.snapshot/**"]
bucket = "{buckets["audio"]}"
prefix = "audio/"
storage_class = "STANDARD"

[[catalog]]
name = "artwork"
root = "catalog/artwork"
include = ["**/*.jpg", "**/*.png"]
bucket = "{buckets["artwork"]}"
prefix = "artwork/"
storage_class = "NEARLINE"

[[catalog]]
name = "metadata"
root = "catalog/metadata"
include = ["**/*.json"]
bucket = "{buckets["metadata"]}"
prefix = "metadata/"
storage_class = "STANDARD"

[[listeners]]
name = "plays"
paths = ["logs/plays/*.jsonl.gz"]
format = "jsonl"
topic = "{topics["plays"]}"
event_id_field = "event_id"
event_time_field = "ts"

[transfer]
workers = {workers}
batch_max_files = 500
batch_max_bytes = "256MiB"
"""
    path = Path(root) / "migrate.toml"
    path.write_text(text, encoding="utf-8")
    return path
