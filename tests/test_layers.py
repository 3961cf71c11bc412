"""Imports run one way: cli -> local harness -> stages -> sources / targets -> ledger and basics.

docs/ARCHITECTURE.md draws the same layers. Function-level (lazy) imports count too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import migrate

PACKAGE = Path(migrate.__file__).parent
STAGES = {"planning", "transfer", "verification", "engine", "inventory", "preflight", "preflight_report", "status"}


def layer(module: str) -> int:
    """4 cli, 3 local harness, 2 stages, 1 sources and targets, 0 ledger and basics."""
    top = module.split(".")[1] if "." in module else ""
    if top in ("cli", "__main__"):
        return 4
    if top == "local":
        return 3
    if top in STAGES:
        return 2
    if top in ("sources", "targets"):
        return 1
    return 0


def imports(path: Path) -> set[str]:
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "migrate":
            if node.module == "migrate":
                out.update(f"migrate.{a.name}" for a in node.names)
            else:
                out.add(node.module)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.split(".")[0] == "migrate")
    return out


def module_name(path: Path) -> str:
    parts = ("migrate", *path.relative_to(PACKAGE).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_arrows_run_one_way() -> None:
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        mod = module_name(path)
        for target in sorted(imports(path)):
            up = layer(target) > layer(mod)
            sideways = layer(mod) == layer(target) == 1 and target.split(".")[1] != mod.split(".")[1]
            if up or sideways:
                wrong.append(f"{mod} imports {target}")
    assert wrong == []


def test_the_check_sees_an_arrow_running_up(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from migrate.transfer.run import run_plan\n", encoding="utf-8")
    assert imports(probe) == {"migrate.transfer.run"}
    assert layer("migrate.transfer.run") > layer("migrate.targets.pubsub") > layer("migrate.ratelimit")
