"""migrate.toml -> frozen, validated settings.

Every problem names the key and the fix on one line; all problems in a file are
reported together so an operator fixes the file in one pass.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tomllib
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

from migrate.config_check import STORAGE_CLASSES
from migrate.config_check import Checker as _Checker
from migrate.config_check import endpoints as _check_endpoints
from migrate.config_check import lifecycle_rules as _lifecycle_rules
from migrate.config_check import resolve as _resolve
from migrate.config_check import section as _section
from migrate.config_check import sources as _sources
from migrate.errors import ConfigError
from migrate.prices import PriceTable, parse_prices

DEFAULT_CONFIG = "migrate.toml"
CONFLICT_POLICIES = ("skip", "overwrite", "fail")
FORMATS = ("jsonl", "csv")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]$")
_TOPIC = re.compile(r"^[A-Za-z][A-Za-z0-9._~%+-]{2,254}$")


@dataclass(frozen=True)
class ProjectConfig:
    id: str
    state_dir: Path
    plans_dir: Path
    impersonate_service_account: str | None = None  # run as this service account (impersonated credentials)


@dataclass(frozen=True)
class CatalogSource:
    name: str
    root: Path
    bucket: str
    prefix: str = ""
    include: tuple[str, ...] = ("**",)
    exclude: tuple[str, ...] = ()
    storage_class: str = "STANDARD"
    follow_symlinks: bool = False


@dataclass(frozen=True)
class ListenerSource:
    name: str
    paths: tuple[str, ...]
    topic: str
    format: str = "jsonl"
    event_id_field: str | None = None
    event_time_field: str | None = None
    ordering_key_field: str | None = None


@dataclass(frozen=True)
class TransferConfig:
    workers: int = 16
    batch_max_files: int = 5000
    batch_max_bytes: int = 2 * 1024**3
    bandwidth_limit: int = 0  # bytes/s, 0 = unlimited
    large_file_threshold: int = 64 * 1024**2
    chunk_size: int = 16 * 1024**2
    conflict_policy: str = "skip"
    # a request is retried for minutes, as gcloud storage and the client libraries do (exponential backoff
    # from 1 s, capped at 32 s, up to 32 retries): https://cloud.google.com/storage/docs/retry-strategy
    retry_max_attempts: int = 32
    retry_initial_delay: float = 1.0
    retry_max_delay: float = 32.0
    retry_deadline: float = 900.0
    timeout: float = 60.0
    # object writes per bucket start near a new bucket's ~1,000/s and double at most every 20 minutes:
    # https://cloud.google.com/storage/docs/request-rate
    ramp_up: bool = True
    ramp_start_writes: float = 1000.0


@dataclass(frozen=True)
class PubSubConfig:
    batch_max_messages: int = 1000
    batch_max_bytes: int = 9 * 1000**2
    events_per_second: float = 0.0  # 0 = unlimited
    max_in_flight_messages: int = 20_000
    publish_timeout: float = 60.0
    endpoint: str | None = None  # e.g. "us-east1-pubsub.googleapis.com:443"; None: the global endpoint


@dataclass(frozen=True)
class StorageConfig:
    endpoint: str | None = None  # e.g. "https://storage.us-east1.rep.googleapis.com"; None: the global endpoint


@dataclass(frozen=True)
class EngineConfig:
    """[engine]: where `migrate run --engine dask` runs (scheduler empty = a LocalCluster on this host)."""

    scheduler: str = ""
    workers: int = 0  # LocalCluster worker processes; 0 = one per core


@dataclass(frozen=True)
class LifecycleRule:
    """One bucket lifecycle rule from [[targets.lifecycle_rules]]; `buckets` empty = every target bucket."""

    action: str
    age_days: int
    storage_class: str | None = None
    buckets: tuple[str, ...] = ()


@dataclass(frozen=True)
class TargetsConfig:
    """Settings of the target resources that terraform/ (or emulator provisioning) creates."""

    location: str = "US"
    versioning: bool = True
    soft_delete_days: int = 7
    message_retention_days: int = 7
    kms_key_name: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    service_account_id: str = "migrate-transfer"
    lifecycle_rules: tuple[LifecycleRule, ...] = ()


@dataclass(frozen=True)
class Config:
    path: Path
    project: ProjectConfig
    catalog: tuple[CatalogSource, ...]
    listeners: tuple[ListenerSource, ...]
    transfer: TransferConfig
    pubsub: PubSubConfig
    targets: TargetsConfig
    prices: PriceTable
    engine: EngineConfig = field(default_factory=EngineConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)

    def digest(self) -> str:
        """A stable digest of the effective settings (not the file's bytes)."""
        data = asdict(self)
        data.pop("path")
        data.pop("engine")  # where a run executes does not change what it does
        data["project"].pop("impersonate_service_account")  # who runs it does not change what is planned
        data["prices"] = data["prices"]["storage"]  # as before the full price table: operation prices only estimate
        blob = json.dumps(data, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def catalog_source(self, name: str) -> CatalogSource:
        for src in self.catalog:
            if src.name == name:
                return src
        raise KeyError(name)

    def listener_source(self, name: str) -> ListenerSource:
        for src in self.listeners:
            if src.name == name:
                return src
        raise KeyError(name)


# --- validation (the generic checks: config_check.py) -----------------------------------------


def _keys(cls: type) -> dict[str, str]:
    """The keys a table may hold: the fields of the settings class it becomes (one list, not two)."""
    return dict.fromkeys((f.name for f in fields(cls)), "")


_TOP = {"project": "", "catalog": "", "listeners": "", "transfer": "", "pubsub": "", "targets": "", "prices": ""}
_TOP["engine"] = _TOP["storage"] = ""
_PROJECT = _keys(ProjectConfig)
# A service account's email: ACCOUNT_ID@PROJECT_ID.iam.gserviceaccount.com, or a Google-managed default account
# such as PROJECT_NUMBER-compute@developer.gserviceaccount.com.
# https://cloud.google.com/iam/docs/service-account-overview#identifying
_SERVICE_ACCOUNT = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}[a-z0-9]@[a-z0-9][a-z0-9.-]*\.gserviceaccount\.com$")
_CATALOG = _keys(CatalogSource)
_LISTENER = _keys(ListenerSource)
_TRANSFER = _keys(TransferConfig)
_PUBSUB = _keys(PubSubConfig)
_TARGETS = _keys(TargetsConfig)
_ENGINE = _keys(EngineConfig)


def config_path(explicit: str | os.PathLike | None = None) -> Path:
    """--config beats MIGRATE_CONFIG beats ./migrate.toml."""
    if explicit:
        return Path(explicit)
    return Path(os.environ.get("MIGRATE_CONFIG") or DEFAULT_CONFIG)


def load_config(path: str | os.PathLike | None = None, *, check_roots: bool = True) -> Config:
    """Read and validate the whole file. Raises ConfigError listing every problem."""
    cfg_path = config_path(path)
    name = str(cfg_path)
    try:
        raw = cfg_path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            f"{name}: config file not found",
            "create it (see README 'Configuration'), or pass --config / set MIGRATE_CONFIG",
        ) from None
    except OSError as exc:
        raise ConfigError(
            f"{name}: cannot read config file ({exc.strerror})", "check the path and permissions"
        ) from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{name}: not UTF-8 text", "save the file as UTF-8") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{name}: malformed TOML: {exc}", "fix the TOML syntax at that line") from None
    return parse_config(data, cfg_path, check_roots=check_roots)


