"""Imports run one way: cli -> local harness -> stages -> sources / targets -> ledger and basics.

docs/ARCHITECTURE.md draws the same layers. Function-level (lazy) imports count too. Only the target
side talks to Google: only targets/ and the client factory clients.py import google.*; retry.py,
whose classifier is targets/errors.py, sits on the target side too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import migrate

PACKAGE = Path(migrate.__file__).parent
# the target side outside the targets/ package: the client factory, and the retry policy over targets/errors.py
TARGET_SIDE = {"clients", "retry"}
STAGES = {
    "planning",
    "transfer",
    "verification",
    "engine",
    "inventory",
    "inventory_logs",
    "inventory_fresh",
    "preflight",
    "preflight_report",
    "status",
}


def layer(module: str) -> int:
    """4 cli, 3 local harness, 2 stages, 1 sources and targets, 0 ledger and basics."""
    top = module.split(".")[1] if "." in module else ""
    if top in ("cli", "__main__"):
        return 4
    if top == "local":
        return 3
    if top in STAGES:
        return 2
    if top in ("sources", "targets") or top in TARGET_SIDE:
        return 1
    return 0


def side(module: str) -> str:
    """Which side of layer 1 a module is on: 'sources' or 'targets'."""
    top = module.split(".")[1]
    return "targets" if top in TARGET_SIDE else top


def imports(path: Path, package: str = "migrate") -> set[str]:
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == package:
            if node.module == package:
                out.update(f"{package}.{a.name}" for a in node.names)
            else:
                out.add(node.module)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.split(".")[0] == package)
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
            sideways = layer(mod) == layer(target) == 1 and side(target) != side(mod)
            if up or sideways:
                wrong.append(f"{mod} imports {target}")
    assert wrong == []


def test_the_check_sees_an_arrow_running_up(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from migrate.transfer.run import run_plan\n", encoding="utf-8")
    assert imports(probe) == {"migrate.transfer.run"}
    assert layer("migrate.transfer.run") > layer("migrate.targets.pubsub") > layer("migrate.ratelimit")


def talks_to_google(mod: str) -> bool:
    return mod.split(".")[1:2] == ["targets"] or mod == "migrate.clients"


def test_only_the_target_side_imports_google() -> None:
    wrong = [
        f"{module_name(path)} imports {target}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if not talks_to_google(module_name(path))
        for target in sorted(imports(path, "google"))
    ]
    assert wrong == []


def test_the_check_sees_a_google_import(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from google.api_core import exceptions\n", encoding="utf-8")
    assert imports(probe, "google") == {"google.api_core"}
    assert not talks_to_google("migrate.transfer.copier") and talks_to_google("migrate.targets.errors")


def private_uses(path: Path) -> set[str]:
    """Private names this file takes from elsewhere: `from migrate.x import _y`, and `obj._y` on anything but
    self and cls."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "migrate":
            out.update(f"{node.module}.{a.name}" for a in node.names if a.name.startswith("_"))
        elif isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            own = isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")
            out.update(() if own else (f"{ast.unparse(node.value)}.{node.attr}",))
    return out


def test_the_engine_uses_public_names_of_the_stages_it_reuses() -> None:
    wrong = {
        f"{module_name(path)} uses {name}"
        for path in sorted((PACKAGE / "engine").rglob("*.py"))
        for name in private_uses(path)
    }
    assert wrong == set()


def test_the_check_sees_a_private_name(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text(
        "from migrate.transfer.replay import _Replay\n\ndef f(c):\n    return c._guard\n", encoding="utf-8"
    )
    assert private_uses(probe) == {"migrate.transfer.replay._Replay", "c._guard"}


def state_literals(path: Path) -> list[str]:
    """Quoted item states where code compares or sets a state (ledger/states.py spells them once)."""
    from migrate.ledger.states import ItemState, RunStatus

    states = {s.value for s in ItemState} | {s.value for s in RunStatus}

    def literal(node: ast.AST) -> bool:
        if isinstance(node, ast.Constant) and node.value in states:
            return True
        return isinstance(node, (ast.Tuple, ast.List, ast.Set)) and any(literal(e) for e in node.elts)

    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            if any(literal(s) for s in sides) and any(
                "state" in ast.unparse(s) or "status" in ast.unparse(s) for s in sides
            ):
                out.append(f"{path.name}:{node.lineno}: {ast.unparse(node)}")
        elif isinstance(node, ast.Call) and any(literal(a) for a in node.args):
            name = ast.unparse(node.func).rsplit(".", 1)[-1]
            if name in ("Outcome", "result", "set_item", "set_state", "_set_item"):
                out.append(f"{path.name}:{node.lineno}: {ast.unparse(node)}")
    return out


def test_item_and_run_states_are_named_not_quoted() -> None:
    wrong = [
        hit for path in sorted(PACKAGE.rglob("*.py")) if "ledger" not in path.parts for hit in state_literals(path)
    ]
    assert wrong == []


def test_the_check_sees_a_quoted_state(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text("def f(o, w):\n    ok = o.state in ('done', 'conflict')\n    return Outcome(w.seq, 'pending')\n")
    assert len(state_literals(probe)) == 2
