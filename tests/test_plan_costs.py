"""The plan's cost beyond storage: counted from the plan, priced from an overridable table, shown in the report.

Rules priced (https://cloud.google.com/storage/pricing#operations-by-class, https://cloud.google.com/pubsub/pricing):
one class A operation per insert, per resumable upload, per part and compose request of a composite upload and
per listing page; a class B read plus the retrieval fee per GiB for deep-verifying cold classes; Pub/Sub billed
per TiB each way, at least 1,000 bytes per request.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from files import write_tree

from migrate.config import load_config
from migrate.errors import ConfigError
from migrate.inventory import run_inventory
from migrate.ledger import connect
from migrate.planning.costs import MESSAGE_OVERHEAD_BYTES, plan_costs
from migrate.planning.diff import EV_TABLES, OBJ_TABLES
from migrate.planning.planner import make_plan
from migrate.prices import PRICES_AS_OF, PUBSUB_PRICING_URL, STORAGE_PRICING_URL

MIB, GIB, TIB = 1024**2, 1024**3, 1024**4


@pytest.fixture
def cfg(write_config, tmp_path: Path):
    def make(**extra):
        return load_config(
            write_config(
                catalog=[
                    {"name": "hot", "root": str(tmp_path), "bucket": "hot-b", "storage_class": "STANDARD"},
                    {"name": "cold", "root": str(tmp_path), "bucket": "cold-b", "storage_class": "COLDLINE"},
                ],
                listeners=[
                    {"name": "plays", "paths": ["*.jsonl"], "topic": "plays"},
                    {"name": "keyed", "paths": ["*.csv"], "topic": "keyed", "ordering_key_field": "user"},
                ],
                transfer={"large_file_threshold": "64MiB", "chunk_size": "16MiB"},
                targets={"versioning": False, "soft_delete_days": 0},
                **extra,
            )
        )

    return make


def _constructed_plan() -> sqlite3.Connection:
    """plan_obj / plan_ev rows as the planner leaves them: code NULL = planned."""
    conn = sqlite3.connect(":memory:")
    conn.executescript(OBJ_TABLES + EV_TABLES)
    objects = [  # (ord, source, relpath, size, bucket, class, code)
        (0, "hot", "a", 1024, "hot-b", "STANDARD", None),
        (0, "hot", "b", 1024, "hot-b", "STANDARD", None),
        (0, "hot", "c", 1024, "hot-b", "STANDARD", None),
        (0, "hot", "big", 100 * MIB, "hot-b", "STANDARD", None),  # composite: 7 parts of 16 MiB + 1 compose
        (0, "hot", "old", 5, "hot-b", "STANDARD", "already-migrated"),  # listed by verify, not uploaded
        (1, "cold", "x", 1024, "cold-b", "COLDLINE", None),
        (1, "cold", "y", 1024, "cold-b", "COLDLINE", None),
        (1, "cold", "huge", 200 * MIB, "cold-b", "COLDLINE", None),  # resumable: one class A operation
    ]
    conn.executemany(
        "INSERT INTO plan_obj(ord, source, relpath, kind, size, bucket, storage_class, path, code)"
        " VALUES(?, ?, ?, 'file', ?, ?, ?, ?, ?)",
        [(o, s, r, size, b, sc, r, code) for o, s, r, size, b, sc, code in objects],
    )
    logs = [  # (ord, source, path, events, event_bytes)
        (0, "plays", "p1.jsonl", 2500, 2500 * 100),
        (0, "plays", "p2.jsonl", 1, 10),  # 210 bytes in one request: billed 1,000
        (1, "keyed", "k1.csv", 10, 10 * 50),
    ]
    conn.executemany(
        "INSERT INTO plan_ev(ord, source, path, size, events, malformed, oversized, event_bytes, status, topic, format)"
        " VALUES(?, ?, ?, 0, ?, 0, 0, ?, 'ok', 't', 'jsonl')",
        logs,
    )
    return conn


def test_the_arithmetic_on_a_constructed_plan(cfg):
    costs = plan_costs(_constructed_plan(), cfg())
    hot, cold = costs["gcs_class_a"]["STANDARD"], costs["gcs_class_a"]["COLDLINE"]
    assert (hot["simple_uploads"], hot["composite_uploads"], hot["part_inserts"], hot["composes"]) == (3, 1, 7, 1)
    assert hot["resumable_uploads"] == 0 and hot["verify_list_pages"] == 1
    assert hot["operations"] == 3 + 7 + 1 + 1 and hot["cost"] == pytest.approx(12 * 0.005 / 1000)
    assert (cold["simple_uploads"], cold["resumable_uploads"], cold["part_inserts"]) == (2, 1, 0)
    assert cold["operations"] == 2 + 1 + 1 and cold["cost"] == pytest.approx(4 * 0.02 / 1000)
    assert costs["upload_paths"]["hot-b"]["path"] == "composite"
    cold_path = costs["upload_paths"]["cold-b"]
    assert cold_path["path"] == "resumable" and "COLDLINE" in cold_path["why"]

    deep = costs["deep_verify_all"]["COLDLINE"]
    cold_gib = (2048 + 200 * MIB) / GIB
    assert deep["objects"] == 3 and deep["retrieval_cost"] == pytest.approx(cold_gib * 0.02, abs=1e-6)
    assert deep["class_b_cost"] == pytest.approx(3 * 0.01 / 1000, abs=1e-6)
    assert costs["deep_verify_all"]["STANDARD"]["retrieval_cost"] == 0  # STANDARD has no retrieval fee

    ps = costs["pubsub"]
    o = MESSAGE_OVERHEAD_BYTES
    p1, k1 = 2500 * (100 + o), 10 * (50 + o)  # p2.jsonl: one message of 10 + o bytes, under the minimum
    assert ps["messages"] == 2511 and ps["publish_requests"] == 3 + 1 + 1
    assert ps["billable_publish_bytes"] == p1 + 1000 + max(k1, 1000)  # p2 pays the 1,000-byte minimum
    assert ps["cost"] == pytest.approx(2 * ps["billable_publish_bytes"] / TIB * 40.0, abs=1e-6)
    # ordering keys: one keyed message per request at worst, each billed 1,000 bytes
    worst = p1 + 1000 + max(k1, 10 * 1000)
    assert ps["cost_max_one_message_per_request"] == pytest.approx(2 * worst / TIB * 40.0, abs=1e-6)
    assert costs["run_and_verify_cost"] == pytest.approx(hot["cost"] + cold["cost"] + ps["cost"], abs=1e-6)
    assert costs["prices"]["pages"] == [STORAGE_PRICING_URL, PUBSUB_PRICING_URL]
    assert PRICES_AS_OF in costs["prices"]["source"]


def test_prices_are_overridden_in_the_config_and_from_a_json_file(cfg, tmp_path: Path):
    (tmp_path / "prices.json").write_text(json.dumps({"pubsub_per_tib": 50, "class_a_per_1000": {"COLDLINE": 1.0}}))
    c = cfg(prices={"file": "prices.json", "class_a_per_1000": {"STANDARD": 2.0}, "NEARLINE": 0.5})
    assert c.prices.pubsub_per_tib == 50 and c.prices.class_a_per_1000["COLDLINE"] == 1.0
    assert c.prices.class_a_per_1000["STANDARD"] == 2.0 and c.prices.storage["NEARLINE"] == 0.5
    assert c.prices.class_a_per_1000["ARCHIVE"] == 0.05  # untouched defaults stay
    assert "prices.json" in c.prices.source
    costs = plan_costs(_constructed_plan(), c)
    assert costs["gcs_class_a"]["STANDARD"]["cost"] == pytest.approx(12 * 2.0 / 1000)
    assert costs["gcs_class_a"]["COLDLINE"]["cost"] == pytest.approx(4 * 1.0 / 1000)


@pytest.mark.parametrize(
    ("prices", "key"),
    [
        ({"class_a_per_1000": {"STANDARD": -1}}, "prices.class_a_per_1000.STANDARD"),
        ({"retrieval_per_gib": {"GLACIER": 0.1}}, "prices.retrieval_per_gib.GLACIER"),
        ({"pubsub_per_tib": "forty"}, "prices.pubsub_per_tib"),
        ({"file": "missing.json"}, "prices.file"),
        ({"class_b": {}}, "prices.class_b"),
    ],
)
def test_a_bad_price_is_one_config_line(cfg, prices, key):
    with pytest.raises(ConfigError) as info:
        cfg(prices=prices)
    [line] = info.value.lines()
    assert key in line and "fix:" in line and info.value.exit_code == 2


def test_the_report_shows_the_costs_and_the_plan_stays_deterministic(emulators, bucket, write_config, tmp_path: Path):
    tree = write_tree(tmp_path / "tree", {"small.ogg": b"s" * 1000, "big.flac": b"b" * (3 * MIB)})
    path = write_config(
        catalog=[{"name": "audio", "root": str(tree), "bucket": bucket}],
        transfer={"large_file_threshold": "1MiB", "chunk_size": "1MiB"},
        targets={"versioning": False, "soft_delete_days": 0},
    )
    c = load_config(path)
    conn = connect(c.project.state_dir)
    try:
        run_inventory(c, conn, hash=True)
        first = make_plan(c, conn, "w1")
        plan_bytes = Path(first.paths["plan"]).read_bytes()
        again = make_plan(c, conn, "w1")
    finally:
        conn.close()
    assert Path(again.paths["plan"]).read_bytes() == plan_bytes  # same inventory + config -> same bytes
    costs = json.loads(plan_bytes)["summary"]["costs"]
    a = costs["gcs_class_a"]["STANDARD"]
    assert (a["simple_uploads"], a["composite_uploads"], a["part_inserts"], a["composes"]) == (1, 1, 3, 1)
    md = Path(first.paths["report"]).read_text()
    assert "## Cost beyond storage" in md and "Composite (parts + composes)" in md and "1 (3 + 1)" in md
    assert STORAGE_PRICING_URL in md and PRICES_AS_OF in md
    assert "Run and verify, once" in md
