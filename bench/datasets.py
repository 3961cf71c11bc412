"""Deterministic scenario data, generated from a seed and cached under bench/.work/data.

Each dataset lives in a directory named after its parameters: `tree/` (the files), `manifest.jsonl`
(relpath, size, crc32c per file, for verifying a destination) and `dataset.json` (the parameters and
totals). A dataset is generated into a temporary directory and renamed into place when complete, so
an interrupted generation is never mistaken for a cached one.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import random
import shutil
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import google_crc32c

from migrate.hashing import crc32c_b64

CHUNK = 4 * 1024 * 1024
ARTISTS = ["Aurora Vale", "Björk Nord", "Sigur Rós Tribute", "the_night shift", "Zoë & Co", "Lumen", "Océane", "K#7"]
PLATFORMS = ["android", "ios", "web", "desktop", "tv"]
COUNTRIES = ["SE", "US", "DE", "FR", "BR", "JP", "IN", "GB", "NG", "MX"]
_MASK64 = (1 << 64) - 1


@dataclass(frozen=True)
class Dataset:
    """A generated scenario input. `root` is what the tools copy; the manifest is the ground truth."""

    kind: str
    dir: Path
    info: dict

    @property
    def root(self) -> Path:
        return self.dir / "tree"

    @property
    def manifest(self) -> Path:
        return self.dir / "manifest.jsonl"

    @property
    def files(self) -> int:
        return int(self.info["files"])

    @property
    def bytes(self) -> int:
        return int(self.info["bytes"])

    def iter_manifest(self) -> Iterator[dict]:
        with open(self.manifest, encoding="utf-8") as fh:
            for line in fh:
                yield json.loads(line)


def _cached(base: Path, kind: str, params: dict, build) -> Dataset:
    key = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:12]
    final = base / f"{kind}-{key}"
    info_path = final / "dataset.json"
    if info_path.exists():
        return Dataset(kind, final, json.loads(info_path.read_text()))
    tmp = base / f".{kind}-{key}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "tree").mkdir(parents=True)
    info = build(tmp / "tree", tmp / "manifest.jsonl")
    info.update(kind=kind, params=params)
    (tmp / "dataset.json").write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    return Dataset(kind, final, info)


class _Manifest:
    """Writes manifest.jsonl while files are generated and keeps the totals."""

    def __init__(self, path: Path) -> None:
        self.fh = open(path, "w", encoding="utf-8")  # noqa: SIM115 - closed in close()
        self.files = 0
        self.bytes = 0

    def add(self, relpath: str, size: int, crc: str) -> None:
        self.fh.write(json.dumps({"relpath": relpath, "size": size, "crc32c": crc}, ensure_ascii=False) + "\n")
        self.files += 1
        self.bytes += size

    def close(self) -> dict:
        self.fh.close()
        return {"files": self.files, "bytes": self.bytes}


def _write_random(path: Path, size: int, rng: random.Random) -> str:
    """Write `size` pseudo-random (incompressible) bytes; return their CRC32C as GCS reports it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    crc = google_crc32c.Checksum()
    with open(path, "wb") as fh:
        left = size
        while left:
            block = rng.randbytes(min(CHUNK, left))
            crc.update(block)
            fh.write(block)
            left -= len(block)
    return crc32c_b64(int.from_bytes(crc.digest(), "big"))


def _write_bytes(path: Path, data: bytes) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return crc32c_b64(google_crc32c.value(data))


def mixed_catalog(
    base: Path, *, audio: int, audio_min: int, audio_max: int, meta: int, meta_max: int, seed: int
) -> Dataset:
    """S1: audio files under artist/album folders plus small JSON metadata files."""
    params = dict(audio=audio, audio_min=audio_min, audio_max=audio_max, meta=meta, meta_max=meta_max, seed=seed)

    def build(tree: Path, manifest: Path) -> dict:
        rng = random.Random(seed)
        m = _Manifest(manifest)
        for i in range(audio):
            artist = ARTISTS[i % len(ARTISTS)]
            rel = f"audio/{artist}/album {i // 10:03d}/track {i:04d}.{'flac' if i % 3 == 0 else 'ogg'}"
            size = rng.randint(audio_min, audio_max)
            m.add(rel, size, _write_random(tree / rel, size, rng))
        for i in range(meta):
            artist = ARTISTS[i % len(ARTISTS)]
            rel = f"meta/{artist}/album {i // 100:03d}/track-{i:05d}.json"
            doc = {"id": i, "artist": artist, "title": f"Track {i}", "tags": ["bench"], "pad": ""}
            size = rng.randint(200, meta_max)
            doc["pad"] = "x" * max(0, size - len(json.dumps(doc)))
            m.add(rel, size, _write_bytes(tree / rel, json.dumps(doc).encode()[:size]))
        return m.close()

    return _cached(base, "mixed", params, build)


