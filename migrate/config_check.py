"""The checks behind migrate.toml: a Checker that collects one line per problem, typed reads of a table,
sections of scalar settings, [[source]] arrays with unique names, and paths relative to the file."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path
from typing import Any

from migrate.units import parse_rate, parse_size

NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
STORAGE_CLASSES = ("STANDARD", "NEARLINE", "COLDLINE", "ARCHIVE")
LIFECYCLE_ACTIONS = ("Delete", "SetStorageClass")


class Checker:
    """Collects problems while reading one table; each problem is one line."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.problems: list[str] = []

    def fail(self, key: str, what: str, fix: str) -> None:
        self.problems.append(f"{self.file}: {key}: {what}; fix: {fix}")

    def table(self, data: Any, key: str, allowed: dict[str, str]) -> dict:
        if not isinstance(data, dict):
            self.fail(key, f"expected a table, got {_typename(data)}", f"write it as [{key}]")
            return {}
        for k in data:
            if k not in allowed:
                near = _closest(k, allowed)
                hint = f"did you mean '{near}'?" if near else f"allowed keys: {', '.join(sorted(allowed))}"
                self.fail(f"{key}.{k}", "unknown key", f"remove it ({hint})")
        return data

    def get(self, data: dict, key: str, where: str, kind: type | tuple, default: Any = None, required: bool = False):
        if key not in data:
            if required:
                self.fail(f"{where}.{key}", "missing", f"add {key} = ... to [{where.split('[')[0]}]")
            return default
        value = data[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if isinstance(value, bool) and bool not in kinds:
            ok = False
        elif float in kinds and isinstance(value, int) and not isinstance(value, bool):
            ok = True
        else:
            ok = isinstance(value, kinds)
        if not ok:
            want = " or ".join(_typename_of(k) for k in kinds)
            self.fail(
                f"{where}.{key}", f"expected {want}, got {_typename(value)} {_short(value)}", f"set it to a {want}"
            )
            return default
        return value

    def strings(self, data: dict, key: str, where: str, default: tuple = (), required: bool = False) -> tuple:
        value = self.get(data, key, where, (list, str), None, required)
        if value is None:
            return default
        if isinstance(value, str):
            value = [value]
        if not all(isinstance(v, str) for v in value):
            self.fail(f"{where}.{key}", "expected a list of strings", f'write it as {key} = ["..."]')
            return default
        return tuple(value)


def _typename(v: Any) -> str:
    return {bool: "boolean", int: "integer", float: "float", str: "string", list: "array", dict: "table"}.get(
        type(v), type(v).__name__
    )


def _typename_of(k: type) -> str:
    return {bool: "boolean", int: "integer", float: "number", str: "string", list: "array", dict: "table"}.get(
        k, k.__name__
    )


def _short(v: Any) -> str:
    text = repr(v)
    return f"({text[:40]}…)" if len(text) > 40 else f"({text})"


def _closest(key: str, allowed: dict[str, str]) -> str | None:
    import difflib

    hits = difflib.get_close_matches(key, list(allowed), n=1, cutoff=0.6)
    return hits[0] if hits else None


def section(c: Checker, data: dict, key: str, allowed: dict, cls: type, sizes=(), rates=()):
    t = c.table(data.get(key, {}), key, allowed)
    defaults = cls()
    kwargs = {}
    for k in t:
        if k not in allowed:
            continue
        default = getattr(defaults, k)
        if k in sizes or k in rates:
            v = c.get(t, k, key, (str, int), default)
            try:
                kwargs[k] = parse_rate(v) if k in rates else parse_size(v)
            except ValueError as exc:
                c.fail(f"{key}.{k}", str(exc).split(";")[0], str(exc).split("; ")[-1])
            continue
        kind = type(default) if default is not None else str
        if isinstance(default, float):
            kind = float
        v = c.get(t, k, key, kind, default)
        if isinstance(default, (int, float)) and not isinstance(default, bool) and isinstance(v, (int, float)):
            if v < 0 or (k in ("workers", "batch_max_files", "retry_max_attempts") and v < 1):
                c.fail(f"{key}.{k}", f"{v} is out of range", "use a positive number")
                continue
            v = kind(v)
        kwargs[k] = v
    return cls(**kwargs)


def sources(c: Checker, data: dict, key: str, schema: dict, names: set[str]) -> Iterator[tuple[str, dict, str]]:
    """(where, table, name) of each [[key]] table, its keys checked against schema and its name
    checked for shape and uniqueness across every source; `where` names it in error lines."""
    items = data.get(key, [])
    if not isinstance(items, list):
        c.fail(key, "expected an array of tables", f"write each source as [[{key}]]")
        items = []
    for i, item in enumerate(items):
        where = f"{key}[{i}]"
        t = c.table(item, where, schema)
        nm = c.get(t, "name", where, str, f"{key}{i}", required=True)
        where = f"{key}[{nm}]" if isinstance(t.get("name"), str) else where
        check_name(c, where, nm, names)
        yield where, t, nm


def check_name(c: Checker, where: str, nm: str, names: set[str]) -> None:
    if not NAME.match(nm):
        c.fail(f"{where}.name", f"{nm!r} is not a valid source name", "use lowercase letters, digits, '-' and '_'")
    if nm in names:
        c.fail(
            f"{where}.name", f"duplicate source name {nm!r}", "give every [[catalog]] and [[listeners]] a unique name"
        )
    names.add(nm)


def resolve(base: Path, value: str) -> Path:
    p = Path(os.path.expanduser(value))
    return p if p.is_absolute() else (base / p)


_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*$")


def endpoints(c: Checker, pubsub: str | None, storage: str | None) -> None:
    """pubsub.endpoint and storage.endpoint, when set."""
    endpoint(c, "pubsub.endpoint", pubsub, url=False)
    endpoint(c, "storage.endpoint", storage, url=True)


def endpoint(c: Checker, key: str, value: str | None, *, url: bool) -> None:
    """A regional endpoint: HOST[:PORT] for Pub/Sub's gRPC API, https://HOST[:PORT] for Cloud Storage's JSON API.

    Regional endpoints: https://cloud.google.com/pubsub/docs/reference/service_apis_overview#pubsub_endpoints
    (HOST = REGION-pubsub.googleapis.com, port 443) and https://cloud.google.com/storage/docs/regional-endpoints
    (https://storage.REGION.rep.googleapis.com).
    """
    from urllib.parse import urlsplit

    if value is None:
        return
    example = "https://storage.us-east1.rep.googleapis.com" if url else "us-east1-pubsub.googleapis.com:443"
    fix = f'use {"an https URL" if url else "HOST[:PORT] without a scheme"}, e.g. "{example}"'
    text = value.strip()
    if url:
        parts = urlsplit(text)
        ok = parts.scheme == "https" and not parts.query and not parts.fragment and parts.path in ("", "/")
        hostport = parts.netloc
    else:
        ok = "://" not in text and "/" not in text
        hostport = text
    host, _, port = hostport.rpartition(":") if ":" in hostport else (hostport, "", "")
    if ok and port:
        ok = port.isdigit() and 0 < int(port) < 65536
    if not (ok and _HOST.match(host or "")) or text != value:
        c.fail(key, f"{value!r} is not a valid endpoint", fix)


def lifecycle_rules(c: Checker, items: Any, rule: type) -> tuple:
    """[[targets.lifecycle_rules]] as `rule` objects (config.LifecycleRule)."""
    if not isinstance(items, list):
        fix = "write each rule as [[targets.lifecycle_rules]]"
        c.fail("targets.lifecycle_rules", "expected an array of tables", fix)
        return ()
    rules = []
    for i, item in enumerate(items):
        where = f"targets.lifecycle_rules[{i}]"
        t = c.table(item, where, dict.fromkeys((f.name for f in fields(rule)), ""))
        action = c.get(t, "action", where, str, "", required=True)
        if action and action not in LIFECYCLE_ACTIONS:
            fix = f"use one of {', '.join(LIFECYCLE_ACTIONS)}"
            c.fail(f"{where}.action", f"{action!r} is not a lifecycle action", fix)
        age = c.get(t, "age_days", where, int, 0, required=True)
        if age < 0:
            c.fail(f"{where}.age_days", f"{age} is out of range", "use a number of days >= 0")
        sc = c.get(t, "storage_class", where, str, None)
        sc = sc.upper() if sc else None
        if action == "SetStorageClass" and sc not in STORAGE_CLASSES:
            fix = f"use one of {', '.join(STORAGE_CLASSES)}"
            c.fail(f"{where}.storage_class", f"{sc!r} is not a storage class", fix)
        if action == "Delete" and sc is not None:
            fix = 'remove it, or use action = "SetStorageClass"'
            c.fail(f"{where}.storage_class", "not used by a Delete rule", fix)
        buckets = c.strings(t, "buckets", where)
        rules.append(rule(action, age, sc if action == "SetStorageClass" else None, buckets))
    return tuple(rules)
