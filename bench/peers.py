"""Locate (or install) the peers and build their command lines: rclone, gcloud storage, find."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from bench.gcs import PROJECT


class PeerMissing(Exception):
    """A peer tool is not installed and could not be installed."""


def _apt_install(package: str) -> None:
    """Install a Debian package when we are root (apt-get update only if the first try fails)."""
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "env": env}
    if subprocess.run(["apt-get", "install", "-y", "-qq", package], **quiet).returncode != 0:
        subprocess.run(["apt-get", "update", "-qq"], **quiet)
        subprocess.run(["apt-get", "install", "-y", "-qq", package], **quiet)


def ensure_rclone(install: bool = True) -> str:
    """Path of rclone; installs the Debian package when missing and we are root."""
    path = shutil.which("rclone")
    if not path and install:
        _apt_install("rclone")
        path = shutil.which("rclone")
    if path:
        return path
    raise PeerMissing("rclone is not installed (apt-get install rclone, or `make setup`)")


def ensure_gnu_time(install: bool = True) -> str | None:
    """Path of GNU time (/usr/bin/time), which measure.py starts tools through; installs it if it can."""
    path = shutil.which("time", path="/usr/bin:/bin")
    if not path and install:
        _apt_install("time")
        path = shutil.which("time", path="/usr/bin:/bin")
    return path


def gcloud() -> str:
    path = shutil.which("gcloud")
    if not path:
        raise PeerMissing("gcloud is not installed (the Google Cloud CLI)")
    return path


def rclone_config(path: Path, endpoint: str) -> Path:
    """An rclone remote `emu` on fake-gcs-server: anonymous, uniform bucket-level access."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "[emu]\n"
        "type = google cloud storage\n"
        f"endpoint = {endpoint}/storage/v1/\n"
        "anonymous = true\n"
        "bucket_policy_only = true\n"
    )
    return path


def gcloud_config(config_dir: Path, endpoint: str) -> Path:
    """A private CLOUDSDK_CONFIG pointing `gcloud storage` at the emulator without credentials.

    Written as the properties file gcloud reads, rather than with `gcloud config set` (a second each).
    Parallel composite uploads are off: gcloud turns them on for files over 150 MiB, and on
    fake-gcs-server they fail ("'NoneType' object has no attribute 'items'"), so gcloud uses its
    normal upload for large files here.
    """
    (config_dir / "configurations").mkdir(parents=True, exist_ok=True)
    (config_dir / "active_config").write_text("default")
    (config_dir / "configurations" / "config_default").write_text(
        "[core]\n"
        f"project = {PROJECT}\n"
        "disable_usage_reporting = true\n"
        "[auth]\n"
        "disable_credentials = True\n"
        "[api_endpoint_overrides]\n"
        f"storage = {endpoint}/storage/v1/\n"
        "[storage]\n"
        "parallel_composite_upload_enabled = False\n"
        "[component_manager]\n"
        "disable_update_check = true\n"
    )
    return config_dir


def gcloud_env(config_dir: Path) -> dict[str, str]:
    return {"CLOUDSDK_CONFIG": str(config_dir), "CLOUDSDK_CORE_DISABLE_PROMPTS": "1"}


def version(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.strip().splitlines()[0] if out.strip() else "unknown"
