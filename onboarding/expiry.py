"""Warn tenant admins before an onboarded app's client secret expires.

An expired secret is the quiet failure of this setup: the mail product starts getting AADSTS7000222
and stops reading mail. Every client secret this project made sits in Key Vault with its expiry and
the onboarding it belongs to, so a daily look at the vault's properties (never the values) finds
the ones that need rotating and tells the admins who approved them.

The admins hear of one secret at most five times: 30, 14, 7 and 1 day(s) before it expires and once
when it has expired. The timer runs at least once a day but may run late, skip a day or run twice,
so the rule keeps its state on the secret itself: after a warning is sent, the current version is
tagged ``expiryWarned=<milestone>`` with ``expiryWarnedFor=<the expiry it was about>``. A run sends
the most urgent milestone reached only if it is more urgent than the one recorded; a missed day
therefore sends the milestone it crossed, late but once, and a second run the same day finds the tag.
State derived from (now, expiry, last run) alone was rejected: a timer that runs twice or is
re-run by hand has no trustworthy "last run", and Durable histories are purged (onboarding/retention.py). The tag lives as
long as the secret, is bound to one expiry (a new version or a changed expiry starts afresh), and
Key Vault Secrets Officer, the role the function app already has, may list and update it.

The email goes before the tag: a crash between them repeats one warning the next day rather than
losing it. The watch stops for a secret once its at-expiry warning is recorded, when the secret is
deleted (offboarded), when its app is gone, or when the credential it holds is no longer on the app
(rotated away); a rotation that writes a new version starts that version's own schedule.

Who is told comes from the onboarding's record (onboarding/records.py), not its Durable history:
retention purges the history, and the warnings must go on for as long as the credential lives.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from onboarding import opsevents
from onboarding.domain import app_unique_name
from onboarding.errors import OnboardingError
from onboarding.lazy import lazy
from onboarding.records import OnboardingRecord

if TYPE_CHECKING:
    from onboarding import emails
    from onboarding.ports import ServicesPort
else:  # loaded by the first message sent (onboarding/lazy.py)
    emails = lazy("onboarding.emails")

# Set by steps.create_secret on every secret it writes.
CREDENTIALS_CONTENT_TYPE = "application/vnd.mail-onboarding.credentials+json"
WARNED_TAG = "expiryWarned"
WARNED_FOR_TAG = "expiryWarnedFor"
AT_EXPIRY = 0
LATER_MILESTONES = (14, 7, 1)
log = logging.getLogger("onboarding.expiry")


def utcnow() -> datetime:
    return datetime.now(UTC)


def milestones(first_days: int) -> tuple[int, ...]:
    """Days before expiry to warn at, most distant first, ending with the at-expiry warning (0)."""
    later = [d for d in LATER_MILESTONES if d < first_days]
    return (first_days, *later, AT_EXPIRY)


def days_left(expires_on: datetime, now: datetime) -> int:
    """Whole days left (rounded down); 0 on the last day and after."""
    return max(0, (expires_on - now).days)


def reached(expires_on: datetime, now: datetime, schedule: tuple[int, ...]) -> int | None:
    """The most urgent milestone reached at ``now``: 0 once expired, else the smallest m >= days left."""
    if now >= expires_on:
        return AT_EXPIRY
    left = days_left(expires_on, now)
    return min((m for m in schedule if m != AT_EXPIRY and left <= m), default=None)


def recorded(tags: dict[str, str], expires_on: datetime) -> int | None:
    """The milestone last sent for this very expiry, from the secret's tags."""
    if tags.get(WARNED_FOR_TAG) != expires_on.isoformat():
        return None
    try:
        return int(tags.get(WARNED_TAG, ""))
    except ValueError:
        return None  # hand-edited: treat as never warned (one extra email, never a lost one)


@dataclass(frozen=True)
class DueWarning:
    name: str
    onboarding_id: str
    app_id: str
    key_id: str
    expires_on: datetime
    milestone: int


