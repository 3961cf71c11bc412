"""The raw floor: the least work that gets a tree into GCS, marking what the emulator can ingest.

A pool of threads, each with one keep-alive HTTP connection, streams every file as a simple media
upload (POST /upload/storage/v1/b/<bucket>/o?uploadType=media&name=...). No checksums, no ledger,
no retries, no metadata. Exits 1 on the first failed upload.

    python -m bench.rawfloor --endpoint http://127.0.0.1:PORT --bucket B [--prefix P] [--threads N] SRC
"""

from __future__ import annotations

import argparse
import http.client
import os
import queue
import sys
import threading
import urllib.parse

BLOCK = 1024 * 1024


def _walk(root: str):
    stack = [root]
    while stack:
        top = stack.pop()
        with os.scandir(top) as it:
            for entry in it:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                elif entry.is_file(follow_symlinks=False):
                    yield entry.path, entry.stat().st_size


def _worker(host: str, port: int, bucket: str, prefix: str, root: str, jobs: queue.Queue, errors: list) -> None:
    conn = http.client.HTTPConnection(host, port, timeout=300, blocksize=BLOCK)
    base = f"/upload/storage/v1/b/{urllib.parse.quote(bucket, safe='')}/o?uploadType=media&name="
    while True:
        job = jobs.get()
        if job is None:
            return
        path, size = job
        rel = os.path.relpath(path, root).replace(os.sep, "/")
        url = base + urllib.parse.quote(prefix + rel, safe="")
        try:
            with open(path, "rb") as body:
                conn.request(
                    "POST",
                    url,
                    body=body,
                    headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)},
                )
                resp = conn.getresponse()
                resp.read()
            if resp.status != 200:
                errors.append(f"{rel}: HTTP {resp.status}")
        except (OSError, http.client.HTTPException) as exc:
            errors.append(f"{rel}: {exc}")
            conn.close()
            conn = http.client.HTTPConnection(host, port, timeout=300, blocksize=BLOCK)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.rawfloor")
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--bucket", required=True)
    ap.add_argument("--prefix", default="")
    ap.add_argument("--threads", type=int, default=16)
    ap.add_argument("src")
    args = ap.parse_args(argv)
    url = urllib.parse.urlsplit(args.endpoint)
    jobs: queue.Queue = queue.Queue(maxsize=args.threads * 4)
    errors: list[str] = []
    threads = [
        threading.Thread(
            target=_worker, args=(url.hostname, url.port or 80, args.bucket, args.prefix, args.src, jobs, errors)
        )
        for _ in range(args.threads)
    ]
    for t in threads:
        t.start()
    count = 0
    for job in _walk(args.src):
        if errors:
            break
        jobs.put(job)
        count += 1
    for _ in threads:
        jobs.put(None)
    for t in threads:
        t.join()
    if errors:
        print(f"rawfloor: {len(errors)} uploads failed, first: {errors[0]}", file=sys.stderr)
        return 1
    print(f"rawfloor: uploaded {count} files")
    return 0


if __name__ == "__main__":
    sys.exit(main())