def artwork_estate(
    base: Path,
    *,
    art: int,
    art_min: int,
    art_max: int,
    masters: int,
    master_min: int,
    master_max: int,
    depth: int,
    seed: int,
) -> Dataset:
    """S1b: another estate shape: many artwork images of 200 KiB-1 MiB and a few large masters,
    in deep label/year/artist/release/... trees (`depth` directory levels under each top folder)."""
    params = dict(
        art=art, art_min=art_min, art_max=art_max, masters=masters, master_min=master_min,
        master_max=master_max, depth=depth, seed=seed,
    )  # fmt: skip

    def folder(rng: random.Random, i: int) -> str:
        parts = [f"label-{i % 5}", f"{2001 + i % 23}", ARTISTS[(i * 7) % len(ARTISTS)], f"release {i // 12:04d}"]
        parts += [f"{rng.choice(('disc', 'side', 'edition', 'scan'))}-{k}" for k in range(max(0, depth - 4))]
        return "/".join(parts)

    def build(tree: Path, manifest: Path) -> dict:
        rng = random.Random(seed)
        m = _Manifest(manifest)
        for i in range(art):
            ext = ("jpg", "png", "tif")[i % 3]
            rel = f"artwork/{folder(rng, i)}/cover-{i:05d}.{ext}"
            size = rng.randint(art_min, art_max)
            m.add(rel, size, _write_random(tree / rel, size, rng))
        for i in range(masters):
            rel = f"masters/{folder(rng, i * 31)}/master-{i:03d}.wav"
            size = rng.randint(master_min, master_max)
            m.add(rel, size, _write_random(tree / rel, size, rng))
        return m.close()

    return _cached(base, "artwork", params, build)


def small_files(base: Path, *, count: int, size_min: int, size_max: int, seed: int) -> Dataset:
    """S2: many small files, 100 per directory."""
    params = dict(count=count, size_min=size_min, size_max=size_max, seed=seed)

    def build(tree: Path, manifest: Path) -> dict:
        rng = random.Random(seed)
        m = _Manifest(manifest)
        for i in range(count):
            rel = f"d{i // 1000:03d}/s{(i // 100) % 10}/f{i:06d}.bin"
            data = rng.randbytes(rng.randint(size_min, size_max))
            m.add(rel, len(data), _write_bytes(tree / rel, data))
        return m.close()

    return _cached(base, "small", params, build)


def large_files(base: Path, *, count: int, size: int, seed: int) -> Dataset:
    """S3: a few large files."""
    params = dict(count=count, size=size, seed=seed)

    def build(tree: Path, manifest: Path) -> dict:
        rng = random.Random(seed)
        m = _Manifest(manifest)
        for i in range(count):
            rel = f"masters/master-{i:02d}.wav"
            m.add(rel, size, _write_random(tree / rel, size, rng))
        return m.close()

    return _cached(base, "large", params, build)


def data_hash(data: bytes) -> int:
    """64-bit hash of one message's data; summed mod 2**64 it is an order-independent multiset digest."""
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


def event_logs(base: Path, *, events: int, files: int, seed: int) -> Dataset:
    """S4: `events` listener events (~170 bytes each) as gzipped JSONL spread over `files` files.

    dataset.json carries `events` and `digest`: the sum of data_hash(line) over every line, which a
    drained subscription must reproduce exactly (every event once, byte for byte).
    """
    params = dict(events=events, files=files, seed=seed)

    def build(tree: Path, manifest: Path) -> dict:
        rng = random.Random(seed)
        m = _Manifest(manifest)
        digest = 0
        per_file = -(-events // files)
        n = 0
        for f in range(files):
            rel = f"plays/plays-202405{f + 1:02d}.jsonl.gz"
            path = tree / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            lines = []
            for _ in range(min(per_file, events - n)):
                line = json.dumps(
                    {
                        "event_id": f"ev-{seed:04d}-{n:09d}",
                        "user_id": f"u{rng.randrange(10**7):07d}",
                        "track_id": f"t{rng.randrange(10**8):08d}",
                        "ms_played": rng.randrange(1000, 600_000),
                        "ts": f"2024-05-{f + 1:02d}T{rng.randrange(24):02d}:{rng.randrange(60):02d}:"
                        f"{rng.randrange(60):02d}.{rng.randrange(1000):03d}Z",
                        "platform": rng.choice(PLATFORMS),
                        "country": rng.choice(COUNTRIES),
                        "ver": 2,
                    },
                    separators=(",", ":"),
                ).encode()
                digest = (digest + data_hash(line)) & _MASK64
                lines.append(line)
                n += 1
            blob = gzip.compress(b"\n".join(lines) + b"\n", compresslevel=6, mtime=0)
            m.add(rel, len(blob), _write_bytes(path, blob))
        info = m.close()
        info.update(events=n, digest=f"{digest:016x}")
        return info

    return _cached(base, "events", params, build)


def inventory_tree(base: Path, *, count: int, seed: int, per_dir: int = 1000) -> Dataset:
    """S6: `count` tiny or empty files, `per_dir` per directory, in a two-level tree.

    No manifest lines (the inventory is checked by its file count); one file in 16 holds a few bytes.
    """
    params = dict(count=count, seed=seed, per_dir=per_dir)

    def build(tree: Path, manifest: Path) -> dict:
        rng = random.Random(seed)
        manifest.write_text("")
        total = 0
        dirs = 1
        mode = stat.S_IFREG | 0o644
        for i in range(count):
            if i % per_dir == 0:
                d = tree / f"vol{i // (per_dir * 100):03d}" / f"batch{(i // per_dir) % 100:02d}"
                new = not d.parent.exists()
                d.mkdir(parents=True)
                dirs += 2 if new else 1
            p = d / f"item-{i:07d}.json"
            if i % 16 == 0:
                data = rng.randbytes(rng.randint(1, 64))
                p.write_bytes(data)
                total += len(data)
            else:
                os.mknod(p, mode)
        return {"files": count, "bytes": total, "dirs": dirs}

    return _cached(base, "inventory", params, build)
