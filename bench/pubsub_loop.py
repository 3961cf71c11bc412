"""The Pub/Sub baseline: a straightforward loop over google.cloud.pubsub_v1.PublisherClient at default
settings. Parse each line, publish it, keep the future; at the end wait for every future.
Prints {"published": n}: the number of messages the server acknowledged with a message id.

    python -m bench.pubsub_loop --project P --topic T FILE.jsonl.gz ...
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys

from google.cloud import pubsub_v1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.pubsub_loop")
    ap.add_argument("--project", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("files", nargs="+")
    args = ap.parse_args(argv)
    publisher = pubsub_v1.PublisherClient()
    topic = publisher.topic_path(args.project, args.topic)
    futures = []
    for name in args.files:
        with gzip.open(name, "rb") as fh:
            for line in fh:
                line = line.rstrip(b"\n")
                if not line:
                    continue
                event = json.loads(line)
                futures.append(publisher.publish(topic, line, event_id=str(event["event_id"])))
    acked = sum(1 for future in futures if future.result())  # result() is the server-assigned message id
    print(json.dumps({"published": acked}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
