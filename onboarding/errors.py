"""The project's own errors. Their messages are stored by Durable Functions and shown to admins:
they say what failed and how to fix it in the project's own words, and never carry a secret, a token,
a response body or a service's own error text (which may echo input, and which the project cannot
vouch for). A service's text stays on ``upstream``, for classifying the failure in the adapter that
caught it; it is never stored, shown or logged (logs carry ``code``)."""

from __future__ import annotations

import re


class OnboardingError(Exception):
    """A failure an admin can act on. ``retryable`` tells callers whether trying again may help."""

    retryable = False
    upstream = ""  # the service's own (redacted) error text: for classification only, never shown

    def __init__(self, message: str, *, fix: str = "", code: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix
        self.code = code or type(self).__name__

    def __str__(self) -> str:
        return f"{self.message} Fix: {self.fix}" if self.fix else self.message


_CODE = re.compile(r"[A-Za-z][A-Za-z0-9_.]{0,79}")


def service_code(value: object) -> str:
    """A service's error code, kept only if it looks like one (a code is stored; free text is not)."""
    text = str(value or "")
    return text if _CODE.fullmatch(text) else ""


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
