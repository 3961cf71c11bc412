"""What a plan costs beyond storage: GCS operations, Pub/Sub throughput, and reading cold classes back.

Every figure is a count from the plan times a price from the config's price table (migrate.prices), and
the assumptions are returned with it. Aggregated in SQL from temp.plan_obj / temp.plan_ev, so the same
inventory and config give the same numbers.

GCS (https://cloud.google.com/storage/pricing#operations-by-class), priced at the object's storage class:
- class A: one per object insert; a resumable upload counts once, however many requests it takes; a
  composite upload pays one insert per part plus its compose requests (objects.compose); objects.list
  pages (1,000 objects each) when `verify` lists the destination. Deletes are free.
- class B: objects.get, one per object `verify --deep` re-downloads; plus the retrieval fee per GiB read
  from NEARLINE, COLDLINE or ARCHIVE. Given here for a deep verify of every object of the wave; a
  `--deep 5%` sample costs 5% of it.

Pub/Sub (https://cloud.google.com/pubsub/pricing): publish and delivery are each billed per TiB of message
data (payload, attribute keys and values, a 20-byte timestamp, the message id), and "a minimum of 1000
bytes per publish, push or pull request is assessed regardless of message size". Delivery here is the
verification subscription that `verify` drains. With `ordering_key_field`, a request carries one ordering
key, so small keyed messages may travel one per request: the upper bound then bills each at 1,000 bytes.
"""

from __future__ import annotations

import sqlite3
from collections import Counter

from migrate.config import Config
from migrate.plan import DONE_SKIP_REASONS
from migrate.prices import CLASSES, PUBSUB_MIN_REQUEST_BYTES, PriceTable
from migrate.targets.admin import COMPOSITE, BucketSettings, large_file_path, upload_path

GIB = 1024**3
TIB = 1024**4
LIST_PAGE = 1000  # objects per objects.list page
MAX_COMPOSE = 32  # sources per compose request (https://cloud.google.com/storage/docs/composite-objects)
# attribute keys and values (event_id, event_time, source, plan_id, listener), the 20-byte publish
# timestamp and the message id, per message: an assumption, stated in the report
MESSAGE_OVERHEAD_BYTES = 200


def planned_buckets(cfg: Config) -> dict[str, BucketSettings]:
    """The settings terraform/ gives each bucket, from [targets] and the sources' storage classes."""
    from migrate.planning.tfvars import bucket_storage_classes

    days = cfg.targets.soft_delete_days
    return {
        bucket: BucketSettings(bucket, default_class, cfg.targets.versioning, days * 86_400)
        for bucket, default_class in sorted(bucket_storage_classes(cfg).items())
    }


def bucket_upload_paths(cfg: Config) -> dict[str, tuple[str, str]]:
    """Bucket -> (upload path of its large files, why), for the buckets terraform/ creates from [targets]."""
    return {
        bucket: upload_path(settings, [s.storage_class for s in cfg.catalog if s.bucket == bucket])
        for bucket, settings in planned_buckets(cfg).items()
    }


