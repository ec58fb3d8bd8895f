from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from onboarding.expiry import CREDENTIALS_CONTENT_TYPE, expiring

NOW = datetime(2026, 6, 1, tzinfo=UTC)


@dataclass
class Info:
    name: str
    expires_on: datetime | None
    tags: dict[str, str] = field(default_factory=lambda: {"onboardingId": "onb-1", "appId": "app-1"})
    content_type: str | None = CREDENTIALS_CONTENT_TYPE


def test_only_this_projects_secrets_expiring_within_the_window_are_picked_soonest_first():
    secrets = [
        Info("later", NOW + timedelta(days=90)),
        Info("soon", NOW + timedelta(days=20)),
        Info("sooner", NOW + timedelta(days=3)),
        Info("expired", NOW - timedelta(days=1)),
        Info("someone-elses", NOW + timedelta(days=2), content_type="text/plain"),
        Info("untagged", NOW + timedelta(days=2), tags={}),
        Info("no-expiry", None),
    ]
    picked = expiring(secrets, now=NOW, within=timedelta(days=30))
    assert [s.name for s in picked] == ["expired", "sooner", "soon"]
    assert [s.days_left(NOW) for s in picked] == [0, 3, 20]
    assert picked[0].onboarding_id == "onb-1" and picked[0].app_id == "app-1"
