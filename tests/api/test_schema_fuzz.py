"""Schemathesis fuzzes the API from its own OpenAPI document: no 5xx, and every response conforms."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import schemathesis
import yaml
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from .conftest import Api, request_body

OPENAPI = Path(__file__).resolve().parents[2] / "openapi" / "openapi.yaml"
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]
# Negative data cannot be made for these: every value of a string path parameter or form field is a
# string, and the OpenAPI documents take no input at all.
NO_NEGATIVE_DATA = {
    "POST /api/consent/callback",
    "GET /api/approvals/{token}",
    "GET /api/openapi.yaml",
    "GET /api/openapi.json",
}
EXAMPLES = 50  # 50 examples per operation with input, positive and negative (about 1,200 requests)


def test_generated_requests_get_no_server_error_and_conforming_responses(api: Api) -> None:
    schema = schemathesis.openapi.from_dict(yaml.safe_load(OPENAPI.read_text(encoding="utf-8")))
    sent: Counter[str] = Counter()
    statuses: Counter[int] = Counter()
    headers = {"x-functions-key": api.host.function_key}
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            if mode is GenerationMode.NEGATIVE and operation.label in NO_NEGATIVE_DATA:
                continue

            label = operation.label

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(
                max_examples=EXAMPLES,
                deadline=None,
                database=None,
                derandomize=True,  # the same requests on every run: a failure reproduces
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            def fuzz(case: schemathesis.Case) -> None:
                response = case.call(base_url=api.host.base_url, headers=headers, timeout=30)
                sent[label] += 1  # noqa: B023 - fuzz runs within this iteration
                statuses[response.status_code] += 1
                case.validate_response(response, checks=CHECKS)

            fuzz()
    assert sum(sent.values()) >= 1000, sent
    assert all(status < 500 for status in statuses), statuses
    print(f"schemathesis: {sum(sent.values())} requests; by status {dict(sorted(statuses.items()))}")


def test_every_kind_of_status_view_conforms_to_the_document(api: Api) -> None:
    """Fuzzing sees unknown ids only; here each outcome's status view is checked against the schema."""
    from onboarding.links import LinkPurpose

    schema = schemathesis.openapi.from_dict(yaml.safe_load(OPENAPI.read_text(encoding="utf-8")))
    start_op = schema["/api/onboardings"]["POST"]
    status_op = schema["/api/onboardings/{id}"]["GET"]
    cancel_op = schema["/api/onboardings/{id}/cancel"]["POST"]

    def check_status(onboarding_id: str, expected: str) -> None:
        api.host.idle()
        response = api.client.get(f"/api/onboardings/{onboarding_id}")
        status_op.Case(path_parameters={"id": onboarding_id}).validate_response(response, checks=CHECKS)
        assert response.json()["status"] == expected

    started = api.client.post("/api/onboardings", json=request_body(idempotencyKey="views-1"))
    start_op.Case(body=request_body(), media_type="application/json").validate_response(
        started, checks=CHECKS
    )
    waiting = started.json()["id"]
    api.host.idle()
    check_status(waiting, "waiting")

    consented = api.start()
    api.decide("/api/consent/callback", {"state": api.token(consented, LinkPurpose.CONSENT)})
    check_status(consented, "succeeded")

    rejected = api.start(consentMode="grant")
    api.decide(f"/api/approvals/{api.token(rejected, LinkPurpose.DECIDE)}", decision="reject")
    check_status(rejected, "rejected")

    cancelled = api.start()
    response = api.client.post(f"/api/onboardings/{cancelled}/cancel")
    cancel_op.Case(path_parameters={"id": cancelled}).validate_response(response, checks=CHECKS)
    check_status(cancelled, "cancelled")

    # Version 1: 202 while not final, 200 once final, and a page of the listing.
    v1_status = schema["/api/v1/onboardings/{id}"]["GET"]
    pending = api.client.get(f"/api/v1/onboardings/{waiting}")
    assert pending.status_code == 202
    v1_status.Case(path_parameters={"id": waiting}).validate_response(pending, checks=CHECKS)
    final = api.client.get(f"/api/v1/onboardings/{rejected}")
    assert final.status_code == 200
    v1_status.Case(path_parameters={"id": rejected}).validate_response(final, checks=CHECKS)
    page = api.client.get("/api/v1/onboardings", params={"pageSize": "2"})
    assert len(page.json()["items"]) == 2 and page.json()["nextLink"]
    schema["/api/v1/onboardings"]["GET"].Case(query={"pageSize": 2}).validate_response(page, checks=CHECKS)


def test_subscription_and_redelivery_answers_conform_to_the_document(api: Api) -> None:
    """Fuzzing sees unknown ids only; here the webhook routes answer for a real onboarding."""
    schema = schemathesis.openapi.from_dict(yaml.safe_load(OPENAPI.read_text(encoding="utf-8")))
    onboarding_id = api.start()
    api.host.idle()
    base = f"/api/onboardings/{onboarding_id}"
    url = {"callbackUrl": "https://hooks.example.net/onboarding"}  # the stand-in emits no events

    def check(path: str, method: str, response: Any, **parameters: str) -> None:
        case = schema[path][method].Case(path_parameters={"id": onboarding_id, **parameters})
        case.validate_response(response, checks=CHECKS)

    subscribed = api.client.post(f"{base}/subscriptions", json=url)
    check("/api/onboardings/{id}/subscriptions", "POST", subscribed)
    assert subscribed.status_code == 201
    sub_id = subscribed.json()["id"]
    api.host.idle()
    deliveries = api.client.get(f"{base}/callbacks")
    check("/api/onboardings/{id}/callbacks", "GET", deliveries)
    assert [s["id"] for s in deliveries.json()["subscriptions"]] == [sub_id]
    redeliver = api.client.post(
        f"{base}/callbacks/redeliver", json={"fromSequence": 1, "subscriptionId": sub_id}
    )
    check("/api/onboardings/{id}/callbacks/redeliver", "POST", redeliver)
    assert redeliver.status_code == 202
    api.host.idle()
    gone = api.client.delete(f"{base}/subscriptions/{sub_id}")
    check("/api/onboardings/{id}/subscriptions/{subscriptionId}", "DELETE", gone, subscriptionId=sub_id)
    assert gone.status_code == 204
    api.host.idle()
    again = api.client.post(f"{base}/subscriptions/unsubscribe", json=url)
    check("/api/onboardings/{id}/subscriptions/unsubscribe", "POST", again)
    assert again.status_code == 204  # already unsubscribed: still known, still off
    nothing = api.client.post(f"{base}/callbacks/redeliver")
    check("/api/onboardings/{id}/callbacks/redeliver", "POST", nothing)
    assert nothing.status_code == 409
    view = api.client.get(base)
    check("/api/onboardings/{id}", "GET", view)
    assert view.json()["callbackDelivery"]["state"] == "none"
    # At most ten live subscriptions.
    for n in range(10):
        made = api.client.post(
            f"{base}/subscriptions", json={"callbackUrl": f"https://hooks.example.net/{n}"}
        )
        assert made.status_code == 201, made.text
        api.host.idle()
    refused = api.client.post(f"{base}/subscriptions", json={"callbackUrl": "https://hooks.example.net/x"})
    check("/api/onboardings/{id}/subscriptions", "POST", refused)
    assert refused.status_code == 409
