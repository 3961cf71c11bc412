"""Build GCS and Pub/Sub clients, for Google Cloud or for the local emulators.

Emulator mode is on when STORAGE_EMULATOR_HOST / PUBSUB_EMULATOR_HOST are set; the
clients then use anonymous credentials and never look for Application Default Credentials.
Otherwise missing credentials are a CredentialsError (exit 2 at the CLI) that says how to provide them.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import TypeVar

import requests.adapters

from migrate.errors import CredentialsError

F = TypeVar("F", bound=Callable)

STORAGE_EMULATOR_ENV = "STORAGE_EMULATOR_HOST"
PUBSUB_EMULATOR_ENV = "PUBSUB_EMULATOR_HOST"


def storage_emulator() -> str | None:
    host = os.environ.get(STORAGE_EMULATOR_ENV)
    if not host:
        return None
    return host if host.startswith("http") else f"http://{host}"


def pubsub_emulator() -> str | None:
    return os.environ.get(PUBSUB_EMULATOR_ENV) or None


def _needs_credentials(factory: F) -> F:
    """Missing Application Default Credentials become one CredentialsError naming the fix, not a traceback."""

    @functools.wraps(factory)
    def build(*args, **kwargs):
        from google.auth.exceptions import DefaultCredentialsError

        try:
            return factory(*args, **kwargs)
        except DefaultCredentialsError as exc:
            detail = str(exc).splitlines()[0][:200] if str(exc) else "none found"
            raise CredentialsError(
                f"no usable Google Cloud credentials ({detail})",
                "run `gcloud auth application-default login` or set GOOGLE_APPLICATION_CREDENTIALS"
                f" (for the emulators, set {STORAGE_EMULATOR_ENV} and {PUBSUB_EMULATOR_ENV})",
            ) from None

    return build  # type: ignore[return-value]


@_needs_credentials
def gcs_client(project: str, *, pool_size: int = 32, endpoint: str | None = None):
    """A storage.Client with a connection pool sized for `pool_size` concurrent workers.

    endpoint: `storage.endpoint`, e.g. a regional endpoint (https://cloud.google.com/storage/docs/regional-endpoints),
    passed as the client option api_endpoint; the emulator, when set, wins.
    """
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    emulator = storage_emulator()
    if emulator:
        client = storage.Client(
            project=project, credentials=AnonymousCredentials(), client_options={"api_endpoint": emulator}
        )
    elif endpoint:
        client = storage.Client(project=project, client_options={"api_endpoint": endpoint})
    else:
        client = storage.Client(project=project)
    adapter = requests.adapters.HTTPAdapter(pool_connections=pool_size, pool_maxsize=pool_size, max_retries=0)
    session = client._http  # the authorized session used for every call
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return client


def _pubsub_options(endpoint: str | None) -> dict:
    """`pubsub.endpoint` as the client option api_endpoint. Ordered delivery needs every publish of a key to go
    to one region: https://cloud.google.com/pubsub/docs/ordering and the locational endpoints at
    https://cloud.google.com/pubsub/docs/reference/service_apis_overview#pubsub_endpoints. The emulator, when
    set, wins (the client library replaces the option with PUBSUB_EMULATOR_HOST)."""
    return {"client_options": {"api_endpoint": endpoint}} if endpoint and not pubsub_emulator() else {}


@_needs_credentials
def publisher_client(*, endpoint: str | None = None):
    from google.cloud import pubsub_v1

    return pubsub_v1.PublisherClient(**_pubsub_options(endpoint))


@_needs_credentials
def subscriber_client(*, endpoint: str | None = None):
    from google.cloud import pubsub_v1

    return pubsub_v1.SubscriberClient(**_pubsub_options(endpoint))
