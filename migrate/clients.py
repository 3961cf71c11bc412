"""Build GCS and Pub/Sub clients, for Google Cloud or for the local emulators.

Emulator mode is on when STORAGE_EMULATOR_HOST / PUBSUB_EMULATOR_HOST are set; the
clients then use anonymous credentials and never look for Application Default Credentials.
Otherwise missing credentials are a CredentialsError (exit 2 at the CLI) that says how to provide them.

Identity: the clients use Application Default Credentials (ADC). With `project.impersonate_service_account`
set, ADC is wrapped in impersonated credentials for that service account, so every request runs as it.
gcloud's `auth/impersonate_service_account` property does not do this: it changes gcloud's own
calls, never ADC (https://cloud.google.com/docs/authentication/use-service-account-impersonation).
`describe_identity` says which principal and quota project the clients actually use.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

from migrate.errors import CredentialsError

F = TypeVar("F", bound=Callable)

STORAGE_EMULATOR_ENV = "STORAGE_EMULATOR_HOST"
PUBSUB_EMULATOR_ENV = "PUBSUB_EMULATOR_HOST"
CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
IMPERSONATION_LIFETIME = 3600  # seconds per token; google-auth refreshes it before it expires


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


def google_credentials(impersonate: str | None = None):
    """Application Default Credentials, wrapped in impersonated credentials for `impersonate` when set.

    The token for the service account comes from the IAM Credentials API (generateAccessToken), which
    needs roles/iam.serviceAccountTokenCreator on that account for the ADC principal
    (https://cloud.google.com/iam/docs/create-short-lived-credentials-direct).
    """
    import google.auth
    from google.auth import impersonated_credentials

    source, _ = google.auth.default(scopes=[CLOUD_PLATFORM_SCOPE])
    if not impersonate:
        return source
    # https://googleapis.dev/python/google-auth/latest/reference/google.auth.impersonated_credentials.html
    return impersonated_credentials.Credentials(
        source_credentials=source,
        target_principal=impersonate,
        target_scopes=[CLOUD_PLATFORM_SCOPE],
        lifetime=IMPERSONATION_LIFETIME,
        quota_project_id=getattr(source, "quota_project_id", None),
    )


GCS_DEFAULT_ENDPOINT = "https://storage.googleapis.com"  # the JSON API's root, as google.cloud.storage uses it


@dataclass(frozen=True)
class GcsEndpoint:
    """Where the GCS JSON API is and who calls it: all that targets.gcs.Gcs (the transfer, the plan's and
    verify's listings) needs. Cheaper than a storage.Client, whose import costs a third of a second of CPU
    for every command (it brings gRPC, protobuf and requests); that client stays for the admin calls.
    credentials None: anonymous, the emulator."""

    api_endpoint: str
    credentials: Any
    project: str


@_needs_credentials
def gcs_endpoint(project: str, *, impersonate: str | None = None, endpoint: str | None = None) -> GcsEndpoint:
    """The JSON API endpoint and credentials: the emulator (anonymous) when STORAGE_EMULATOR_HOST is set, else
    `storage.endpoint` (e.g. a regional endpoint, https://cloud.google.com/storage/docs/regional-endpoints) or
    the global one, with Application Default Credentials (impersonated when asked)."""
    emulator = storage_emulator()
    if emulator:
        return GcsEndpoint(emulator, None, project)
    return GcsEndpoint(endpoint or GCS_DEFAULT_ENDPOINT, google_credentials(impersonate), project)


@_needs_credentials
def gcs_client(project: str, *, pool_size: int = 32, impersonate: str | None = None, endpoint: str | None = None):
    """A storage.Client with a connection pool sized for `pool_size` concurrent workers.

    endpoint: `storage.endpoint`, e.g. a regional endpoint (https://cloud.google.com/storage/docs/regional-endpoints),
    passed as the client option api_endpoint; the emulator, when set, wins.
    """
    import requests.adapters
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    emulator = storage_emulator()
    if emulator:
        client = storage.Client(
            project=project, credentials=AnonymousCredentials(), client_options={"api_endpoint": emulator}
        )
    else:
        options = {"api_endpoint": endpoint} if endpoint else None
        client = storage.Client(project=project, credentials=google_credentials(impersonate), client_options=options)
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


def _pubsub_credentials(kwargs: dict, impersonate: str | None) -> None:
    """Outside emulator mode, the Pub/Sub clients get the same credentials as GCS (pubsub_v1 reads
    PUBSUB_EMULATOR_HOST itself and then ignores credentials)."""
    if not pubsub_emulator():
        kwargs["credentials"] = google_credentials(impersonate)


@_needs_credentials
def publisher_client(
    batch_settings=None, publisher_options=None, *, impersonate: str | None = None, endpoint: str | None = None
):
    from google.cloud import pubsub_v1

    kwargs: dict[str, Any] = _pubsub_options(endpoint)
    _pubsub_credentials(kwargs, impersonate)
    if batch_settings is not None:
        kwargs["batch_settings"] = batch_settings
    if publisher_options is not None:
        kwargs["publisher_options"] = publisher_options
    return pubsub_v1.PublisherClient(**kwargs)


@_needs_credentials
def subscriber_client(*, impersonate: str | None = None, endpoint: str | None = None):
    from google.cloud import pubsub_v1

    kwargs: dict[str, Any] = _pubsub_options(endpoint)
    _pubsub_credentials(kwargs, impersonate)
    return pubsub_v1.SubscriberClient(**kwargs)


# --- who the clients run as ---------------------------------------------------------------------


@dataclass(frozen=True)
class Identity:
    """The principal requests run as and the quota project they carry (x-goog-user-project)."""

    principal: str
    kind: str  # emulator | impersonated | service account | user | other
    quota_project: str | None = None
    via: str | None = None  # impersonation: the ADC principal that mints the tokens

    def line(self) -> str:
        if self.kind == "emulator":
            return "running on the local emulators: no Google credentials are used"
        text = f"running as {self.principal}" + (f" ({self.kind})" if self.kind != "user" else "")
        if self.via:
            text += f", impersonated by {self.via}"
        quota = self.quota_project or "none set"
        return f"{text}; quota project: {quota}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@_needs_credentials
def describe_identity(impersonate: str | None = None, *, lookup: bool = True) -> Identity:
    """Who the GCS and Pub/Sub clients run as. `lookup`: ask Google: get a token for the impersonated
    account now (so a principal that may not impersonate it fails here, in one line, before anything
    moves), and the email of user credentials that do not record it (one tokeninfo call)."""
    if storage_emulator() or pubsub_emulator():
        return Identity("anonymous", "emulator")
    creds = google_credentials(impersonate)
    quota = getattr(creds, "quota_project_id", None)
    if impersonate:
        source = getattr(creds, "_source_credentials", None)
        via = _principal(source, lookup=False)[0]
        if lookup:
            _token_for(creds, impersonate, via)
        return Identity(impersonate, "impersonated", quota, via)
    principal, kind = _principal(creds, lookup)
    return Identity(principal, kind, quota)


def impersonation_fix(account: str, via: str = "your ADC principal") -> str:
    return (
        f"{via} needs roles/iam.serviceAccountTokenCreator on {account} (terraform: add it to `impersonators`),"
        " and the account must exist; or remove project.impersonate_service_account"
    )


def _token_for(creds, account: str, via: str) -> None:
    import google.auth.exceptions
    import google.auth.transport.requests

    try:
        creds.refresh(google.auth.transport.requests.Request())
    except google.auth.exceptions.GoogleAuthError as exc:
        detail = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise CredentialsError(f"cannot run as {account}: {detail}", impersonation_fix(account, via)) from None


def credentials_problem(exc: BaseException) -> CredentialsError | None:
    """A token that could not be had (google-auth RefreshError, or TransportError once retries are spent),
    as the one-line error an operator can fix; None for anything else."""
    import google.auth.exceptions

    if not isinstance(exc, (google.auth.exceptions.RefreshError, google.auth.exceptions.TransportError)):
        return None
    detail = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
    return CredentialsError(
        f"no token for the configured identity ({detail})",
        "run `gcloud auth application-default login` again; with project.impersonate_service_account: "
        + impersonation_fix("that account"),
    )


def _principal(creds, lookup: bool) -> tuple[str, str]:
    email = getattr(creds, "service_account_email", None)
    if email and email != "default":
        return email, "service account"
    if email == "default":  # metadata server credentials learn their email on the first refresh
        return (_refreshed_email(creds) if lookup else None) or "the attached service account", "service account"
    account = getattr(creds, "account", None)
    if account:
        return account, "user"
    if hasattr(creds, "refresh_token"):
        return (_token_email(creds) if lookup else None) or "an ADC user account (email not recorded)", "user"
    return type(creds).__name__, "other"


def _refreshed_email(creds) -> str | None:
    import google.auth.transport.requests

    try:
        creds.refresh(google.auth.transport.requests.Request())
    except Exception:
        return None
    email = getattr(creds, "service_account_email", None)
    return email if email and email != "default" else None


def _token_email(creds) -> str | None:
    """The email of an OAuth access token, from Google's OAuth 2.0 tokeninfo endpoint; None if it cannot say."""
    import google.auth.transport.requests
    import requests

    try:
        creds.refresh(google.auth.transport.requests.Request())
        resp = requests.get("https://oauth2.googleapis.com/tokeninfo", params={"access_token": creds.token}, timeout=10)
        return resp.json().get("email") if resp.ok else None
    except Exception:
        return None
