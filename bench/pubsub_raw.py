"""The Pub/Sub ceiling: pre-built 1,000-message PublishRequests sent through the raw publish API
from a few threads. Reading and building happen before the clock starts; the publish phase is timed
here and reported on stdout as JSON ({"published": n, "publish_seconds": s}), since that phase is
the emulator's own limit; n counts the message ids the server returned.

    python -m bench.pubsub_raw --project P --topic T [--threads N] FILE.jsonl.gz ...
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import threading
import time

from google.cloud import pubsub_v1
from google.pubsub_v1 import PublishRequest, PubsubMessage

PER_REQUEST = 1000


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.pubsub_raw")
    ap.add_argument("--project", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("files", nargs="+")
    args = ap.parse_args(argv)
    publisher = pubsub_v1.PublisherClient()
    topic = publisher.topic_path(args.project, args.topic)
    # Plain protobuf messages (proto-plus wrappers cost 5x more to build), wrapped once per request.
    message_pb, request_pb = PubsubMessage.pb(), PublishRequest.pb()
    requests: list[PublishRequest] = []
    batch: list = []
    for name in args.files:
        with gzip.open(name, "rb") as fh:
            for line in fh:
                line = line.rstrip(b"\n")
                if not line:
                    continue
                event_id = json.loads(line)["event_id"]
                batch.append(message_pb(data=line, attributes={"event_id": str(event_id)}))
                if len(batch) == PER_REQUEST:
                    requests.append(PublishRequest.wrap(request_pb(topic=topic, messages=batch)))
                    batch = []
    if batch:
        requests.append(PublishRequest.wrap(request_pb(topic=topic, messages=batch)))
    api = publisher.api
    acked = [0] * args.threads
    errors: list[BaseException] = []

    def worker(k: int) -> None:
        try:
            for req in requests[k :: args.threads]:
                acked[k] += len(api.publish(request=req, timeout=120).message_ids)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(args.threads)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - started
    if errors:
        print(f"pubsub_raw: publish failed: {errors[0]}", file=sys.stderr)
        return 1
    print(json.dumps({"published": sum(acked), "publish_seconds": round(seconds, 4)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
