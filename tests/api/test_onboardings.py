"""The requester's API over HTTP: keys, 202 and polling, idempotency, problems, cancel."""

from __future__ import annotations

import concurrent.futures
import json

import httpx
import pytest

from .conftest import PUBLIC, TENANT, Api, request_body

ID = "onb-" + "0" * 32


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/api/onboardings"),
        ("GET", f"/api/onboardings/{ID}"),
        ("POST", f"/api/onboardings/{ID}/cancel"),
        ("POST", "/api/v1/onboardings"),
        ("POST", "/api/v1/onboardings/trigger"),
        ("GET", "/api/v1/onboardings"),
        ("GET", f"/api/v1/onboardings/{ID}"),
        ("POST", f"/api/v1/onboardings/{ID}/cancel"),
    ],
)
def test_requester_endpoints_need_a_function_key(api: Api, method: str, path: str) -> None:
    body = json.dumps(request_body()).encode()
    headers = {"Content-Type": "application/json"}
    assert api.anonymous.request(method, path, content=body, headers=headers).status_code == 401
    wrong = {**headers, "x-functions-key": "not-the-key"}
    assert api.anonymous.request(method, path, content=body, headers=wrong).status_code == 401
    # The triggers are anonymous at the host; the app checks the key: the host's master key is no key.
    master = {**headers, "x-functions-key": api.host.master_key}
    assert api.anonymous.request(method, path, content=body, headers=master).status_code == 401
    assert api.host.instances() == []


def test_start_answers_202_with_absolute_urls_and_the_status_says_what_it_waits_for(api: Api) -> None:
    response = api.client.post("/api/onboardings", json=request_body())
    assert response.status_code == 202
    onboarding_id = response.json()["id"]
    status_url = f"{PUBLIC}/api/onboardings/{onboarding_id}"
    assert response.headers["Location"] == status_url
    assert response.headers["Retry-After"] == "10"
    assert response.json() == {
        "id": onboarding_id,
        "statusUrl": status_url,
        "cancelUrl": f"{status_url}/cancel",
        "existing": False,
    }
    api.host.idle()
    # The unversioned path keeps answering 200 with the current view while it runs.
    status = api.client.get(api.local(response.headers["Location"]))
    assert status.status_code == 200 and status.headers["Retry-After"] == "10"
    view = status.json()
    assert view["status"] == "waiting"
    assert view["waitingFor"]["kind"] == "admin_consent"
    assert view["externalReference"] == "CHG-1001"
    assert view["mailboxes"]["total"] == 2
    assert view["links"] == {"self": status_url, "cancel": f"{status_url}/cancel"}
    text = status.text
    assert "webhooks" not in text and api.host.system_key not in text and api.nonce(onboarding_id) not in text


def test_the_orchestration_receives_the_normalised_request_and_settings(api: Api) -> None:
    onboarding_id = api.start(mailboxes=["Invoices@Contoso.com"], consentMode="grant", secretLifetimeDays=30)
    job = api.durable(onboarding_id)["input"]
    job = json.loads(job) if isinstance(job, str) else job
    assert job["onboarding_id"] == onboarding_id
    assert job["request"]["mailboxes"] == ["invoices@contoso.com"]
    assert job["request"]["consent_mode"] == "grant" and job["request"]["secret_lifetime_days"] == 30
    assert job["options"]["consent_deadline_hours"] == 120
    assert job["submitted_at"]


def test_same_idempotency_key_gives_the_same_onboarding(api: Api) -> None:
    first = api.client.post("/api/onboardings", json=request_body(idempotencyKey="chg-1001"))
    again = api.client.post("/api/onboardings", json=request_body(idempotencyKey="chg-1001"))
    assert first.status_code == again.status_code == 202
    assert first.json()["id"] == again.json()["id"]
    assert again.json()["existing"] is True
    assert len(api.host.instances()) == 1


def test_same_idempotency_key_with_another_request_is_409(api: Api) -> None:
    api.start(idempotencyKey="chg-1002")
    response = api.client.post(
        "/api/onboardings", json=request_body(idempotencyKey="chg-1002", displayName="Other")
    )
    assert response.status_code == 409
    assert response.headers["Content-Type"].startswith("application/problem+json")
    assert len(api.host.instances()) == 1


def test_finished_onboarding_is_not_restarted_by_its_idempotency_key(api: Api) -> None:
    onboarding_id = api.start(idempotencyKey="chg-1003")
    assert api.client.post(f"/api/onboardings/{onboarding_id}/cancel").status_code == 202
    assert api.view(onboarding_id)["status"] == "cancelled"
    again = api.client.post("/api/onboardings", json=request_body(idempotencyKey="chg-1003"))
    assert again.status_code == 202 and again.json()["id"] == onboarding_id
    api.host.idle()
    assert api.view(onboarding_id)["status"] == "cancelled"


