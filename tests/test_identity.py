"""Identity: `project.impersonate_service_account` makes every client run as that service account, and
preflight / run say which principal and quota project are in use.

ADC ignores gcloud's `auth/impersonate_service_account`
(https://cloud.google.com/docs/authentication/use-service-account-impersonation), so the wiring is
checked on the clients themselves: their credentials object must be impersonated credentials for the
configured account. Building a client makes no request, so no Google project is needed; the ADC file
is a throwaway authorized_user document.
"""

from __future__ import annotations

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


def _assert_impersonates(creds) -> None:
    assert isinstance(creds, impersonated_credentials.Credentials)
    assert creds.service_account_email == SA
    assert creds._target_scopes == [clients.CLOUD_PLATFORM_SCOPE]
    assert isinstance(creds._source_credentials, user_credentials.Credentials)  # minted from ADC


def test_every_client_runs_as_the_configured_service_account(real_cloud_adc):
    gcs = clients.gcs_client("acme-music-prod", pool_size=2, impersonate=SA)
    _assert_impersonates(gcs._credentials)
    subscriber = clients.subscriber_client(impersonate=SA)
    try:
        _assert_impersonates(subscriber._transport._credentials)
    finally:
        subscriber.close()
    # the publisher factory is re-wrapped by the wire-contract recorder (conftest.pubsub_wire), whose client
    # no longer exposes its credentials; it builds them with the same helper as the subscriber
    kwargs: dict = {}
    clients._pubsub_credentials(kwargs, SA)
    _assert_impersonates(kwargs["credentials"])


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


def test_run_reports_its_identity_before_anything_moves(emulators, bucket, write_config, tmp_path: Path):
    import pipeline
    from files import write_tree

    from migrate.progress import Event
    from migrate.transfer.run import run_plan

    tree = write_tree(tmp_path / "tree", {"a.flac": b"a" * 100, "b/c.ogg": b"c" * 10})
    path = write_config(catalog=[{"name": "audio", "root": str(tree), "bucket": bucket}])
    cfg = load_config(path)
    plan = pipeline.plan_path(cfg, "w1")
    events: list[Event] = []
    summary = run_plan(cfg, plan, report=events.append)
    kinds = [e.kind for e in events]
    assert kinds.index("identity") < kinds.index("start") < kinds.index("object_done")
    assert summary.status == "ok" and summary.to_dict()["identity"]["kind"] == "emulator"

    res = CliRunner().invoke(app, ["run", str(plan), "--config", str(path)])  # a re-run: nothing to copy
    assert res.exit_code == 0, res.output
    assert "running on the local emulators" in res.output


def test_docs_configure_impersonation_that_reaches_adc():
    """The terraform example used to tell operators to set gcloud's auth/impersonate_service_account, which
    ADC ignores: migrate then ran as the operator, never as the least-privilege account."""
    root = Path(__file__).resolve().parents[1]
    example = (root / "terraform/examples/migration/README.md").read_text()
    assert "gcloud config set auth/impersonate_service_account" not in example
    assert "impersonate_service_account = " in example and "--impersonate-service-account=" in example
    assert 'output "service_account_email"' in (root / "terraform/examples/migration/outputs.tf").read_text()
    assert "`impersonate_service_account`" in (root / "README.md").read_text()


def test_an_account_that_cannot_be_impersonated_is_one_line_and_exit_2(
    real_cloud_adc, write_config, tmp_path: Path, monkeypatch
):
    """Getting the token fails (here: every HTTPS request goes to a proxy that refuses connections, so the
    token endpoint is unreachable): preflight and plan say who could not be impersonated and what to grant,
    in one line, exit 2, never a traceback.

    google-auth sends authorized_user refreshes to Google's token endpoint whatever token_uri the ADC file
    names, so the proxy is what keeps this test off the network. A refused connection is a TransportError,
    which is retried (a short retry budget here); a refused grant would be a RefreshError, which is not."""
    from migrate.local.processes import free_port

    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("NO_PROXY", "")
    project = {"id": "acme-music-prod", "impersonate_service_account": SA}
    quick = {"retry_max_attempts": 2, "retry_initial_delay": 0.1, "retry_max_delay": 0.2, "retry_deadline": 5}
    path = write_config(project=project, catalog=_catalog(tmp_path), transfer=quick)
    runner = CliRunner()
    res = runner.invoke(app, ["preflight", "--config", str(path)])
    assert res.exit_code == 2, res.output
    assert f"cannot run as {SA}" in res.output and "roles/iam.serviceAccountTokenCreator" in res.output
    assert "Traceback" not in res.output
    assert runner.invoke(app, ["inventory", "--config", str(path)]).exit_code == 0
    res = runner.invoke(app, ["plan", "--name", "w1", "--config", str(path)])
    assert res.exit_code == 2, res.output
    assert "roles/iam.serviceAccountTokenCreator" in res.output and "Traceback" not in res.output
    assert len([line for line in res.output.splitlines() if line.startswith("error:")]) == 1
