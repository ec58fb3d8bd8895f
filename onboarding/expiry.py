"""Warn tenant admins before an onboarded app's client secret expires.

An expired secret is the quiet failure of this setup: the mail product starts getting AADSTS7000222
and stops reading mail. Every client secret this project made sits in Key Vault with its expiry and
the onboarding it belongs to, so a daily look at the vault's properties (never the values) finds
the ones that need rotating and tells the admins who approved them.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from onboarding import emails, opsevents
from onboarding.domain import OnboardingRequest
from onboarding.ports import ServicesPort

# Set by steps.create_secret on every secret it writes.
CREDENTIALS_CONTENT_TYPE = "application/vnd.mail-onboarding.credentials+json"
log = logging.getLogger("onboarding.expiry")


@dataclass(frozen=True)
class ExpiringSecret:
    name: str
    onboarding_id: str
    app_id: str
    expires_on: datetime

    def days_left(self, now: datetime) -> int:
        return max(0, (self.expires_on - now).days)


def expiring(secrets: Iterable[object], *, now: datetime, within: timedelta) -> list[ExpiringSecret]:
    """This project's secrets that expire (or expired) before ``now + within``, soonest first."""
    found = []
    for info in secrets:
        expires_on = getattr(info, "expires_on", None)
        tags: dict[str, str] = getattr(info, "tags", {}) or {}
        if getattr(info, "content_type", None) != CREDENTIALS_CONTENT_TYPE or expires_on is None:
            continue
        if "onboardingId" not in tags or expires_on > now + within:
            continue
        found.append(
            ExpiringSecret(
                str(getattr(info, "name", "")), tags["onboardingId"], tags.get("appId", ""), expires_on
            )
        )
    return sorted(found, key=lambda s: s.expires_on)


async def warn_expiring(
    svc: ServicesPort,
    *,
    now: datetime,
    within: timedelta,
    request_of: Callable[[str], Awaitable[OnboardingRequest | None]],
) -> list[str]:
    """Email the admins of each onboarding whose secret expires soon; returns the secret names warned."""
    warned = []
    for secret in expiring(await svc.vault.list_secrets(), now=now, within=within):
        request = await request_of(secret.onboarding_id)
        # One line per credential, told or not: the "credentials expiring" alert counts them.
        opsevents.emit(
            log,
            opsevents.OpsEvent.CREDENTIAL_EXPIRING,
            logging.WARNING,
            onboarding_id=secret.onboarding_id,
            app_id=secret.app_id,
            expires_on=secret.expires_on.isoformat(),
            days_left=secret.days_left(now),
            admins_known=request is not None,
        )
        if request is None:
            continue  # the onboarding's history was purged: nobody to tell but the vault's own alerts
        message = emails.secret_expiring(
            request,
            app_id=secret.app_id,
            name=secret.name,
            expires_on=secret.expires_on,
            days_left=secret.days_left(now),
            brand=emails.Brand.from_settings(svc.settings),
        )
        from onboarding.steps import send_email

        await send_email(svc, request.admin_emails, message)
        warned.append(secret.name)
    return warned
