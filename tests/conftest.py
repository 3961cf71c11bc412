"""Shared fixtures: real emulators (fake-gcs-server, the Pub/Sub emulator), fresh targets, configs, estates.

The emulators start once per session on free ports under a tmp dir and stop at session end.
Each test gets its own bucket / topic names, so tests never see each other's data.
"""

from __future__ import annotations

import json
import math
import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from wirecheck import WireLog, WireProxy

from migrate import clients, names
from migrate.local.emulators import Emulators, local_emulators

PROJECT = "test-project"


def unique_name(prefix: str = "t") -> str:
    """A name valid as a bucket, topic and source name: lowercase, starts with a letter."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


# --- emulators and clients ---------------------------------------------------------------------


@dataclass
class WiredEmulators(Emulators):
    """The emulators, with GCS reached through the recording proxy of tests/wirecheck.py.

    .gcs (and STORAGE_EMULATOR_HOST) is the proxy, so everything the product sends is checked against
    the GCS wire contract; .gcs_direct is fake-gcs-server itself, for the tests' own setup and checks.
    """

    wire_url: str = ""
    wire: WireLog | None = None

    @property
    def gcs(self) -> str:
        return self.wire_url

    @property
    def gcs_direct(self) -> str:
        return self.gcs_server.url


@pytest.fixture(scope="session")
def emulators(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WiredEmulators]:
    """Both emulators; STORAGE_EMULATOR_HOST / PUBSUB_EMULATOR_HOST set for the whole session.

    Attributes: .gcs (url, through the wire-contract proxy), .gcs_direct, .gcs_root (filesystem backend
    root), .pubsub (host:port), .project, .wire (the WireLog), and .gcs_server / .pubsub_server
    (GcsEmulator / PubSubEmulator, for kill/restart; procgroup.py freezes and thaws).
    """
    with local_emulators(tmp_path_factory.mktemp("emulators"), project=PROJECT) as emus, WireProxy(emus.gcs) as proxy:
        wired = WiredEmulators(emus.gcs_server, emus.pubsub_server, emus.project, wire_url=proxy.url, wire=proxy.log)
        os.environ[clients.STORAGE_EMULATOR_ENV] = proxy.url  # local_emulators restores it at the end
        yield wired


@pytest.fixture(autouse=True)
def wire(request: pytest.FixtureRequest) -> Iterator[WireLog | None]:
    """The GCS wire contract holds for every request a test made through the emulators' proxy."""
    if "emulators" not in request.fixturenames:
        yield None
        return
    log = request.getfixturevalue("emulators").wire
    log.clear()
    yield log
    problems = log.violations()
    assert not problems, "GCS wire contract broken:\n" + "\n".join(problems[:20])


@pytest.fixture(scope="session")
def gcs_client(emulators: WiredEmulators):
    """The tests' own client: straight to fake-gcs-server, so test setup is not judged as product traffic."""
    saved = os.environ[clients.STORAGE_EMULATOR_ENV]
    os.environ[clients.STORAGE_EMULATOR_ENV] = emulators.gcs_direct
    try:
        return clients.gcs_client(emulators.project)
    finally:
        os.environ[clients.STORAGE_EMULATOR_ENV] = saved


@pytest.fixture
def bucket(gcs_client) -> str:
    """A freshly created, empty bucket; its name is unique to this test."""
    name = unique_name("b")
    gcs_client.create_bucket(name)
    return name


@pytest.fixture
def topic(emulators: Emulators) -> str:
    """A freshly created topic id, with its verification subscription already attached."""
    topic_id = unique_name("topic")
    publisher = clients.publisher_client()
    subscriber = clients.subscriber_client()
    try:
        topic_path = publisher.topic_path(emulators.project, topic_id)
        publisher.create_topic(name=topic_path)
        sub_path = subscriber.subscription_path(emulators.project, names.verification_subscription(topic_id))
        subscriber.create_subscription(name=sub_path, topic=topic_path)
    finally:
        subscriber.close()
        publisher.transport.close()
    return topic_id


# --- configs -----------------------------------------------------------------------------------


