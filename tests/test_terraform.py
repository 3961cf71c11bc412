"""terraform/ without `terraform init` (no internet): fmt, an HCL-level contract check against a
generated tfvars document, and checkov."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import hcl2
import pytest

from migrate.config import load_config
from migrate.names import dead_letter_topic, verification_subscription
from migrate.planning.tfvars import build_tfvars, tfvars_json

REPO = Path(__file__).resolve().parents[1]
TF = REPO / "terraform"
MODULE = TF / "modules" / "migration"
EXAMPLE = TF / "examples" / "migration"

CONFIG = """
[project]
id = "acme-music-prod"

[[catalog]]
name = "audio"
root = "audio"
bucket = "acme-audio"
storage_class = "NEARLINE"

[[catalog]]
name = "meta"
root = "meta"
bucket = "acme-meta"

[[listeners]]
name = "plays"
paths = ["logs/plays-*.jsonl.gz"]
topic = "listener-plays"

[[listeners]]
name = "skips"
paths = ["logs/skips-*.csv"]
format = "csv"
topic = "listener-skips"

[targets]
labels = { team = "data" }

[[targets.lifecycle_rules]]
action = "SetStorageClass"
storage_class = "COLDLINE"
age_days = 365
buckets = ["acme-audio"]

[[targets.lifecycle_rules]]
action = "Delete"
age_days = 3650
"""


# --- HCL helpers ----------------------------------------------------------------------------------


def _unq(s: str) -> str:
    return s[1:-1] if len(s) >= 2 and s[0] == s[-1] == '"' else s


def _load_dir(path: Path) -> dict[str, list]:
    merged: dict[str, list] = {}
    for tf in sorted(path.glob("*.tf")):
        with tf.open() as fh:
            for key, blocks in hcl2.load(fh).items():
                merged.setdefault(key, []).extend(blocks)
    return merged


def _variables(path: Path) -> dict[str, dict]:
    out = {}
    for block in _load_dir(path).get("variable", []):
        for name, body in block.items():
            out[_unq(name)] = body
    return out


def _resources(path: Path) -> dict[tuple[str, str], dict]:
    out = {}
    for block in _load_dir(path).get("resource", []):
        for rtype, named in block.items():
            for rname, body in named.items():
                out[(_unq(rtype), _unq(rname))] = body
    return out


_TOKEN = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*|[(){}\[\],=])")


def parse_type(text: str) -> tuple:
    """A Terraform type constraint (as python-hcl2 renders it) -> nested tuples."""
    text = text.strip()
    if text.startswith("${") and text.endswith("}"):
        text = text[2:-1]
    tokens = []
    pos = 0
    while pos < len(text.rstrip()):
        m = _TOKEN.match(text, pos)
        assert m, f"cannot tokenize type {text!r} at {pos}"
        tokens.append(m.group(1))
        pos = m.end()
    tokens.reverse()

    def expect(tok: str) -> None:
        got = tokens.pop()
        assert got == tok, f"expected {tok!r}, got {got!r} in {text!r}"

    def one() -> tuple:
        name = tokens.pop()
        if name in ("string", "number", "bool", "any"):
            return (name,)
        if name in ("map", "list", "set", "optional"):
            expect("(")
            inner = one()
            expect(")")  # optional(type, default) is not used in this module
            return (name, inner)
        if name == "object":
            expect("(")
            expect("{")
            attrs = {}
            while tokens[-1] != "}":
                key = tokens.pop()
                expect("=")
                attrs[key] = one()
                if tokens[-1] == ",":
                    tokens.pop()
            expect("}")
            expect(")")
            return ("object", attrs)
        raise AssertionError(f"unsupported type {name!r} in {text!r}")

    result = one()
    assert not tokens, f"trailing tokens in {text!r}: {tokens}"
    return result


def type_problems(value: Any, typ: tuple, where: str) -> list[str]:
    """Why Terraform would refuse `value` for type `typ` (strictly: unknown object attributes too)."""
    kind = typ[0]
    if value is None or kind == "any":
        return []
    if kind == "optional":
        return type_problems(value, typ[1], where)
    if kind == "string":
        return [] if isinstance(value, str) else [f"{where}: expected string, got {value!r}"]
    if kind == "number":
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return [] if ok else [f"{where}: expected number, got {value!r}"]
    if kind == "bool":
        return [] if isinstance(value, bool) else [f"{where}: expected bool, got {value!r}"]
    if kind == "map":
        if not isinstance(value, dict):
            return [f"{where}: expected map, got {type(value).__name__}"]
        return [p for k, v in value.items() for p in type_problems(v, typ[1], f"{where}[{k!r}]")]
    if kind in ("list", "set"):
        if not isinstance(value, list):
            return [f"{where}: expected list, got {type(value).__name__}"]
        return [p for i, v in enumerate(value) for p in type_problems(v, typ[1], f"{where}[{i}]")]
    if kind == "object":
        if not isinstance(value, dict):
            return [f"{where}: expected object, got {type(value).__name__}"]
        attrs: dict[str, tuple] = typ[1]
        problems = [f"{where}.{k}: not an attribute of the declared object type" for k in value if k not in attrs]
        for name, atyp in attrs.items():
            if name not in value:
                if atyp[0] != "optional":
                    problems.append(f"{where}.{name}: required attribute missing")
                continue
            problems += type_problems(value[name], atyp, f"{where}.{name}")
        return problems
    raise AssertionError(kind)


def eval_name(expr: str, key: str, value: dict) -> str:
    """Evaluate the few `name` expressions for_each resources use: each.key, each.value.X, "${...}-suffix"."""
    m = re.fullmatch(r'"?\$\{each\.(key|value\.([a-z_]+))\}(.*?)"?', expr)
    assert m, f"name expression {expr!r} is not each.key / each.value.<attr>"
    base = key if m.group(1) == "key" else value[m.group(2)]
    return base + m.group(3)


# --- fixtures -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tfvars_doc(tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("tfcfg")
    for d in ("audio", "meta"):
        (tmp / d).mkdir()
    (tmp / "migrate.toml").write_text(CONFIG)
    cfg = load_config(tmp / "migrate.toml")
    buckets = [src.bucket for src in cfg.catalog]
    topics = [src.topic for src in cfg.listeners]
    # Round-trip through the on-disk text, as terraform would read plans/<name>.tfvars.json.
    return json.loads(tfvars_json(build_tfvars(cfg, buckets, topics)))


def _terraform() -> str:
    exe = shutil.which("terraform") or "/usr/local/bin/terraform"
    assert Path(exe).exists(), "terraform CLI not found: install it (expected at /usr/local/bin/terraform)"
    return exe


def _checkov() -> str:
    candidates = [REPO / ".venv-tools" / "bin" / "checkov", Path(sys.prefix) / "bin" / "checkov"]
    for c in candidates:
        if c.exists():
            return str(c)
    found = shutil.which("checkov")
    assert found, (
        "checkov not found: create the tools venv with "
        "`python3 -m venv .venv-tools && .venv-tools/bin/pip install checkov` (or run `make setup`)"
    )
    return found


# --- tests ----------------------------------------------------------------------------------------


def test_terraform_fmt_is_clean() -> None:
    proc = subprocess.run(
        [_terraform(), "fmt", "-check", "-recursive", "-diff", str(TF)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, f"terraform fmt would change files:\n{proc.stdout}\n{proc.stderr}"


def test_tfvars_keys_are_declared_with_matching_types(tfvars_doc: dict) -> None:
    for root in (EXAMPLE, MODULE):
        declared = _variables(root)
        undeclared = sorted(set(tfvars_doc) - set(declared))
        assert not undeclared, f"{root.relative_to(REPO)}: tfvars keys without a variable: {undeclared}"
        problems = []
        for key, value in tfvars_doc.items():
            problems += type_problems(value, parse_type(declared[key]["type"]), f"{root.name}:var.{key}")
        assert not problems, "\n".join(problems)


def test_required_example_variables_are_all_in_tfvars(tfvars_doc: dict) -> None:
    declared = _variables(EXAMPLE)
    required = {name for name, body in declared.items() if "default" not in body}
    assert required, "the example root should require the plan's core variables"
    missing = sorted(required - set(tfvars_doc))
    assert not missing, f"variables without default that the tfvars document lacks: {missing}"
    nulls = sorted(k for k in required if tfvars_doc[k] is None)
    assert not nulls, f"required variables set to null: {nulls}"


def test_example_root_passes_every_tfvars_key_to_the_module(tfvars_doc: dict) -> None:
    modules = _load_dir(EXAMPLE)["module"]
    assert len(modules) == 1
    ((name, body),) = modules[0].items()
    assert _unq(body["source"]) == "../../modules/migration"
    for key in tfvars_doc:
        assert body.get(key) == f"${{var.{key}}}", f"module {name} does not pass var.{key}"
    module_required = {n for n, b in _variables(MODULE).items() if "default" not in b}
    assert module_required <= set(body), f"module inputs not set: {sorted(module_required - set(body))}"


def test_module_creates_every_bucket_topic_and_subscription(tfvars_doc: dict) -> None:
    res = _resources(MODULE)
    bucket = res[("google_storage_bucket", "target")]
    assert bucket["for_each"] == "${var.buckets}"
    created = {eval_name(bucket["name"], k, v) for k, v in tfvars_doc["buckets"].items()}
    assert created == set(tfvars_doc["buckets"]) == {"acme-audio", "acme-meta"}
    assert bucket["uniform_bucket_level_access"] is True
    assert _unq(bucket["public_access_prevention"]) == "enforced"
    assert "each.value.versioning" in bucket["versioning"][0]["enabled"]
    assert "each.value.soft_delete_retention_days" in bucket["soft_delete_policy"][0]["retention_duration_seconds"]
    dynamic = {_unq(k) for d in bucket["dynamic"] for k in d}
    assert {"lifecycle_rule", "encryption"} <= dynamic

    topic = res[("google_pubsub_topic", "target")]
    assert topic["for_each"] == "${var.topics}"
    assert {eval_name(topic["name"], k, v) for k, v in tfvars_doc["topics"].items()} == set(tfvars_doc["topics"])
    assert "each.value.message_retention_days" in topic["message_retention_duration"]

    dlq = res[("google_pubsub_topic", "dead_letter")]
    assert dlq["for_each"] == "${var.topics}"
    assert {eval_name(dlq["name"], k, v) for k, v in tfvars_doc["topics"].items()} == {
        dead_letter_topic(t) for t in tfvars_doc["topics"]
    }

    sub = res[("google_pubsub_subscription", "verification")]
    assert sub["for_each"] == "${var.topics}"
    assert {eval_name(sub["name"], k, v) for k, v in tfvars_doc["topics"].items()} == {
        verification_subscription(t) for t in tfvars_doc["topics"]
    }
    assert "google_pubsub_topic.target[each.key]" in sub["topic"]
    assert "google_pubsub_topic.dead_letter[each.key]" in sub["dead_letter_policy"][0]["dead_letter_topic"]
    assert _unq(sub["expiration_policy"][0]["ttl"]) == ""


def test_service_account_has_resource_level_least_privilege() -> None:
    res = _resources(MODULE)
    assert ("google_service_account", "migrate") in res
    project_level = [f"{t}.{n}" for t, n in res if t.startswith(("google_project_iam", "google_organization_iam"))]
    assert not project_level, f"project/organization-level IAM in the module: {project_level}"
    # The migration account's grants sit on the target resources, nothing wider.
    assert "google_storage_bucket.target[" in res[("google_storage_bucket_iam_member", "migrate")]["bucket"]
    assert "google_pubsub_topic.target[" in res[("google_pubsub_topic_iam_member", "migrate")]["topic"]
    sub_grant = res[("google_pubsub_subscription_iam_member", "migrate")]["subscription"]
    assert "google_pubsub_subscription.verification[" in sub_grant
    text = "\n".join(p.read_text() for p in sorted(MODULE.glob("*.tf")))
    roles = set(re.findall(r"roles/[A-Za-z.]+", text))
    assert roles == {
        "roles/storage.objectCreator",
        "roles/storage.objectViewer",
        "roles/storage.legacyBucketReader",
        "roles/storage.objectUser",  # only with allow_object_delete (conflict_policy = overwrite)
        "roles/pubsub.publisher",
        "roles/pubsub.subscriber",
        "roles/pubsub.viewer",
        "roles/cloudkms.cryptoKeyEncrypterDecrypter",  # GCS service agent, on the CMEK key only
        "roles/iam.serviceAccountTokenCreator",  # operators, on the service account only
    }, "a role was added or removed: justify it in iam.tf and update this list"


def test_versions_pin_the_google_provider() -> None:
    for root in (MODULE, EXAMPLE):
        (tf,) = _load_dir(root)["terraform"]
        assert _unq(tf["required_version"]).startswith(">=")
        google = tf["required_providers"][0]["google"]
        assert _unq(google["source"]) == "hashicorp/google"
        assert _unq(google["version"]) == "~> 6.0"


def test_every_checkov_skip_has_a_reason() -> None:
    skips = []
    for tf in sorted(TF.rglob("*.tf")):
        for n, line in enumerate(tf.read_text().splitlines(), 1):
            if "checkov:skip" in line:
                skips.append((tf, n, line.strip()))
                m = re.fullmatch(r"#\s*checkov:skip=(CKV2?_[A-Z]+_\d+):(.{15,})", line.strip())
                assert m, f"{tf.relative_to(REPO)}:{n}: a skip needs an id and a reason: {line.strip()!r}"
    assert skips, "expected the documented skips (CKV_GCP_62/78/83)"


def test_checkov_passes() -> None:
    env = dict(os.environ, LOG_LEVEL="ERROR")
    proc = subprocess.run(
        [_checkov(), "-d", str(TF), "--framework", "terraform", "--compact", "--skip-download", "-o", "json"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=600,
    )
    assert proc.stdout.strip(), f"checkov printed nothing (rc={proc.returncode}):\n{proc.stderr[-2000:]}"
    reports = json.loads(proc.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    assert [r.get("check_type") for r in reports] == ["terraform"]
    report = reports[0]
    summary = report["summary"]
    failed = [
        f"{c['check_id']} {c['check_name']} at {c['file_path']}:{c['resource']}"
        for c in report["results"].get("failed_checks", [])
    ]
    assert summary["failed"] == 0 and not failed, "checkov failures:\n" + "\n".join(failed)
    assert summary["parsing_errors"] == 0
    assert summary["passed"] > 0 and summary["resource_count"] > 0
    for c in report["results"].get("skipped_checks", []):
        reason = (c.get("check_result") or {}).get("suppress_comment") or ""
        assert len(reason) >= 15, f"{c['check_id']} skipped without a reason at {c['file_path']}"
    assert proc.returncode == 0, proc.stderr[-2000:]


SAMPLES = sorted((REPO / "plans" / "examples").glob("*.tfvars.json"))


@pytest.mark.skipif(not SAMPLES, reason="no committed plans/examples/*.tfvars.json yet")
@pytest.mark.parametrize("sample", SAMPLES, ids=[p.name for p in SAMPLES])
def test_committed_sample_tfvars_fit_the_example_root(sample: Path) -> None:
    doc = json.loads(sample.read_text())
    declared = _variables(EXAMPLE)
    assert set(doc) <= set(declared), sorted(set(doc) - set(declared))
    assert {n for n, b in declared.items() if "default" not in b} <= set(doc)
    problems = [p for k, v in doc.items() for p in type_problems(v, parse_type(declared[k]["type"]), f"var.{k}")]
    assert not problems, "\n".join(problems)
    assert sample.read_text() == tfvars_json(doc), "sample is not in canonical form (tfvars_json)"


def test_verification_subscription_retention_follows_its_topic_up_to_31_days() -> None:
    # Topic and subscription retention may both be up to 31 days:
    # https://cloud.google.com/pubsub/docs/subscription-properties#message_retention_duration
    local = {}
    for block in _load_dir(MODULE).get("locals", []):
        local.update({_unq(k): v for k, v in block.items()})
    assert local["max_subscription_retention_days"] == 31
    sub = _resources(MODULE)[("google_pubsub_subscription", "verification")]
    retention = sub["message_retention_duration"]
    assert "min(each.value.message_retention_days, local.max_subscription_retention_days)" in retention
    topics = _variables(MODULE)["topics"]
    (rule,) = [v for v in topics["validation"] if "message_retention_days" in v["condition"]]
    assert "<= 31" in rule["condition"]
