"""The sender mailbox's hourly budget of email recipients (EMAILS_PER_HOUR): over it an email waits."""

from __future__ import annotations

from dataclasses import replace

import pytest

from onboarding import emails, steps
from onboarding.errors import TransientError
from tests.unit.fakes import FakeServices, settings

MESSAGE = emails.Email("Subject", "<p>html</p>", "text")


async def test_emails_past_the_hourly_recipient_budget_wait_instead_of_going_out() -> None:
    svc = FakeServices(replace(settings(), emails_per_hour=3))  # a budget no other test uses
    await steps.send_email(svc, ["a@contoso.test", "b@contoso.test"], MESSAGE)
    with pytest.raises(TransientError) as caught:
        await steps.send_email(svc, ["c@contoso.test", "d@contoso.test"], MESSAGE)
    assert caught.value.code == "email_rate_limited" and caught.value.retry_after
    assert "EMAILS_PER_HOUR" in caught.value.fix
    await steps.send_email(svc, ["c@contoso.test"], MESSAGE)  # one more recipient still fits
    assert [m["to"] for m in svc.graph.mail] == [["a@contoso.test", "b@contoso.test"], ["c@contoso.test"]]
    assert svc.graph.mail[0]["text"] == "text"  # the plain-text part goes along
