"""The tfvars document `migrate plan` writes for terraform/ and emulator provisioning."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from migrate.config import load_config
from migrate.errors import ConfigError
from migrate.names import dead_letter_topic, verification_subscription
from migrate.planning.tfvars import build_tfvars, storage_class_conflicts, tfvars_json

BASE = """
[project]
id = "acme-music-prod"

[[catalog]]
name = "audio"
root = "audio"
bucket = "acme-audio"
storage_class = "NEARLINE"

[[catalog]]
name = "artwork"
root = "artwork"
bucket = "acme-audio"
prefix = "artwork/"

[[catalog]]
name = "meta"
root = "meta"
bucket = "acme-meta"
storage_class = "COLDLINE"

[[listeners]]
name = "plays"
paths = ["logs/plays-*.jsonl.gz"]
topic = "listener-plays"

[[listeners]]
name = "skips"
paths = ["logs/skips-*.csv"]
format = "csv"
topic = "listener-skips"
"""


def _config(tmp_path: Path, extra: str = ""):
    for d in ("audio", "artwork", "meta"):
        (tmp_path / d).mkdir(exist_ok=True)
    path = tmp_path / "migrate.toml"
    path.write_text(BASE + extra)
    return load_config(path)


def test_same_config_gives_identical_bytes(tmp_path: Path) -> None:
    cfg = _config(tmp_path, '\n[targets]\nlabels = { team = "data", env = "prod" }\n')
    a = tfvars_json(build_tfvars(cfg, ["acme-meta", "acme-audio"], ["listener-skips", "listener-plays"]))
    # Input order and duplicates must not matter; a reloaded config gives the same bytes.
    cfg2 = load_config(cfg.path)
    b = tfvars_json(build_tfvars(cfg2, ["acme-audio", "acme-meta", "acme-audio"], ["listener-plays", "listener-skips"]))
    assert a == b
    assert a.endswith("}\n")
    assert a == json.dumps(json.loads(a), sort_keys=True, indent=2) + "\n"


def test_only_given_buckets_and_topics_appear(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    doc = build_tfvars(cfg, ["acme-meta"], ["listener-plays"])
    assert list(doc["buckets"]) == ["acme-meta"]
    assert list(doc["topics"]) == ["listener-plays"]
    empty = build_tfvars(cfg, [], [])
    assert empty["buckets"] == {} and empty["topics"] == {}


def test_shape_and_defaults(tmp_path: Path) -> None:
    cfg = _config(tmp_path, '\n[targets]\nlabels = { team = "data" }\nlocation = "EU"\nsoft_delete_days = 14\n')
    doc = build_tfvars(cfg, ["acme-audio", "acme-meta"], ["listener-plays", "listener-skips"])
    assert set(doc) == {
        "project_id",
        "location",
        "labels",
        "kms_key_name",
        "service_account_id",
        "allow_object_delete",
        "buckets",
        "topics",
    }
    assert doc["project_id"] == "acme-music-prod"
    assert doc["location"] == "EU"
    assert doc["labels"] == {"managed-by": "migrate", "team": "data"}
    assert doc["kms_key_name"] is None
    assert doc["service_account_id"] == "migrate-transfer"
    assert doc["allow_object_delete"] is False
    meta = doc["buckets"]["acme-meta"]
    assert meta == {
        "storage_class": "COLDLINE",
        "versioning": True,
        "soft_delete_retention_days": 14,
        "lifecycle_rules": [],
    }


def test_topic_names_follow_names_module(tmp_path: Path) -> None:
    cfg = _config(tmp_path, "\n[targets]\nmessage_retention_days = 3\n")
    doc = build_tfvars(cfg, [], ["listener-plays", "listener-skips"])
    for topic, spec in doc["topics"].items():
        assert spec == {
            "message_retention_days": 3,
            "verification_subscription": verification_subscription(topic),
            "dead_letter_topic": dead_letter_topic(topic),
        }


def test_shared_bucket_takes_warmest_storage_class(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    # audio (NEARLINE) and artwork (STANDARD) share acme-audio.
    assert storage_class_conflicts(cfg) == {"acme-audio": ("NEARLINE", "STANDARD")}
    doc = build_tfvars(cfg, ["acme-audio", "acme-unconfigured"], [])
    assert doc["buckets"]["acme-audio"]["storage_class"] == "STANDARD"
    assert doc["buckets"]["acme-unconfigured"]["storage_class"] == "STANDARD"


def test_managed_by_label_cannot_be_overridden(tmp_path: Path) -> None:
    cfg = _config(tmp_path, '\n[targets]\nlabels = { managed-by = "someone-else" }\n')
    assert build_tfvars(cfg, [], [])["labels"] == {"managed-by": "migrate"}


def test_overwrite_policy_asks_for_object_delete(tmp_path: Path) -> None:
    cfg = _config(tmp_path, '\n[transfer]\nconflict_policy = "overwrite"\n[targets]\nkms_key_name = "projects/p/k"\n')
    doc = build_tfvars(cfg, ["acme-audio"], [])
    assert doc["allow_object_delete"] is True
    assert doc["kms_key_name"] == "projects/p/k"


def test_lifecycle_rules_from_config(tmp_path: Path) -> None:
    extra = """
[[targets.lifecycle_rules]]
action = "SetStorageClass"
storage_class = "archive"
age_days = 365
buckets = ["acme-audio"]

[[targets.lifecycle_rules]]
action = "Delete"
age_days = 3650
"""
    cfg = _config(tmp_path, extra)
    doc = build_tfvars(cfg, ["acme-audio", "acme-meta"], [])
    assert doc["buckets"]["acme-audio"]["lifecycle_rules"] == [
        {"action": "SetStorageClass", "age_days": 365, "storage_class": "ARCHIVE"},
        {"action": "Delete", "age_days": 3650, "storage_class": None},
    ]
    assert doc["buckets"]["acme-meta"]["lifecycle_rules"] == [
        {"action": "Delete", "age_days": 3650, "storage_class": None}
    ]


@pytest.mark.parametrize(
    ("rule", "needle"),
    [
        ('action = "Move"\nage_days = 1', "targets.lifecycle_rules[0].action"),
        ('action = "SetStorageClass"\nage_days = 1', "targets.lifecycle_rules[0].storage_class"),
        ('action = "Delete"\nage_days = 1\nstorage_class = "COLDLINE"', "not used by a Delete rule"),
        ('action = "Delete"\nage_days = -1', "targets.lifecycle_rules[0].age_days"),
        ('action = "Delete"\nage_days = 1\nbuckets = ["acme-typo"]', "'acme-typo' is not a target bucket"),
        ('action = "Delete"\nage = 1', "targets.lifecycle_rules[0].age: unknown key"),
    ],
)
def test_bad_lifecycle_rules_are_config_errors(tmp_path: Path, rule: str, needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        _config(tmp_path, f"\n[[targets.lifecycle_rules]]\n{rule}\n")
    assert any(needle in line for line in info.value.lines()), info.value.lines()
