"""Domain errors. Each carries a one-line message that names the thing and the fix.

The CLI maps them to exit codes; core code raises them and never prints.
"""

from __future__ import annotations


class MigrateError(Exception):
    """Base for every error an operator can cause or fix."""

    exit_code = 1

    def __init__(self, message: str, fix: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix

    def one_line(self) -> str:
        text = self.message.replace("\n", " ")
        if self.fix:
            text += f" (fix: {self.fix})"
        return text


class UsageError(MigrateError):
    exit_code = 2


class ConfigError(MigrateError):
    """The config file is malformed or names things that do not exist."""

    exit_code = 2

    def __init__(self, problems: list[str] | str, fix: str | None = None) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("; ".join(self.problems), fix)

    def lines(self) -> list[str]:
        return self.problems


class PlanError(MigrateError):
    """A plan file is tampered with, stale, or drifted from the inventory."""

    exit_code = 2


class SourceError(MigrateError):
    """An on-prem source cannot be read."""


class TargetError(MigrateError):
    """A GCS bucket or Pub/Sub topic is missing, unreachable or not writable."""


class EventsUnverifiable(TargetError):
    """A topic's verification subscription is missing: events published now could never be verified."""

    exit_code = 2


class CredentialsError(TargetError):
    """No usable Google Cloud credentials: a setup mistake, fixed before anything can move."""

    exit_code = 2


class VerificationFailed(MigrateError):
    """Verification found differences."""
