"""The migrate side of every scenario: a generated migrate.toml and the real CLI in a subprocess."""

from __future__ import annotations

import json
from pathlib import Path

from bench.gcs import PROJECT


def _toml_str(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)  # a JSON string is a valid TOML basic string


def write_config(
    path: Path,
    workdir: Path,
    *,
    catalog: dict | None = None,
    listener: dict | None = None,
    transfer: dict | None = None,
) -> Path:
    """Write migrate.toml: [project] with state and plans under workdir, one source, [transfer]."""
    lines = [
        "[project]",
        f"id = {_toml_str(PROJECT)}",
        f"state_dir = {_toml_str(str(workdir / 'state'))}",
        f"plans_dir = {_toml_str(str(workdir / 'plans'))}",
        "",
    ]
    if catalog:
        lines += ["[[catalog]]", *(f"{k} = {_value(v)}" for k, v in catalog.items()), ""]
    if listener:
        lines += ["[[listeners]]", *(f"{k} = {_value(v)}" for k, v in listener.items()), ""]
    if transfer:
        lines += ["[transfer]", *(f"{k} = {_value(v)}" for k, v in transfer.items()), ""]
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def _value(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return str(v)
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    return _toml_str(str(v))


def plan_path(workdir: Path, name: str) -> Path:
    return workdir / "plans" / f"{name}.plan.json"


def inventory_files(stdout: str) -> int:
    """Total catalog files in `migrate inventory --json` output."""
    doc = json.loads(stdout)
    return sum(int(c["files"]) for c in doc.get("catalog", []))
