"""The price table behind the plan's cost estimate: list prices in USD, overridable in migrate.toml.

Defaults are the list prices of a regional location in North America (us-central1), as published on
the pricing pages below on PRICES_AS_OF. They change, and other locations, dual- and multi-regions and
contracts differ: an estate that matters should put its own figures in `[prices]` (or in a JSON file
named by `[prices] file`). Units follow the pages: GiB ("GB" on the pages is 2^30 bytes), operations
per 1,000, Pub/Sub throughput per TiB.

- Storage per GiB-month, operations by class, retrieval per GiB: https://cloud.google.com/storage/pricing
  (which call is class A or B: https://cloud.google.com/storage/pricing#operations-by-class).
- Pub/Sub message delivery (publish and pull throughput): https://cloud.google.com/pubsub/pricing
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

STORAGE_PRICING_URL = "https://cloud.google.com/storage/pricing"
PUBSUB_PRICING_URL = "https://cloud.google.com/pubsub/pricing"
PRICES_AS_OF = "2026-12-03"
CLASSES = ("STANDARD", "NEARLINE", "COLDLINE", "ARCHIVE")

STORAGE_PER_GIB_MONTH = {"STANDARD": 0.020, "NEARLINE": 0.010, "COLDLINE": 0.004, "ARCHIVE": 0.0012}
CLASS_A_PER_1000 = {"STANDARD": 0.005, "NEARLINE": 0.010, "COLDLINE": 0.020, "ARCHIVE": 0.050}
CLASS_B_PER_1000 = {"STANDARD": 0.0004, "NEARLINE": 0.001, "COLDLINE": 0.010, "ARCHIVE": 0.050}
RETRIEVAL_PER_GIB = {"STANDARD": 0.0, "NEARLINE": 0.010, "COLDLINE": 0.020, "ARCHIVE": 0.050}
PUBSUB_PER_TIB = 40.0  # message delivery basic, for publish and for delivery alike; first 10 GiB/month free
PUBSUB_MIN_REQUEST_BYTES = 1000  # "a minimum of 1000 bytes per publish, push or pull request is assessed"

# The keys of [prices] (and of the JSON file): per-class tables, plus the storage prices under the
# class names themselves, as in earlier versions of the file.
TABLES = ("class_a_per_1000", "class_b_per_1000", "retrieval_per_gib")


@dataclass(frozen=True)
class PriceTable:
    storage: dict[str, float] = field(default_factory=lambda: dict(STORAGE_PER_GIB_MONTH))
    class_a_per_1000: dict[str, float] = field(default_factory=lambda: dict(CLASS_A_PER_1000))
    class_b_per_1000: dict[str, float] = field(default_factory=lambda: dict(CLASS_B_PER_1000))
    retrieval_per_gib: dict[str, float] = field(default_factory=lambda: dict(RETRIEVAL_PER_GIB))
    pubsub_per_tib: float = PUBSUB_PER_TIB
    source: str = f"list prices as of {PRICES_AS_OF}"  # or where the overrides came from

    def to_dict(self) -> dict:
        return {
            "storage_per_gib_month": dict(self.storage),
            "class_a_per_1000": dict(self.class_a_per_1000),
            "class_b_per_1000": dict(self.class_b_per_1000),
            "retrieval_per_gib": dict(self.retrieval_per_gib),
            "pubsub_per_tib": self.pubsub_per_tib,
            "source": self.source,
            "pages": [STORAGE_PRICING_URL, PUBSUB_PRICING_URL],
        }


_PRICE_KEYS = {**{k: "" for k in CLASSES}, **{k: "" for k in TABLES}, "pubsub_per_tib": "", "file": ""}


def parse_prices(c: Any, raw: Any, resolve: Callable[[str], Path]) -> PriceTable:
    """[prices]: storage prices under the class names, per-class tables, pubsub_per_tib, and `file`, a JSON
    document with the same keys (the table's own keys win over the file's). `c` is config's problem
    collector (fail / table / get); `resolve` makes a path relative to the config file."""
    t = c.table(raw, "prices", _PRICE_KEYS)
    merged: dict[str, Any] = {}
    source = "[prices] in the config"
    file = c.get(t, "file", "prices", str, None)
    if file:
        path = resolve(file)
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            c.fail("prices.file", f"cannot read {str(path)!r} as JSON ({exc})", "point it at a JSON price table")
            doc = {}
        if not isinstance(doc, dict):
            c.fail("prices.file", f"{str(path)!r} is not a JSON object", 'write the table as {"STANDARD": 0.02, ...}')
            doc = {}
        merged.update(c.table({k: v for k, v in doc.items() if k != "file"}, f"prices.file {path.name}", _PRICE_KEYS))
        source = f"{path}" + (" and [prices]" if len(t) > 1 else "")
    for key, value in t.items():  # a per-class table of [prices] amends the file's, class by class
        if key in TABLES and isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        elif key != "file":
            merged[key] = value
    out = PriceTable(source=source)
    for key, value in merged.items():
        if key in CLASSES:
            if _price(c, f"prices.{key}", value):
                out.storage[key] = float(value)
        elif key in TABLES:
            if not isinstance(value, dict):
                fix = f"write {key} = {{ STANDARD = 0.005 }}"
                c.fail(f"prices.{key}", "expected a table of storage class -> price", fix)
                continue
            for sc, price in value.items():
                if sc not in CLASSES:
                    c.fail(f"prices.{key}.{sc}", "not a storage class", f"use one of {', '.join(CLASSES)}")
                elif _price(c, f"prices.{key}.{sc}", price):
                    getattr(out, key)[sc] = float(price)
        elif key == "pubsub_per_tib" and _price(c, "prices.pubsub_per_tib", value):
            out = replace(out, pubsub_per_tib=float(value))
    return out


def _price(c: Any, key: str, value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < float("inf"):
        c.fail(key, f"{value!r} is not a price", "use a number of US dollars >= 0")
        return False
    return True
