"""`migrate inventory --engine dask`: catalog trees walked and hashed on workers, the ledger written here.

The walk of a tree is split into tasks of directories: a task lists directories (depth first,
the same scan as sources/tree.walk) until it has WALK_LIMIT entries, and returns them with the
directories it did not reach; the driver hands those out as new tasks, so a deep or wide tree
spreads over every worker that mounts the source. The driver applies each batch of entries to
the ledger (inventory._apply_batch, the hash cache included); files it has to hash go back to
the workers in chunks.

Listener logs are listed and scanned on the workers that mount the listener too (a task lists a
listener's files with their stat; the files the ledger does not already know unchanged are scanned
LOG_CHUNK to a task), and the driver writes what they found (inventory_logs.inventory_logs). A source
with follow_symlinks walks as one chain of tasks, carrying the set of visited directories, so a
symlink loop is caught across tasks too.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterator

from migrate.config import CatalogSource, ListenerSource
from migrate.engine.dask_run import DaskEngine, mount_resource
from migrate.sources.tree import Entry, WalkStats

WALK_LIMIT = 2000  # entries per walk task at most (plus the rest of its last directory)
HASH_CHUNK = 64  # files per hash task
LOG_CHUNK = 4  # log files per scan task (a log is often large: a few per task spread them over workers)


def _chunk_tasks(engine: DaskEngine, source: str, fn: Callable, lead: tuple, items: list, size: int) -> list:
    """One task fn(*lead, chunk) per `size` items, on workers that mount the source; their futures."""
    resources = {mount_resource(source): 1}
    futures = [
        engine.client.submit(fn, *lead, items[i : i + size], resources=resources, pure=False)
        for i in range(0, len(items), size)
    ]
    engine.stats.tasks += len(futures)
    return futures


class _HashPool:
    """The `pool.map` inventory._apply_batch hashes with, on the workers that mount the source."""

    def __init__(self, engine: DaskEngine, source: str) -> None:
        self.engine = engine
        self.source = source

    def map(self, fn: Callable, paths: list) -> Iterator:
        from migrate.engine.dask_worker import hash_paths

        futures = _chunk_tasks(self.engine, self.source, hash_paths, (fn,), paths, HASH_CHUNK)
        for result in self.engine.client.gather(futures):
            yield from result

    def shutdown(self) -> None:
        return None


class DaskScanner:
    def __init__(self, engine: DaskEngine) -> None:
        self.engine = engine

    def hash_pool(self, src: CatalogSource) -> _HashPool:
        return _HashPool(self.engine, src.name)

    def list_logs(self, src: ListenerSource) -> list:
        from migrate.engine.dask_worker import list_logs

        client = self.engine.client
        self.engine.stats.tasks += 1
        return client.submit(list_logs, src, resources={mount_resource(src.name): 1}, pure=False).result()

    def scan_logs(self, src: ListenerSource, paths: list[str]) -> Iterator:
        """Scans of the paths, as their tasks finish (a few files per task, on workers that mount src)."""
        from distributed import as_completed

        from migrate.engine.dask_worker import scan_logs

        futures = _chunk_tasks(self.engine, src.name, scan_logs, (src,), paths, LOG_CHUNK)
        for future in as_completed(futures):
            yield from future.result()
            future.release()

    def walk(self, src: CatalogSource, stats: WalkStats) -> Iterator[Entry]:
        from migrate.engine.dask_worker import walk_dirs

        root = os.fsencode(os.path.abspath(src.root))
        visited: set[tuple[int, int]] | None = set() if src.follow_symlinks else None
        if visited is not None:
            try:
                st = os.stat(root)
                visited.add((st.st_dev, st.st_ino))
            except OSError:
                pass
        pending: deque[list[tuple[bytes, bytes]]] = deque([[(root, b"")]])
        in_flight: set[str] = set()
        parallel = 1 if visited is not None else 2 * self.engine.slots
        n = 0
        while pending or in_flight:
            while pending and len(in_flight) < parallel:
                n += 1
                key = f"migrate-walk-{src.name}-{id(self)}-{n}"
                self.engine.submit(walk_dirs, src, pending.popleft(), WALK_LIMIT, visited, key=key, source=src.name)
                in_flight.add(key)
            got = self.engine.next(0.25)
            if got is None or got[0] != "done" or got[1].key not in in_flight:
                continue
            future = got[1]
            in_flight.discard(future.key)
            result = future.result()  # a walk task does not fail on a bad directory: that is an anomaly entry
            future.release()
            stats.excluded += result["excluded"]
            stats.dirs += result["dirs"]
            if visited is not None:
                visited = result["visited"]
            left = result["left"]
            if left:
                parts = max(1, min(len(left), parallel - len(in_flight) - len(pending)))
                step = -(-len(left) // parts)
                pending.extend(left[i : i + step] for i in range(0, len(left), step))
            yield from result["entries"]


def run_inventory_dask(cfg, conn, *, hash: bool, report, sources=None, workers=None, scheduler=None):
    """run_inventory with the catalog trees walked and hashed on a Dask cluster."""
    from migrate.inventory import run_inventory

    wanted = set(sources) if sources else None
    with DaskEngine(cfg, "inventory", workers=workers, scheduler=scheduler) as engine:
        sources = [s.name for s in [*cfg.catalog, *cfg.listeners]]
        engine.require_mounts([name for name in sources if wanted is None or name in wanted])
        return run_inventory(cfg, conn, hash=hash, report=report, sources=sources, scanner=DaskScanner(engine))
