"""Transfer-time and storage-cost estimates. Every assumption is returned with the numbers."""

from __future__ import annotations

from migrate.config import STORAGE_CLASSES, Config
from migrate.units import format_duration

GIB = 1024**3
ASSUMED_BANDWIDTH = 125_000_000  # bytes/s = 1 Gbit/s, used when transfer.bandwidth_limit is 0 (unlimited)
PER_OBJECT_SECONDS = 0.05  # request latency per object, spread over the workers
PER_EVENT_BATCH_SECONDS = 0.05  # one publish round trip per Pub/Sub batch, when events are not rate-limited


def transfer_estimate(cfg: Config, files: int, nbytes: int, events: int, event_batches: int) -> dict:
    """Seconds to copy `nbytes` in `files` objects and publish `events`; with the assumptions used."""
    t = cfg.transfer
    assumed = t.bandwidth_limit <= 0
    rate = ASSUMED_BANDWIDTH if assumed else t.bandwidth_limit
    wire = nbytes / rate
    overhead = files * PER_OBJECT_SECONDS / max(1, t.workers)
    eps = cfg.pubsub.events_per_second
    if eps > 0:
        publish = events / eps
        publish_basis = f"rate-limited to {eps:g} events/s (pubsub.events_per_second)"
    else:
        publish = event_batches * PER_EVENT_BATCH_SECONDS
        publish_basis = (
            f"unlimited rate: {PER_EVENT_BATCH_SECONDS * 1000:.0f} ms per publish request of up to "
            f"{cfg.pubsub.batch_max_messages} messages"
        )
    return {
        "bandwidth_bytes_per_s": rate,
        "bandwidth_assumed": assumed,
        "bandwidth_basis": (
            "transfer.bandwidth_limit is unlimited: assumed 1 Gbit/s of usable bandwidth"
            if assumed
            else "transfer.bandwidth_limit"
        ),
        "per_object_seconds": PER_OBJECT_SECONDS,
        "workers": t.workers,
        "copy_seconds": round(wire + overhead, 1),
        "publish_seconds": round(publish, 1),
        "publish_basis": publish_basis,
    }


def storage_costs(cfg: Config, stored_bytes: dict[str, int]) -> dict[str, dict]:
    """Monthly storage cost per storage class (price per GiB-month from [prices])."""
    out: dict[str, dict] = {}
    for sc in STORAGE_CLASSES:
        if sc not in stored_bytes:
            continue
        price = float(cfg.prices.storage.get(sc, 0.0))
        gib = stored_bytes[sc] / GIB
        out[sc] = {"price_gib_month": price, "gib": round(gib, 3), "monthly_cost": round(gib * price, 6)}
    return out


def format_seconds(seconds: float) -> str:
    return "under 1s" if seconds < 1 else format_duration(seconds)


def format_money(value: float) -> str:
    """$1,234.56, or four decimals below a dollar so small estates do not read $0.00."""
    if value >= 1 or value == 0:
        return f"${value:,.2f}"
    return f"${value:.4f}" if value >= 0.0001 else "< $0.0001"
