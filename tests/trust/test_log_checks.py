"""The request-log checks of the fault run catch what they are meant to: a retry sooner than
Retry-After, and an ``addPassword`` sent again without reading the app's credentials first."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sandbox.state import RequestLogEntry
from tests.trust.test_faults import add_password_checks, retry_after_checks

T0 = datetime(2030, 1, 1, tzinfo=UTC)
ADD = "/applications/x/addPassword"


def entry(
    seconds: float, service: str, method: str, path: str, status: int, retry_after: str | None = None
) -> RequestLogEntry:
    return RequestLogEntry(
        time=T0 + timedelta(seconds=seconds),
        service=service,
        method=method,
        path=path,
        raw_path=path,
        status=status,
        caller_app_id=None,
        retry_after=retry_after,
        latency_ms=10.0,
    )


def test_a_retry_sooner_than_retry_after_is_a_violation_and_a_patient_one_is_not() -> None:
    hasty = [entry(0, "graph", "GET", "/a", 429, "1"), entry(0.5, "graph", "GET", "/a", 200)]
    patient = [entry(0, "graph", "GET", "/a", 429, "1"), entry(1.2, "graph", "GET", "/a", 200)]
    assert retry_after_checks(hasty)[0] == 1 and len(retry_after_checks(hasty)[1]) == 1
    assert retry_after_checks(patient) == (1, [])


def test_the_admins_clicks_on_entra_pages_are_not_the_function_apps_requests() -> None:
    log = [
        entry(0, "entra", "POST", "/t/oauth2/v2.0/token", 429, "1"),
        entry(0.2, "entra", "GET", "/t/adminconsent", 200),
        entry(1.5, "entra", "POST", "/t/oauth2/v2.0/token", 200),
    ]
    assert retry_after_checks(log) == (1, [])


def test_add_password_again_without_reading_the_credentials_is_a_violation() -> None:
    blind = [entry(0, "graph", "POST", ADD, 503), entry(1, "graph", "POST", ADD, 200)]
    careful = [
        entry(0, "graph", "POST", ADD, 0),  # dropped
        entry(0.5, "graph", "GET", "/applications/x", 200),
        entry(1, "graph", "POST", ADD, 200),
    ]
    assert add_password_checks(blind)[1] != []
    assert add_password_checks(careful) == (1, [])
