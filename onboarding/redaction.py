"""A logging filter that keeps tokens and secrets out of every log line, whatever logged them.

The project's own code never logs a secret; this is the net under the libraries it uses (azure-core's
HTTP logging, MSAL, httpx), whose debug output can carry Authorization headers or token responses.
"""

from __future__ import annotations

import logging
import re

REDACTED = "[redacted]"

_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # A JWT anywhere (access tokens, id tokens): three base64url parts starting with '{"'.
    (re.compile(r"eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"), REDACTED),
    # Authorization headers, in the shapes libraries print them.
    (re.compile(r"(?i)(authorization['\"]?\s*[:=]\s*['\"]?)(bearer|basic)?\s*[^'\"\s,}]+"), rf"\1{REDACTED}"),
    # Known secret fields, as JSON or form fields.
    (
        re.compile(
            r"(?i)([\"']?(?:client_secret|clientsecret|secrettext|secret_text|access_token|refresh_token|"
            r"link_signing_key|password)[\"']?\s*[:=]\s*[\"']?)[^\"'&\s,}]+"
        ),
        rf"\1{REDACTED}",
    ),
    # A SAS signature in a URL's query, e.g. a Logic Apps callback URL (listCallbackUrl()) that httpx
    # logs with each webhook delivery: whoever holds it can run the workflow.
    (re.compile(r"(?i)([?&]sig=)[^&\s\"'#]+"), rf"\1{REDACTED}"),
    # SASL XOAUTH2 initial responses (base64 of "user=...\x01auth=Bearer ...").
    (re.compile(r"dXNlcj[A-Za-z0-9+/=]{20,}"), REDACTED),
)


def redact(text: str) -> str:
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


# The attributes every LogRecord has; any other one came from ``extra`` or a filter.
_STANDARD_FIELDS = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class RedactingFilter(logging.Filter):
    """Rewrites each record's final message, arguments folded in first so none escapes, and its
    ``extra`` text fields: the OpenTelemetry handler (onboarding/telemetry.py) exports those as they are,
    as customDimensions."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if record.exc_info and record.exc_info[1] is not None:
            # Tracebacks quote exception text, which a library may have filled with a response body.
            cleaned = f"{cleaned} ({type(record.exc_info[1]).__name__})"
            record.exc_info = None
            record.exc_text = None
        record.msg, record.args = cleaned, None
        for name, value in list(vars(record).items()):
            if name not in _STANDARD_FIELDS and isinstance(value, str):
                setattr(record, name, redact(value))
        return True


def install(target: logging.Logger | logging.Handler | None = None) -> None:
    """Attach the filter to a logger (default: the root) and its handlers, or to one handler
    (idempotent)."""
    target = target or logging.getLogger()
    handlers = target.handlers if isinstance(target, logging.Logger) else []
    for holder in (target, *handlers):
        if not any(isinstance(f, RedactingFilter) for f in holder.filters):
            holder.addFilter(RedactingFilter())
