"""The Terraform variables document for a plan: `plans/<name>.tfvars.json`.

`terraform/examples/migration` declares one variable per top-level key, so the file is accepted by
`terraform apply -var-file=...` as-is; emulator provisioning reads the same file. The document is a
pure function of the config and the bucket/topic names the plan needs, so the same inputs give the
same bytes.

Shape (see docs/ARCHITECTURE.md, "tfvars"):

    project_id          string
    location            string                      (from [targets] location)
    labels              map(string)                 managed-by = "migrate" plus [targets] labels
    kms_key_name        string or null              CMEK key for the buckets
    service_account_id  string
    allow_object_delete bool                        true only for [transfer] conflict_policy = "overwrite"
                                                    (overwriting an object needs storage.objects.delete)
    buckets             map(object) keyed by bucket name:
        storage_class               STANDARD | NEARLINE | COLDLINE | ARCHIVE
        versioning                  bool
        soft_delete_retention_days  number
        lifecycle_rules             list of {action, age_days, storage_class (null for Delete)}
    topics              map(object) keyed by topic id:
        message_retention_days      number
        verification_subscription   string  (migrate.names.verification_subscription)
        dead_letter_topic           string  (migrate.names.dead_letter_topic)

Storage class of a bucket: the `storage_class` of the catalog sources that write into it. When
sources sharing a bucket disagree, the warmest class wins (STANDARD < NEARLINE < COLDLINE <
ARCHIVE): colder classes carry minimum storage durations and retrieval fees, so defaulting hot data
into them costs money, while moving cold data down later is a lifecycle rule away. A bucket that no
catalog source names gets STANDARD.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from migrate.config import STORAGE_CLASSES, Config
from migrate.names import dead_letter_topic, verification_subscription

MANAGED_BY = {"managed-by": "migrate"}
DEFAULT_STORAGE_CLASS = "STANDARD"


def bucket_storage_classes(cfg: Config) -> dict[str, str]:
    """The storage class each configured bucket gets (warmest class among its sources)."""
    rank = {sc: i for i, sc in enumerate(STORAGE_CLASSES)}
    out: dict[str, str] = {}
    for src in cfg.catalog:
        current = out.get(src.bucket)
        if current is None or rank.get(src.storage_class, 0) < rank.get(current, 0):
            out[src.bucket] = src.storage_class
    return out


def storage_class_conflicts(cfg: Config) -> dict[str, tuple[str, ...]]:
    """Buckets whose catalog sources ask for different storage classes -> the sorted classes asked for."""
    seen: dict[str, set[str]] = {}
    for src in cfg.catalog:
        seen.setdefault(src.bucket, set()).add(src.storage_class)
    return {b: tuple(sorted(classes)) for b, classes in sorted(seen.items()) if len(classes) > 1}


def _lifecycle_rules(cfg: Config, bucket: str) -> list[dict[str, Any]]:
    rules = []
    for rule in getattr(cfg.targets, "lifecycle_rules", ()):
        buckets = getattr(rule, "buckets", ())
        if buckets and bucket not in buckets:
            continue
        rules.append(
            {
                "action": rule.action,
                "age_days": int(rule.age_days),
                "storage_class": rule.storage_class if rule.action == "SetStorageClass" else None,
            }
        )
    return rules


def build_tfvars(cfg: Config, buckets: Iterable[str], topics: Iterable[str]) -> dict:
    """The tfvars document for exactly these buckets and topics (duplicates collapse, order is irrelevant)."""
    classes = bucket_storage_classes(cfg)
    t = cfg.targets
    labels = {str(k): str(v) for k, v in t.labels.items()}
    labels.update(MANAGED_BY)
    return {
        "project_id": cfg.project.id,
        "location": t.location,
        "labels": dict(sorted(labels.items())),
        "kms_key_name": t.kms_key_name or None,
        "service_account_id": t.service_account_id,
        "allow_object_delete": cfg.transfer.conflict_policy == "overwrite",
        "buckets": {
            b: {
                "storage_class": classes.get(b, DEFAULT_STORAGE_CLASS),
                "versioning": bool(t.versioning),
                "soft_delete_retention_days": int(t.soft_delete_days),
                "lifecycle_rules": _lifecycle_rules(cfg, b),
            }
            for b in sorted(set(buckets))
        },
        "topics": {
            topic: {
                "message_retention_days": int(t.message_retention_days),
                "verification_subscription": verification_subscription(topic),
                "dead_letter_topic": dead_letter_topic(topic),
            }
            for topic in sorted(set(topics))
        },
    }


def tfvars_json(doc: dict) -> str:
    """Canonical text of a tfvars document: sorted keys, indent 2, trailing newline."""
    return json.dumps(doc, sort_keys=True, indent=2, ensure_ascii=False) + "\n"
