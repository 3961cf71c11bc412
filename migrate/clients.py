"""Build GCS and Pub/Sub clients, for Google Cloud or for the local emulators.

Emulator mode is on when STORAGE_EMULATOR_HOST / PUBSUB_EMULATOR_HOST are set; the
clients then use anonymous credentials and never look for Application Default Credentials.
"""

from __future__ import annotations

import os

import requests.adapters

STORAGE_EMULATOR_ENV = "STORAGE_EMULATOR_HOST"
PUBSUB_EMULATOR_ENV = "PUBSUB_EMULATOR_HOST"


def storage_emulator() -> str | None:
    host = os.environ.get(STORAGE_EMULATOR_ENV)
    if not host:
        return None
    return host if host.startswith("http") else f"http://{host}"


def pubsub_emulator() -> str | None:
    return os.environ.get(PUBSUB_EMULATOR_ENV) or None


def gcs_client(project: str, *, pool_size: int = 32):
    """A storage.Client with a connection pool sized for `pool_size` concurrent workers."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    endpoint = storage_emulator()
    if endpoint:
        client = storage.Client(
            project=project, credentials=AnonymousCredentials(), client_options={"api_endpoint": endpoint}
        )
    else:
        client = storage.Client(project=project)
    adapter = requests.adapters.HTTPAdapter(pool_connections=pool_size, pool_maxsize=pool_size, max_retries=0)
    session = client._http  # the authorized session used for every call
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return client


def publisher_client(batch_settings=None, publisher_options=None):
    from google.cloud import pubsub_v1

    kwargs = {}
    if batch_settings is not None:
        kwargs["batch_settings"] = batch_settings
    if publisher_options is not None:
        kwargs["publisher_options"] = publisher_options
    return pubsub_v1.PublisherClient(**kwargs)


def subscriber_client():
    from google.cloud import pubsub_v1

    return pubsub_v1.SubscriberClient()
