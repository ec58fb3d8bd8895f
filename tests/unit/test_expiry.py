from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

from onboarding import emails, records
from onboarding.domain import AppRegistration, OnboardingRequest, Protocol
from onboarding.errors import TransientError
from onboarding.expiry import (
    CREDENTIALS_CONTENT_TYPE,
    WARNED_FOR_TAG,
    WARNED_TAG,
    due_warnings,
    milestones,
    warn_expiring,
)
from tests.unit.fakes import settings

NOW = datetime(2026, 6, 1, 6, tzinfo=UTC)
SCHEDULE = milestones(30)


@dataclass
class Info:
    name: str
    expires_on: datetime | None
    tags: dict[str, str] = field(default_factory=lambda: {"onboardingId": "onb-1", "appId": "app-1"})
    content_type: str | None = CREDENTIALS_CONTENT_TYPE


def warned(info: Info, milestone: int) -> Info:
    assert info.expires_on is not None
    tags = {**info.tags, WARNED_TAG: str(milestone), WARNED_FOR_TAG: info.expires_on.isoformat()}
    return Info(info.name, info.expires_on, tags, info.content_type)


def test_the_schedule_is_30_14_7_1_days_then_once_at_expiry():
    assert SCHEDULE == (30, 14, 7, 1, 0)
    assert milestones(10) == (10, 7, 1, 0)


def test_only_this_projects_secrets_with_a_milestone_reached_are_picked_soonest_first():
    secrets = [
        Info("later", NOW + timedelta(days=90)),
        Info("soon", NOW + timedelta(days=20)),
        Info("sooner", NOW + timedelta(days=3)),
        Info("expired", NOW - timedelta(days=1)),
        Info("someone-elses", NOW + timedelta(days=2), content_type="text/plain"),
        Info("untagged", NOW + timedelta(days=2), tags={}),
        Info("no-expiry", None),
    ]
    picked = due_warnings(secrets, now=NOW, schedule=SCHEDULE)
    assert [(s.name, s.milestone) for s in picked] == [("expired", 0), ("sooner", 7), ("soon", 30)]
    assert picked[0].onboarding_id == "onb-1" and picked[0].app_id == "app-1"


def test_a_day_by_day_run_sends_each_milestone_once_even_when_a_day_is_skipped_or_run_twice():
    info = Info("s", NOW + timedelta(days=40, hours=4))
    sent = []
    for day in range(200):
        if day == 26:  # the timer did not run the day the 14-day milestone was reached
            continue
        for _ in range(2 if day == 33 else 1):  # and ran twice on the 7-day milestone's day
            now = NOW + timedelta(days=day)
            for due in due_warnings([info], now=now, schedule=SCHEDULE):
                sent.append((day, due.milestone))
                info = warned(info, due.milestone)
    assert sent == [(10, 30), (27, 14), (33, 7), (39, 1), (41, 0)]


def test_a_new_expiry_or_a_hand_edited_tag_starts_the_schedule_afresh():
    info = warned(Info("s", NOW + timedelta(days=5)), 7)
    assert due_warnings([info], now=NOW, schedule=SCHEDULE) == []
    extended = Info("s", NOW + timedelta(days=6), info.tags)  # a new version written by a rotation
    assert [d.milestone for d in due_warnings([extended], now=NOW, schedule=SCHEDULE)] == [7]
    info.tags[WARNED_TAG] = "seven"
    assert [d.milestone for d in due_warnings([info], now=NOW, schedule=SCHEDULE)] == [7]


def test_the_warning_says_how_long_is_left_and_after_expiry_says_it_expired():
    request = OnboardingRequest(
        tenant_id="11111111-1111-1111-1111-111111111111",
        display_name="Helpdesk",
        protocols=(Protocol.IMAP,),
        mailboxes=("support@contoso.com",),
        admin_emails=("admin@contoso.com",),
    )
    expires = datetime(2026, 6, 30, tzinfo=UTC)

    def subject(days_left: int, expired: bool = False) -> str:
        mail = emails.secret_expiring(
            request, app_id="a", name="n", expires_on=expires, days_left=days_left, expired=expired
        )
        return mail.subject

    assert subject(14) == "Client secret of Helpdesk expires in 14 days"
    assert subject(1) == "Client secret of Helpdesk expires in 1 day"
    assert subject(0) == "Client secret of Helpdesk expires today"
    assert subject(0, expired=True) == "Client secret of Helpdesk expired on 2026-06-30"


class Vault:
    def __init__(self, secrets: list[Info]) -> None:
        self.secrets = secrets
        self.tagged: list[str] = []

    async def list_secrets(self) -> list[Info]:
        return self.secrets

    async def tag_current(self, name: str, *, expires_on: datetime, tags: dict[str, str]) -> bool:
        self.tagged.append(name)
        return True


class Graph:
    """One app per onboarding; ``refusing`` answers 503-like transient errors for its onboarding."""

    def __init__(self, refusing: str) -> None:
        self.refusing = refusing
        self.mails: list[str] = []

    async def find_application(self, unique_name: str) -> AppRegistration:
        if unique_name.endswith(self.refusing):
            raise TransientError("Graph is throttling or unavailable (HTTP 503).")
        return AppRegistration(object_id="obj", app_id="app", unique_name=unique_name)

    async def list_passwords(self, object_id: str) -> list[SimpleNamespace]:
        return [SimpleNamespace(key_id="k1")]

    async def send_mail(self, sender: str, to: Any, subject: str, html: str, text: str = "") -> None:
        self.mails.append(subject)


async def test_a_secret_that_cannot_be_checked_today_does_not_stop_the_others_being_warned():
    tags = {"onboardingId": "onb-2", "appId": "app-2", "keyId": "k1"}
    vault = Vault([Info("first", NOW + timedelta(days=5)), Info("second", NOW + timedelta(days=6), tags)])
    svc = SimpleNamespace(settings=settings(), vault=vault, graph=Graph(refusing="onb-1"))
    request = OnboardingRequest(
        tenant_id="11111111-1111-1111-1111-111111111111",
        display_name="Helpdesk",
        protocols=(Protocol.IMAP,),
        mailboxes=("support@contoso.com",),
        admin_emails=("admin@contoso.com",),
    )

    record = records.record_of(
        "onb-2",
        request,
        mailbox_count=1,
        app={"app_id": "app-2"},
        secret_name="second",
        outcome="succeeded",
        operation=records.RecordedOperation(records.Operation.ONBOARDED, NOW.isoformat()),
    )

    async def record_of(onboarding_id: str) -> records.OnboardingRecord:
        return record

    warned = await warn_expiring(svc, now=NOW, first_days=30, record_of=record_of)
    assert warned == ["second"] and vault.tagged == ["second"]
    assert svc.graph.mails == ["Client secret of Helpdesk expires in 6 days"]