def composite_requests(size: int, cfg: Config) -> tuple[int, int]:
    """(part inserts, compose requests) of one composite upload: the run's part layout, composed in
    groups of 32 and then once more when there are more than 32 parts."""
    from migrate.transfer.composite_steps import part_layout

    _, parts = part_layout(size, cfg.transfer, None)
    return parts, (1 if parts <= MAX_COMPOSE else -(-parts // MAX_COMPOSE) + 1)


def _money(ops_or_units: float, price: float) -> float:
    return round(ops_or_units * price, 6)


_CLASS_A_COUNTS = (
    "simple_uploads",
    "resumable_uploads",
    "composite_uploads",
    "part_inserts",
    "composes",
    "verify_list_pages",
)


def _class_a(conn: sqlite3.Connection, cfg: Config) -> dict[str, dict]:
    threshold = max(cfg.transfer.large_file_threshold, 1)
    buckets = planned_buckets(cfg)
    count: dict[str, Counter] = {sc: Counter() for sc in CLASSES}
    for sc, n in conn.execute(
        "SELECT storage_class, COUNT(*) FROM plan_obj WHERE code IS NULL AND size < ? GROUP BY 1", (threshold,)
    ):
        count[sc]["simple_uploads"] += n
    for bucket, sc, size in conn.execute(
        "SELECT bucket, storage_class, size FROM plan_obj WHERE code IS NULL AND size >= ? ORDER BY ord, relpath",
        (threshold,),
    ):
        if large_file_path(buckets.get(bucket) or BucketSettings(bucket), sc) == COMPOSITE:
            parts, composes = composite_requests(size, cfg)
            count[sc]["composite_uploads"] += 1
            count[sc]["part_inserts"] += parts
            count[sc]["composes"] += composes
        else:
            count[sc]["resumable_uploads"] += 1
    done = ",".join(f"'{c}'" for c in DONE_SKIP_REASONS)
    for sc, n in conn.execute(
        f"SELECT storage_class, COUNT(*) FROM plan_obj WHERE code IS NULL OR code IN ({done}) GROUP BY source, 1"
    ):
        count[sc]["verify_list_pages"] += -(-n // LIST_PAGE)
    out = {}
    for sc in CLASSES:
        c = count[sc]
        if not c:
            continue
        ops = c["simple_uploads"] + c["resumable_uploads"] + c["part_inserts"] + c["composes"]
        ops += c["verify_list_pages"]
        price = cfg.prices.class_a_per_1000.get(sc, 0.0)
        out[sc] = {**{k: c[k] for k in _CLASS_A_COUNTS}, "operations": ops, "price_per_1000": price}
        out[sc]["cost"] = _money(ops / 1000, price)
    return out


def _deep_verify(conn: sqlite3.Connection, prices: PriceTable) -> dict[str, dict]:
    out = {}
    for sc, n, nbytes in conn.execute(
        "SELECT storage_class, COUNT(*), SUM(size) FROM plan_obj WHERE code IS NULL GROUP BY 1 ORDER BY 1"
    ):
        gib = int(nbytes or 0) / GIB
        ops = _money(n / 1000, prices.class_b_per_1000.get(sc, 0.0))
        fee = _money(gib, prices.retrieval_per_gib.get(sc, 0.0))
        out[sc] = {
            "objects": n,
            "gib": round(gib, 3),
            "class_b_cost": ops,
            "retrieval_cost": fee,
            "cost": round(ops + fee, 6),
        }
    return out


def _pubsub(conn: sqlite3.Connection, cfg: Config) -> dict:
    per_request = max(1, cfg.pubsub.batch_max_messages)
    keyed = {src.name for src in cfg.listeners if src.ordering_key_field}
    messages = requests = data = billable = worst = 0
    for source, events, payload in conn.execute(
        "SELECT source, events, event_bytes FROM plan_ev WHERE code IS NULL AND events > 0 ORDER BY ord, path"
    ):
        size = payload + events * MESSAGE_OVERHEAD_BYTES
        reqs = -(-events // per_request)
        messages, requests, data = messages + events, requests + reqs, data + size
        billed = max(size, reqs * PUBSUB_MIN_REQUEST_BYTES)  # requests fill up to batch_max_messages
        billable += billed
        # one message per request: every message billed at least the request minimum
        worst += max(size, events * PUBSUB_MIN_REQUEST_BYTES) if source in keyed else billed
    price = cfg.prices.pubsub_per_tib
    out = {
        "messages": messages,
        "publish_requests": requests,
        "message_bytes": data,
        "billable_publish_bytes": billable,
        "billable_delivery_bytes": billable,  # verify pulls every message once, in batches as large
        "price_per_tib": price,
        "message_overhead_bytes": MESSAGE_OVERHEAD_BYTES,
        "cost": _money(2 * billable / TIB, price),
    }
    if keyed:
        out["cost_max_one_message_per_request"] = _money(2 * worst / TIB, price)
    return out


def plan_costs(conn: sqlite3.Connection, cfg: Config) -> dict:
    """The one-time costs of running and verifying this plan, by kind, with the price table used."""
    class_a = _class_a(conn, cfg)
    pubsub = _pubsub(conn, cfg)
    deep = _deep_verify(conn, cfg.prices)
    return {
        "gcs_class_a": class_a,
        "pubsub": pubsub,
        "deep_verify_all": deep,
        "run_and_verify_cost": round(sum(c["cost"] for c in class_a.values()) + pubsub["cost"], 6),
        "deep_verify_all_cost": round(sum(c["cost"] for c in deep.values()), 6),
        "upload_paths": {b: {"path": p, "why": why} for b, (p, why) in bucket_upload_paths(cfg).items()},
        "prices": cfg.prices.to_dict(),
    }
