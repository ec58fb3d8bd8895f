"""The v1 contract integrations rely on: Logic Apps' asynchronous polling and listing with pages."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from funchost.engine import fmt_time
from onboarding.domain import (
    OnboardingResult,
    Outcome,
    Progress,
    StepError,
    Waiting,
    new_onboarding_id,
)
from onboarding.links import LinkPurpose

from .conftest import PUBLIC, Api, request_body

V1 = "/api/v1/onboardings"


def start_v1(api: Api, **changes: Any) -> httpx.Response:
    response = api.client.post(V1, json=request_body(**changes))
    assert response.status_code == 202, response.text
    api.host.idle()
    return response


def test_v1_status_is_202_with_the_same_location_until_final_then_200(api: Api) -> None:
    started = start_v1(api)
    onboarding_id = started.json()["id"]
    location = started.headers["Location"]
    assert location == f"{PUBLIC}{V1}/{onboarding_id}"
    polled = api.client.get(api.local(location))
    assert polled.status_code == 202
    assert polled.headers["Location"] == location and polled.headers["Retry-After"] == "10"
    assert polled.json()["status"] == "waiting"

    state = api.token(onboarding_id, LinkPurpose.CONSENT)
    api.decide("/api/consent/callback", {"admin_consent": "True", "state": state})
    api.host.idle()
    final = api.client.get(api.local(location))
    assert final.status_code == 200 and "Retry-After" not in final.headers
    assert final.json()["status"] == "succeeded"
    assert final.json()["links"]["self"] == location


def test_dashboards_read_the_current_view_with_200_while_it_runs(api: Api) -> None:
    onboarding_id = start_v1(api).json()["id"]
    current = api.client.get(f"{V1}/{onboarding_id}", params={"view": "current"})
    assert current.status_code == 200 and current.headers["Retry-After"] == "10"
    assert current.json()["status"] == "waiting"
    wrong = api.client.get(f"{V1}/{onboarding_id}", params={"view": "everything"})
    assert wrong.status_code == 400 and "view" in wrong.json()["detail"]


@pytest.mark.parametrize("outcome", ["rejected", "cancelled"])
def test_every_final_outcome_answers_200_so_a_logic_app_goes_on_to_record_it(api: Api, outcome: str) -> None:
    onboarding_id = start_v1(api, consentMode="grant").json()["id"]
    if outcome == "rejected":
        token = api.token(onboarding_id, LinkPurpose.DECIDE)
        api.decide(f"/api/approvals/{token}", decision="reject")
    else:
        assert api.client.post(f"{V1}/{onboarding_id}/cancel").status_code == 202
    api.host.idle()
    final = api.client.get(f"{V1}/{onboarding_id}")
    assert final.status_code == 200
    assert final.json()["status"] == outcome and final.json()["errors"]


def test_a_caller_using_the_code_parameter_can_poll_the_location_as_given(api: Api) -> None:
    keyless = httpx.Client(base_url=api.host.base_url)
    started = keyless.post(V1, params={"code": api.host.function_key}, json=request_body())
    assert started.status_code == 202
    location = started.headers["Location"]
    assert location.startswith(f"{PUBLIC}{V1}/") and location.endswith(f"?code={api.host.function_key}")
    # Bodies never carry the key; only the Location the caller follows does.
    assert api.host.function_key not in started.text
    api.host.idle()
    polled = keyless.get(api.local(location))
    assert polled.status_code == 202 and polled.headers["Location"] == location
    assert api.host.function_key not in polled.text
    keyless.close()


# ---------------------------------------------------------------------------------------------------
# Listing across 1,000 instances, planted straight in the host's task hub (no orchestration runs).

BASE = datetime(2026, 11, 1, tzinfo=UTC)
KINDS = ("waiting", "succeeded", "rejected", "failed")


def plant(api: Api, count: int) -> list[dict[str, Any]]:
    """``count`` onboardings: reference CHG-(i % 10), created i minutes after BASE, kind KINDS[i % 4]."""
    template_id = api.start()
    template = json.loads(api.durable(template_id)["input"])
    assert api.client.post(f"{V1}/{template_id}/cancel").status_code == 202
    api.host.idle()
    assert api.host.engine.purge(template_id) == 1
    planted = []
    with api.host.store.transaction() as db:
        for i in range(count):
            reference, kind = f"CHG-{i % 10}", KINDS[i % 4]
            onboarding_id = new_onboarding_id(reference, f"{i:024x}")
            job = {**template, "onboarding_id": onboarding_id}
            job["request"] = {**template["request"], "external_reference": reference}
            created = fmt_time(BASE + timedelta(minutes=i))
            status, custom, output = _state(onboarding_id, kind)
            db.execute(
                "INSERT INTO instances (instance_id, name, execution_id, status, input, output, custom_status,"
                " created, updated) VALUES (?,?,?,?,?,?,?,?,?)",
                (onboarding_id, "onboarding", "e", status, json.dumps(job), output, custom, created, created),
            )
            planted.append({"id": onboarding_id, "ref": reference, "kind": kind, "created": i})
    return planted


def _state(onboarding_id: str, kind: str) -> tuple[str, str | None, str | None]:
    if kind == "waiting":
        waiting = Waiting(kind="admin_consent", nonce="n", deadline=BASE.isoformat())
        return "Running", json.dumps(Progress(steps={}, waiting=waiting).to_json()), None
    if kind == "failed":
        return "Failed", None, None
    outcome = Outcome(kind)
    error = None if outcome is Outcome.SUCCEEDED else StepError(step="admin_consent", message="No.", code="x")
    result = OnboardingResult(onboarding_id=onboarding_id, outcome=outcome, error=error)
    return "Completed", None, json.dumps(result.to_json())


def pages(api: Api, **params: str) -> list[dict[str, Any]]:
    """Every page of a listing, following continuationToken (and checking nextLink says the same)."""
    found = []
    response = api.client.get(V1, params=params)
    while True:
        assert response.status_code == 200, response.text
        body = response.json()
        found.append(body)
        if body["continuationToken"] is None:
            assert body["nextLink"] is None
            return found
        assert body["nextLink"].startswith(f"{PUBLIC}{V1}?")
        response = api.client.get(api.local(body["nextLink"]))


def test_listing_pages_through_1000_onboardings_once_each_in_creation_order(api: Api) -> None:
    planted = plant(api, 1000)
    listed = pages(api, pageSize="100")
    assert [len(p["items"]) for p in listed] == [100] * 10
    ids = [item["id"] for page in listed for item in page["items"]]
    assert ids == [p["id"] for p in planted]
    first = listed[0]["items"][0]
    assert first["links"]["self"] == f"{PUBLIC}{V1}/{first['id']}"
    assert first["externalReference"] == "CHG-0" and first["status"] == "waiting"


def test_listing_filters_by_reference_through_the_id_prefix_without_scanning(api: Api) -> None:
    planted = plant(api, 1000)
    listed = pages(api, externalReference="CHG-3", pageSize="10")
    # Full pages all the way: the instance query itself filtered (a scan would give mostly empty pages).
    assert [len(p["items"]) for p in listed] == [10] * 10
    assert [i["id"] for p in listed for i in p["items"]] == [p["id"] for p in planted if p["ref"] == "CHG-3"]


def test_a_continuation_token_works_only_with_the_filters_it_was_issued_for(api: Api) -> None:
    plant(api, 100)
    first = api.client.get(V1, params={"pageSize": "10", "status": "waiting"}).json()
    token = first["continuationToken"]
    assert (
        token
        and api.client.get(
            V1, params={"pageSize": "10", "status": "waiting", "continuationToken": token}
        ).status_code
        == 200
    )
    other = api.client.get(V1, params={"pageSize": "10", "status": "failed", "continuationToken": token})
    assert other.status_code == 400 and other.json()["errors"][0]["field"] == "continuationToken"


def test_listing_filters_by_status_and_creation_window_together(api: Api) -> None:
    planted = plant(api, 1000)
    window = {"createdFrom": (BASE + timedelta(minutes=100)).isoformat(), "createdTo": "2026-11-01T04:59:00Z"}
    for status, runtime_kinds in (("waiting", {"waiting"}), ("rejected,failed", {"rejected", "failed"})):
        listed = pages(api, status=status, pageSize="50", **window)
        assert all(len(p["items"]) <= 50 for p in listed)
        got = [i["id"] for p in listed for i in p["items"]]
        want = [p["id"] for p in planted if p["kind"] in runtime_kinds and 100 <= p["created"] <= 299]
        assert got == want and len(want) == 50 * len(runtime_kinds)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"pageSize": "0"}, "pageSize"),
        ({"pageSize": "101"}, "pageSize"),
        ({"status": "done"}, "status"),
        ({"createdFrom": "yesterday"}, "createdFrom"),
        ({"createdFrom": "2026-11-01T00:00:00"}, "createdFrom"),
        ({"continuationToken": "a\tb"}, "continuationToken"),
        ({"continuationToken": "abc." + "0" * 64}, "continuationToken"),
    ],
)
def test_bad_listing_parameters_are_named(api: Api, params: dict[str, str], field: str) -> None:
    response = api.client.get(V1, params=params)
    assert response.status_code == 400
    assert [e["field"] for e in response.json()["errors"]] == [field]


def test_the_connector_trigger_needs_the_flows_callback_url(api: Api) -> None:
    missing = api.client.post(f"{V1}/trigger", json=request_body())
    assert missing.status_code == 400
    assert [e["field"] for e in missing.json()["errors"]] == ["/callbackUrl"]
    assert api.host.instances() == []
    started = api.client.post(f"{V1}/trigger", json=request_body(callbackUrl="https://flow.example/hook"))
    assert started.status_code == 202 and started.headers["Location"].startswith(f"{PUBLIC}{V1}/onb-")
