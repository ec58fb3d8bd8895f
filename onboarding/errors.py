"""The project's own errors. Their messages are stored by Durable Functions and shown to admins:
they say what failed and how to fix it, and never carry a secret, a token or a response body that
might echo one."""

from __future__ import annotations


class OnboardingError(Exception):
    """A failure an admin can act on. ``retryable`` tells callers whether trying again may help."""

    retryable = False

    def __init__(self, message: str, *, fix: str = "", code: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix
        self.code = code or type(self).__name__

    def __str__(self) -> str:
        return f"{self.message} Fix: {self.fix}" if self.fix else self.message


class TransientError(OnboardingError):
    """Throttling, a 5xx, a dropped connection or directory replication: try again later."""

    retryable = True

    def __init__(
        self, message: str, *, retry_after: float | None = None, fix: str = "", code: str = ""
    ) -> None:
        super().__init__(message, fix=fix, code=code)
        self.retry_after = retry_after


class NotFoundError(OnboardingError):
    """The object does not exist (or is not visible yet)."""


class PermissionDeniedError(OnboardingError):
    """The function app's identity lacks a permission or role."""


class InvalidRequestError(OnboardingError):
    """The request names something invalid; retrying the same request cannot help."""


class ConfigurationError(OnboardingError):
    """One or more settings are missing or malformed; lists every problem by setting name."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__(
            "Invalid configuration: " + "; ".join(problems),
            fix="Set the named app settings (see docs/deploy.md).",
        )
        self.problems = problems
