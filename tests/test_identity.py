"""Identity: `project.impersonate_service_account` makes every client run as that service account, and
preflight / run say which principal and quota project are in use.

ADC ignores gcloud's `auth/impersonate_service_account`
(https://cloud.google.com/docs/authentication/use-service-account-impersonation), so the wiring is
checked on the clients themselves: their credentials object must be impersonated credentials for the
configured account. Building a client makes no request, so no Google project is needed; the ADC file
is a throwaway authorized_user document.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from google.auth import impersonated_credentials
from google.oauth2 import credentials as user_credentials
from typer.testing import CliRunner

from migrate import clients
from migrate.cli import app
from migrate.config import load_config
from migrate.errors import ConfigError

SA = "migrate-transfer@acme-music-prod.iam.gserviceaccount.com"


@pytest.fixture
def real_cloud_adc(tmp_path: Path, monkeypatch):
    """Leave emulator mode and point ADC at user credentials that carry a quota project."""
    adc = tmp_path / "adc.json"
    adc.write_text(
        json.dumps(
            {
                "type": "authorized_user",
                "client_id": "id.apps.googleusercontent.com",
                "client_secret": "secret",
                "refresh_token": "token",
                "quota_project_id": "acme-billing",
            }
        )
    )
    monkeypatch.delenv(clients.STORAGE_EMULATOR_ENV, raising=False)
    monkeypatch.delenv(clients.PUBSUB_EMULATOR_ENV, raising=False)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(adc))
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "acme-music-prod")
    return adc


def _assert_impersonates(creds) -> None:
    assert isinstance(creds, impersonated_credentials.Credentials)
    assert creds.service_account_email == SA
    assert creds._target_scopes == [clients.CLOUD_PLATFORM_SCOPE]
    assert isinstance(creds._source_credentials, user_credentials.Credentials)  # minted from ADC


def test_every_client_runs_as_the_configured_service_account(real_cloud_adc):
    gcs = clients.gcs_client("acme-music-prod", pool_size=2, impersonate=SA)
    _assert_impersonates(gcs._credentials)
    publisher = clients.publisher_client(impersonate=SA)
    subscriber = clients.subscriber_client(impersonate=SA)
    try:
        _assert_impersonates(publisher._transport._credentials)
        _assert_impersonates(subscriber._transport._credentials)
    finally:
        subscriber.close()
        publisher.transport.close()


def test_without_the_setting_the_clients_use_adc_as_is(real_cloud_adc):
    gcs = clients.gcs_client("acme-music-prod", pool_size=2)
    assert isinstance(gcs._credentials, user_credentials.Credentials)


def test_identity_names_the_principal_and_quota_project(real_cloud_adc):
    ident = clients.describe_identity(SA, lookup=False)
    assert (ident.principal, ident.kind, ident.quota_project) == (SA, "impersonated", "acme-billing")
    assert ident.via and "user" in ident.via
    assert SA in ident.line() and "quota project: acme-billing" in ident.line()
    plain = clients.describe_identity(None, lookup=False)
    assert plain.kind == "user" and plain.quota_project == "acme-billing" and plain.via is None


def test_emulator_mode_says_no_credentials_are_used(emulators):
    ident = clients.describe_identity(SA)
    assert ident.kind == "emulator"
    assert "emulators" in ident.line() and SA not in ident.line()


def _catalog(tmp_path: Path) -> list[dict]:
    return [{"name": "audio", "root": str(tmp_path), "bucket": "acme-audio"}]


def test_config_takes_a_service_account_email(write_config, tmp_path: Path):
    project = {"id": "acme-music-prod", "impersonate_service_account": SA}
    cfg = load_config(write_config(project=project, catalog=_catalog(tmp_path)))
    assert cfg.project.impersonate_service_account == SA
    default = load_config(write_config(project={"id": "acme-music-prod"}, catalog=_catalog(tmp_path)))
    assert default.project.impersonate_service_account is None
    assert cfg.digest() == default.digest()  # who runs a plan does not change what is planned


@pytest.mark.parametrize("value", ["migrate-transfer", "ops@example.com", "Migrate@acme.iam.gserviceaccount.com", ""])
def test_a_bad_service_account_is_one_config_line_and_exit_2(write_config, tmp_path: Path, value):
    project = {"id": "acme-music-prod", "impersonate_service_account": value}
    path = write_config(project=project, catalog=_catalog(tmp_path))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    [line] = info.value.lines()
    assert "project.impersonate_service_account" in line and "service account email" in line and "fix:" in line
    res = CliRunner().invoke(app, ["preflight", "--config", str(path)])
    assert res.exit_code == 2
    assert "impersonate_service_account" in res.output and "Traceback" not in res.output