def _toml_string(s: str) -> str:
    # JSON string escapes are valid TOML basic-string escapes; TOML also wants DEL escaped.
    return json.dumps(s, ensure_ascii=False).replace("\x7f", "\\u007F")


def _toml_key(k: str) -> str:
    return k if k and all(c.isalnum() or c in "-_" for c in k) else _toml_string(k)


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, (str, Path)):
        return _toml_string(str(v))
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        inner = ", ".join(f"{_toml_key(k)} = {_toml_value(x)}" for k, x in v.items() if x is not None)
        return "{ " + inner + " }" if inner else "{}"
    raise TypeError(f"cannot render {type(v).__name__} as TOML")


def _is_table_array(v: Any) -> bool:
    return isinstance(v, (list, tuple)) and bool(v) and all(isinstance(x, dict) for x in v)


def _render_table(path: list[str], table: dict, out: list[str]) -> None:
    simple = {k: v for k, v in table.items() if v is not None and not isinstance(v, dict) and not _is_table_array(v)}
    for k, v in simple.items():
        out.append(f"{_toml_key(k)} = {_toml_value(v)}")
    for k, v in table.items():
        if isinstance(v, dict):
            out.append("")
            out.append("[" + ".".join(_toml_key(p) for p in [*path, k]) + "]")
            _render_table([*path, k], v, out)
        elif _is_table_array(v):
            for item in v:
                out.append("")
                out.append("[[" + ".".join(_toml_key(p) for p in [*path, k]) + "]]")
                _render_table([*path, k], item, out)


def render_toml(doc: dict) -> str:
    """Render a dict as TOML: dicts become [tables], lists of dicts [[arrays of tables]]; None is left out."""
    out: list[str] = []
    _render_table([], doc, out)
    return "\n".join(out).lstrip("\n") + "\n"


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[..., Path]:
    """callable(**sections) -> Path of tmp_path/migrate.toml.

    Sections are rendered as TOML: write_config(catalog=[{...}], listeners=[{...}], transfer={...}).
    Without `project`, it defaults to id "test-project" with state_dir/plans_dir inside tmp_path.
    `_filename` picks another file name in tmp_path.
    """

    def write(_filename: str = "migrate.toml", **sections: Any) -> Path:
        doc: dict[str, Any] = {}
        if "project" not in sections:
            doc["project"] = {
                "id": PROJECT,
                "state_dir": str(tmp_path / ".migrate"),
                "plans_dir": str(tmp_path / "plans"),
            }
        doc.update(sections)
        path = tmp_path / _filename
        path.write_text(render_toml(doc), encoding="utf-8")
        return path

    return write


# --- sample data center ------------------------------------------------------------------------


@pytest.fixture
def estate(tmp_path: Path):
    """A small generated data center (migrate.local.datagen) with ground truth; bucket/topic names unique per test."""
    from migrate.local import datagen

    tag = unique_name("t")
    return datagen.generate(tmp_path / "dc", scale=0.05, project=PROJECT, bucket_prefix=tag, topic_prefix=tag)


# --- real-cloud mode without a cloud ----------------------------------------------------------


@pytest.fixture
def real_cloud_adc(tmp_path: Path, monkeypatch) -> Path:
    """Leave emulator mode and point ADC at throwaway user credentials (quota project acme-billing).

    Building clients makes no request, so tests can check which credentials they carry."""
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


# --- Pub/Sub wire contract ---------------------------------------------------------------------


@pytest.fixture(autouse=True)
def pubsub_wire(monkeypatch: pytest.MonkeyPatch):
    """Every PublishRequest this test sends in-process, recorded by a gRPC interceptor on the publisher's
    channel (tests/pubsub_wire.py); at teardown each must obey the real service's documented limits."""
    from pubsub_wire import PublishRecorder, recording_factory

    recorder = PublishRecorder()
    monkeypatch.setattr(clients, "publisher_client", recording_factory(clients.publisher_client, recorder))
    yield recorder
    bad = recorder.violations()
    assert not bad, f"{len(bad)} PublishRequest rule violation(s) the emulator accepted: {bad[:5]}"
