"""Where a run executes: `local` (threads in this process, the default) or `dask` (a Dask cluster).

Nothing here imports `distributed`: the single-process path never loads it. The Dask engine
lives in the dask_* modules and needs the optional extra (`pip install 'migrate[dask]'`).
"""

from __future__ import annotations

from migrate.errors import UsageError
from migrate.ledger import items
from migrate.ledger.states import ItemKind

ENGINES = ("local", "dask")


def require_distributed() -> None:
    """The dask engine's one-line error when the extra is not installed."""
    try:
        import distributed  # noqa: F401
    except ImportError:
        raise UsageError(
            "--engine dask needs the Dask distributed package, which is not installed",
            "pip install 'migrate[dask]'",
        ) from None


def check_engine(engine: str) -> None:
    if engine not in ENGINES:
        raise UsageError(f"unknown engine {engine!r}", f"use one of {', '.join(ENGINES)}")
    if engine == "dask":
        require_distributed()


def pending_sources(conn, plan_id: str, kinds: str = "all") -> list[str]:
    """The sources of the plan's items a run still has to do (objects and/or events)."""
    wanted = {"all": tuple(ItemKind), "objects": (ItemKind.OBJECT,), "events": (ItemKind.EVENTS,)}[kinds]
    return items.open_sources(conn, plan_id, wanted)
