"""Object names: prefix + relpath, and the rules GCS enforces on them."""

from __future__ import annotations

import re

MAX_OBJECT_NAME_BYTES = 1024
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# Anything the rules below could object to, in one C-level scan (inventory checks every file's name):
# control characters (CR and LF among them), lone surrogates (not UTF-8), '.', '..' and the ACME prefix.
_SUSPECT = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]|^\.\.?$|^\.well-known/acme-challenge/")
SAFE_NAME_CHARS = MAX_OBJECT_NAME_BYTES // 4  # names this short are within the byte limit: <= 4 UTF-8 bytes a character


def name_head_ok(head: str) -> bool:
    """True when head + x is a good object name for every printable x of at most SAFE_NAME_CHARS - len(head)
    characters that does not start with '.' when head is empty (a tree walk's quick check, one per directory;
    isprintable() is False for control characters, CR, LF and lone surrogates)."""
    return len(head) <= SAFE_NAME_CHARS and head.isprintable() and not head.startswith(".")


def object_name_problem(name: str) -> str | None:
    """Why GCS would reject (or we refuse) this object name, or None if it is fine."""
    if name and len(name) <= SAFE_NAME_CHARS and not _SUSPECT.search(name):
        return None
    if not name:
        return "empty object name"
    try:
        encoded = name.encode("utf-8")
    except UnicodeEncodeError:
        return "name is not valid UTF-8"
    if len(encoded) > MAX_OBJECT_NAME_BYTES:
        return f"object name is {len(encoded)} bytes; GCS allows at most {MAX_OBJECT_NAME_BYTES}"
    if "\r" in name or "\n" in name:
        return "object name contains CR or LF"
    if name in (".", ".."):
        return "object name is '.' or '..'"
    if name.startswith(".well-known/acme-challenge/"):
        return "object name starts with .well-known/acme-challenge/"
    if _CONTROL.search(name):
        return "object name contains a control character"
    return None


def object_name(prefix: str, relpath: str) -> str:
    """Join prefix and a '/'-separated relpath; never lets the result escape the prefix.

    Raises ValueError for a relpath that is absolute or has '.'/'..'/empty segments.
    """
    parts = relpath.split("/")
    if relpath.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"relpath {relpath!r} would escape the prefix")
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    return prefix + relpath


def display_name(raw: bytes | str) -> str:
    """A printable form of a file name that may not be UTF-8 (undecodable bytes as \\xNN)."""
    if isinstance(raw, str):
        raw = raw.encode("utf-8", "surrogateescape")
    return raw.decode("utf-8", "backslashreplace").replace("\n", "\\n").replace("\r", "\\r")


def verification_subscription(topic: str) -> str:
    """The subscription `migrate verify` drains; created by terraform/ or emulator provisioning."""
    return f"{topic}-migrate-verify"


def dead_letter_topic(topic: str) -> str:
    return f"{topic}-dead-letter"