def due_warnings(secrets: Iterable[object], *, now: datetime, schedule: tuple[int, ...]) -> list[DueWarning]:
    """This project's secrets with a milestone reached but not yet sent, soonest expiry first."""
    found = []
    for info in secrets:
        expires_on = getattr(info, "expires_on", None)
        tags: dict[str, str] = getattr(info, "tags", {}) or {}
        if getattr(info, "content_type", None) != CREDENTIALS_CONTENT_TYPE or expires_on is None:
            continue
        if "onboardingId" not in tags:
            continue
        milestone = reached(expires_on, now, schedule)
        sent = recorded(tags, expires_on)
        if milestone is None or (sent is not None and sent <= milestone):
            continue
        found.append(
            DueWarning(
                name=str(getattr(info, "name", "")),
                onboarding_id=tags["onboardingId"],
                app_id=tags.get("appId", ""),
                key_id=tags.get("keyId", ""),
                expires_on=expires_on,
                milestone=milestone,
            )
        )
    return sorted(found, key=lambda s: s.expires_on)


async def still_in_use(svc: ServicesPort, due: DueWarning) -> bool:
    """False once the app is gone (offboarded) or the credential is no longer on it (rotated away)."""
    app = await svc.graph.find_application(app_unique_name(due.onboarding_id))
    if app is None:
        return False
    if not due.key_id:
        return True
    return any(p.key_id == due.key_id for p in await svc.graph.list_passwords(app.object_id))


async def warn_expiring(
    svc: ServicesPort,
    *,
    now: datetime,
    first_days: int,
    record_of: Callable[[str], Awaitable[OnboardingRecord | None]],
) -> list[str]:
    """Send each due milestone warning once; returns the secret names warned. ``record_of`` gives an
    onboarding's record (onboarding/records.py: the admins to tell, kept past the history's purge).
    One secret that cannot be checked or told (Graph or Key Vault refusing) is logged and left for
    tomorrow's run; the others are still warned."""
    warned = []
    for due in due_warnings(await svc.vault.list_secrets(), now=now, schedule=milestones(first_days)):
        try:
            if await _warn(svc, due, now, record_of):
                warned.append(due.name)
        except OnboardingError as exc:
            log.warning("expiry warning for %s not sent: %s", due.name, exc.message)
    return warned


async def _warn(
    svc: ServicesPort,
    due: DueWarning,
    now: datetime,
    record_of: Callable[[str], Awaitable[OnboardingRecord | None]],
) -> bool:
    if not await still_in_use(svc, due):
        return False
    record = await record_of(due.onboarding_id)
    # One line per warning due, told or not: the "credentials expiring" alert counts them.
    opsevents.emit(
        log,
        opsevents.OpsEvent.CREDENTIAL_EXPIRING,
        logging.WARNING,
        onboarding_id=due.onboarding_id,
        app_id=due.app_id,
        expires_on=due.expires_on.isoformat(),
        days_left=days_left(due.expires_on, now),
        milestone=due.milestone,
        admins_known=record is not None,
    )
    if record is None:
        return False  # neither a record nor a history (removed by hand): nobody to tell but the alert
    await _send(svc, record, due, now)
    marked = {WARNED_TAG: str(due.milestone), WARNED_FOR_TAG: due.expires_on.isoformat()}
    await svc.vault.tag_current(due.name, expires_on=due.expires_on, tags=marked)
    return True


async def _send(svc: ServicesPort, record: OnboardingRecord, due: DueWarning, now: datetime) -> None:
    from onboarding.steps import send_email

    request = record.as_request()
    message = emails.secret_expiring(
        request,
        mailbox_count=record.mailbox_count,
        app_id=due.app_id,
        name=due.name,
        expires_on=due.expires_on,
        days_left=days_left(due.expires_on, now),
        expired=due.milestone == AT_EXPIRY,
        brand=emails.Brand.from_settings(svc.settings),
    )
    await send_email(svc, request.admin_emails, message)
