"""A Work is the plan's ObjectItem plus the ledger's resume state: one field list, in plan.py."""

from __future__ import annotations

import pickle
from dataclasses import fields

from migrate.plan import ObjectItem
from migrate.transfer.tasks import Work


def _item(**kw) -> ObjectItem:
    base = dict(seq=3, batch=1, source="audio", relpath="a/b.wav", path="", bucket="bk", object="p/a/b.wav", size=9)
    return ObjectItem(**{**base, **kw})


def test_work_carries_every_field_of_the_item_and_its_resume_state() -> None:
    item = _item(mtime_ns=5, inode=7, crc32c="AAAAAA==", storage_class="NEARLINE")
    w = Work.of(item, "/data/audio/a/b.wav", {"kind": "composite", "part_size": 4, "parts": 3})
    assert isinstance(w, ObjectItem)
    assert {f.name for f in fields(Work)} == {f.name for f in fields(ObjectItem)} | {"upload_state"}
    for f in fields(ObjectItem):
        if f.name != "path":
            assert getattr(w, f.name) == getattr(item, f.name), f.name
    assert w.path == "/data/audio/a/b.wav" and w.upload_state == {"kind": "composite", "part_size": 4, "parts": 3}
    assert pickle.loads(pickle.dumps(w)) == w  # it travels to Dask workers


def test_replace_generation_counts_only_when_the_plan_overwrites() -> None:
    assert Work.of(_item(replace_generation=11, overwrite=True), "/p").replace_generation == 11
    assert Work.of(_item(replace_generation=11, overwrite=False), "/p").replace_generation is None