def test_concurrent_duplicates_make_one_onboarding(api: Api) -> None:
    def submit(_: int) -> httpx.Response:
        with httpx.Client(
            base_url=api.host.base_url, headers={"x-functions-key": api.host.function_key}
        ) as c:
            return c.post("/api/onboardings", json=request_body(idempotencyKey="chg-race"))

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        responses = list(pool.map(submit, range(4)))
    assert {r.status_code for r in responses} == {202}
    assert len({r.json()["id"] for r in responses}) == 1
    assert len(api.host.instances()) == 1


def test_invalid_request_lists_every_problem_and_creates_nothing(api: Api) -> None:
    body = request_body(displayName="", protocols=["SMTP"], mailboxes=["x"], surprise=True)
    response = api.client.post("/api/onboardings", json=body)
    assert response.status_code == 400
    assert response.headers["Content-Type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["status"] == 400 and problem["title"] and problem["type"]
    assert {e["field"] for e in problem["errors"]} == {
        "/displayName",
        "/protocols/0",
        "/mailboxes/0",
        "/surprise",
    }
    assert api.host.instances() == []


def test_another_tenant_is_422(api: Api) -> None:
    response = api.client.post("/api/onboardings", json=request_body(tenantId=TENANT.replace("1", "9")))
    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == ["/tenantId"]


@pytest.mark.parametrize(
    ("content", "content_type", "status"),
    [
        (b'{"a":1}', "text/plain", 415),
        (b'{"a":1}', None, 415),
        (b"tenantId=x", "application/x-www-form-urlencoded", 415),
        (b'{"a": 1, "a": 2}', "application/json", 400),
        (b"{not json", "application/json", 400),
        (b"[" * 5000, "application/json", 400),
        (b'{"x": "' + b"a" * (1024 * 1024) + b'"}', "application/json", 413),
    ],
)
def test_envelope_problems(api: Api, content: bytes, content_type: str | None, status: int) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    response = api.client.post("/api/onboardings", content=content, headers=headers)
    assert response.status_code == status
    assert api.host.instances() == []
    if status == 413:
        return  # the local host refuses bodies over 1 MiB itself, before the trigger (as a gateway may)
    assert response.headers["Content-Type"].startswith("application/problem+json")
    assert response.json()["status"] == status


@pytest.mark.parametrize("onboarding_id", [ID, "onb-xyz", "..", "onb-" + "A" * 32])
def test_unknown_onboarding_is_404(api: Api, onboarding_id: str) -> None:
    for response in (
        api.client.get(f"/api/onboardings/{onboarding_id}"),
        api.client.post(f"/api/onboardings/{onboarding_id}/cancel"),
    ):
        assert response.status_code == 404


def test_cancel_stops_a_running_onboarding_and_then_conflicts(api: Api) -> None:
    onboarding_id = api.start()
    response = api.client.post(f"/api/onboardings/{onboarding_id}/cancel")
    assert response.status_code == 202
    assert response.headers["Location"] == f"{PUBLIC}/api/onboardings/{onboarding_id}"
    view = api.view(onboarding_id)
    assert view["status"] == "cancelled"
    assert view["errors"][0]["fix"]
    assert "Retry-After" not in api.client.get(f"/api/onboardings/{onboarding_id}").headers
    again = api.client.post(f"/api/onboardings/{onboarding_id}/cancel")
    assert again.status_code == 409
    assert [name for name, _ in api.events(onboarding_id)] == ["CancelRequested"]


def test_openapi_document_is_served_anonymously_as_yaml_and_json(api: Api) -> None:
    import yaml

    as_yaml = api.anonymous.get("/api/openapi.yaml")
    as_json = api.anonymous.get("/api/openapi.json")
    assert as_yaml.status_code == as_json.status_code == 200
    assert as_yaml.headers["Content-Type"].startswith("application/yaml")
    assert yaml.safe_load(as_yaml.text) == as_json.json()
    assert as_json.json()["openapi"].startswith("3.1")


def test_an_unreachable_workflow_engine_is_503_not_a_crash(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    from azure.durable_functions import DurableOrchestrationClient

    onboarding_id = api.start()

    async def unreachable(*args: object, **kwargs: object) -> None:
        raise ConnectionError("http://127.0.0.1/runtime/webhooks/durabletask?code=SYSTEMKEY")

    monkeypatch.setattr(DurableOrchestrationClient, "get_status", unreachable)
    for response in (
        api.client.get(f"/api/onboardings/{onboarding_id}"),
        api.client.post(f"/api/onboardings/{onboarding_id}/cancel"),
        api.client.post("/api/onboardings", json=request_body(idempotencyKey="k-503")),
    ):
        assert response.status_code == 503
        assert response.headers["Retry-After"] == "10"
        assert response.headers["Content-Type"].startswith("application/problem+json")
        assert "SYSTEMKEY" not in response.text