def parse_config(data: dict, cfg_path: Path, *, check_roots: bool = True) -> Config:
    c = _Checker(str(cfg_path))
    base = cfg_path.parent if str(cfg_path.parent) else Path(".")
    c.table(data, "(top level)", _TOP)

    # [project]
    proj = c.table(data.get("project", {}), "project", _PROJECT) if "project" in data else {}
    if "project" not in data:
        c.fail("project", "missing", 'add a [project] table with id = "your-gcp-project"')
    pid = c.get(proj, "id", "project", str, "", required="project" in data)
    if pid and not re.match(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$", pid):
        c.fail("project.id", f"{pid!r} is not a GCP project id", "use 6-30 lowercase letters, digits and hyphens")
    impersonate = c.get(proj, "impersonate_service_account", "project", str, None)
    if impersonate is not None and not _SERVICE_ACCOUNT.match(impersonate):
        c.fail(
            "project.impersonate_service_account",
            f"{impersonate!r} is not a service account email",
            "use NAME@PROJECT.iam.gserviceaccount.com, e.g. terraform's `output -raw service_account_email`",
        )
        impersonate = None
    project = ProjectConfig(
        id=pid or "",
        state_dir=_resolve(base, c.get(proj, "state_dir", "project", str, ".migrate")),
        plans_dir=_resolve(base, c.get(proj, "plans_dir", "project", str, "plans")),
        impersonate_service_account=impersonate,
    )

    # [[catalog]]
    catalog: list[CatalogSource] = []
    names: set[str] = set()
    for where, t, nm in _sources(c, data, "catalog", _CATALOG, names):
        root_s = c.get(t, "root", where, str, None, required=True)
        root = _resolve(base, root_s) if root_s else Path(".")
        if root_s and check_roots and not root.is_dir():
            what = "does not exist" if not root.exists() else "is not a directory"
            c.fail(
                f"{where}.root",
                f"{str(root)!r} {what}",
                "point root at the directory to migrate (is the NFS share mounted?)",
            )
        bucket = c.get(t, "bucket", where, str, "", required=True)
        if bucket and not _BUCKET.match(bucket):
            c.fail(
                f"{where}.bucket",
                f"{bucket!r} is not a valid bucket name",
                "use 3-63 lowercase letters, digits, '-', '_' and '.'",
            )
        prefix = c.get(t, "prefix", where, str, "")
        if prefix.startswith("/") or ".." in prefix.split("/") or "\n" in prefix or "\r" in prefix:
            c.fail(
                f"{where}.prefix",
                f"{prefix!r} is not a safe object prefix",
                "use a relative prefix like 'audio/' without '..'",
            )
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        sc = c.get(t, "storage_class", where, str, "STANDARD").upper()
        if sc not in STORAGE_CLASSES:
            c.fail(
                f"{where}.storage_class", f"{sc!r} is not a storage class", f"use one of {', '.join(STORAGE_CLASSES)}"
            )
        catalog.append(
            CatalogSource(
                name=nm,
                root=root,
                bucket=bucket,
                prefix=prefix,
                include=c.strings(t, "include", where, ("**",)),
                exclude=c.strings(t, "exclude", where, ()),
                storage_class=sc,
                follow_symlinks=c.get(t, "follow_symlinks", where, bool, False),
            )
        )

    # [[listeners]]
    listeners: list[ListenerSource] = []
    for where, t, nm in _sources(c, data, "listeners", _LISTENER, names):
        paths = c.strings(t, "paths", where, (), required=True)
        fmt = c.get(t, "format", where, str, "jsonl")
        if fmt not in FORMATS:
            c.fail(f"{where}.format", f"{fmt!r} is not supported", "use 'jsonl' or 'csv'")
        topic = c.get(t, "topic", where, str, "")
        if "topic" not in t:
            c.fail(
                f"{where}.topic",
                "missing: a listener needs a target topic",
                f'add topic = "{nm}-events" to this [[listeners]]',
            )
        elif topic and not _TOPIC.match(topic):
            c.fail(
                f"{where}.topic",
                f"{topic!r} is not a valid topic id",
                "use 3-255 letters, digits, '-', '_', '.'; start with a letter",
            )
        listeners.append(
            ListenerSource(
                name=nm,
                paths=tuple(str(_resolve(base, p)) for p in paths),
                topic=topic,
                format=fmt,
                event_id_field=c.get(t, "event_id_field", where, str, None),
                event_time_field=c.get(t, "event_time_field", where, str, None),
                ordering_key_field=c.get(t, "ordering_key_field", where, str, None),
            )
        )
    if not catalog and not listeners and "project" in data:
        c.fail("catalog", "no sources configured", "add at least one [[catalog]] or [[listeners]] table")

    transfer = _section(
        c,
        data,
        "transfer",
        _TRANSFER,
        TransferConfig,
        sizes=("batch_max_bytes", "large_file_threshold", "chunk_size"),
        rates=("bandwidth_limit",),
    )
    if transfer.conflict_policy not in CONFLICT_POLICIES:
        c.fail(
            "transfer.conflict_policy", f"{transfer.conflict_policy!r} is not a policy", "use skip, overwrite or fail"
        )
    pubsub = _section(c, data, "pubsub", _PUBSUB, PubSubConfig, sizes=("batch_max_bytes",))
    if pubsub.batch_max_bytes > 10 * 1000**2:
        c.fail("pubsub.batch_max_bytes", "over Pub/Sub's 10 MB request limit", "use at most 9MB")
    if not 1 <= pubsub.batch_max_messages <= 1000:
        c.fail("pubsub.batch_max_messages", "must be 1..1000", "Pub/Sub takes at most 1000 messages per request")
    gcs = _section(c, data, "storage", _keys(StorageConfig), StorageConfig)
    _check_endpoints(c, pubsub.endpoint, gcs.endpoint)
    raw_targets = data.get("targets", {})
    raw_rules = raw_targets.get("lifecycle_rules", []) if isinstance(raw_targets, dict) else []
    if isinstance(raw_targets, dict) and "lifecycle_rules" in raw_targets:
        data = {**data, "targets": {k: v for k, v in raw_targets.items() if k != "lifecycle_rules"}}
    targets = _section(c, data, "targets", _TARGETS, TargetsConfig)
    targets = replace(targets, lifecycle_rules=_lifecycle_rules(c, raw_rules, LifecycleRule))
    known_buckets = {src.bucket for src in catalog}
    for i, rule in enumerate(targets.lifecycle_rules):
        for b in rule.buckets:
            if b not in known_buckets:
                fix = "name a bucket of a [[catalog]] source, or drop buckets to apply the rule to all"
                c.fail(f"targets.lifecycle_rules[{i}].buckets", f"{b!r} is not a target bucket", fix)
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in targets.labels.items()):
        c.fail("targets.labels", "expected a table of strings", 'write it as labels = { team = "data" }')

    prices = parse_prices(c, data["prices"], lambda p: _resolve(base, p)) if "prices" in data else PriceTable()

    engine = _section(c, data, "engine", _ENGINE, EngineConfig)
    if engine.scheduler and not re.match(r"^(tcp|tls|inproc|ucx|ws|wss)://\S+$", engine.scheduler):
        c.fail("engine.scheduler", f"{engine.scheduler!r} is not a scheduler address", "write it as tcp://host:8786")

    if c.problems:
        raise ConfigError(c.problems)
    return Config(cfg_path, project, tuple(catalog), tuple(listeners), transfer, pubsub, targets, prices, engine, gcs)
