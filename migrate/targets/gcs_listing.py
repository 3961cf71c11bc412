"""Listing the destination, as plan and verify both see it: every live object under the targets'
prefixes, a page per request, composite-upload scratch parts (PARTS_PREFIX) left out."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from migrate.config import TransferConfig
from migrate.errors import TargetError
from migrate.retry import describe, retrying
from migrate.targets import gcs
from migrate.targets.errors import Forbidden, HttpError, NotFound, as_target_error
from migrate.targets.gcs import PARTS_PREFIX, Gcs

Row = tuple[str, int, str | None, int]


def listing_roots(pairs: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """Distinct (bucket, prefix), dropping a prefix that a shorter one in the same bucket already covers."""
    roots: list[tuple[str, str]] = []
    for bucket, prefix in sorted(set(pairs)):
        if any(b == bucket and prefix.startswith(p) for b, p in roots):
            continue
        roots.append((bucket, prefix))
    return roots


def bucket_exists(
    api: Gcs, bucket: str, cfg: TransferConfig, on_retry: Callable[[BaseException, int], None] | None = None
) -> bool:
    """Whether gs://bucket exists, retried by migrate.retry; any other error is a TargetError naming the bucket."""
    with as_target_error(
        f"cannot look up gs://{bucket}", "check the bucket name, credentials and network (or STORAGE_EMULATOR_HOST)"
    ):
        return retrying(cfg, on_retry)(lambda: api.bucket_exists(bucket))


def list_pages(
    api: Gcs,
    bucket: str,
    prefix: str = "",
    *,
    cfg: TransferConfig | None = None,
    on_retry: Callable[[BaseException, int], None] | None = None,
    page_size: int | None = None,
) -> Iterator[list[Row]]:
    """Pages of (name, size, crc32c, generation) of the live objects under prefix.

    Each page is one request retried on its own by migrate.retry (on_retry counts the retries) and
    resumed from its page token, so a transient error on page 900 of a million-object bucket costs
    one page, not the listing. Composite-upload parts (PARTS_PREFIX) are the run's scratch space,
    not migrated objects, and are left out. An error that outlives the retries is a TargetError
    naming the bucket and the fix. `api`: the caller's client, one for a whole listing.
    """
    retry = retrying(cfg or TransferConfig(), on_retry)
    page_size = page_size or gcs.LIST_PAGE_SIZE
    token: str | None = None
    while True:
        try:
            infos, token = retry(lambda token=token: api.list_page(bucket, prefix, token, page_size=page_size))
        except NotFound:
            raise TargetError(
                f"bucket gs://{bucket} not found", "check the bucket names and project, or create the bucket"
            ) from None
        except Forbidden as exc:
            raise TargetError(
                f"cannot list gs://{bucket}: {describe(exc)}", "grant storage.objects.list on the bucket"
            ) from None
        except (HttpError, OSError) as exc:
            raise TargetError(
                f"listing gs://{bucket}/{prefix} failed: {describe(exc)}",
                "check credentials and network (or STORAGE_EMULATOR_HOST), then run the command again",
            ) from None
        yield [(i.name, i.size, i.crc32c, i.generation) for i in infos if not i.name.startswith(PARTS_PREFIX)]
        if not token:
            return
