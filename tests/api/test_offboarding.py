"""DELETE on an onboarding over HTTP: who may, unknown ids, bad input, one offboarding per onboarding,
and the v1 status contract while it runs (a stand-in offboarding: tests/api/app)."""

from __future__ import annotations

import json

import pytest

from onboarding.offboarding import offboarding_instance_id

from .app.function_app import FINISH_OFFBOARDING, STAND_IN_EVENTS
from .conftest import PUBLIC, Api

V1 = "/api/v1/onboardings"
UNKNOWN = "onb-" + "0" * 32


def stored_input(api: Api, onboarding_id: str) -> dict[str, object]:
    raw = api.durable(offboarding_instance_id(onboarding_id))["input"]
    return dict(json.loads(raw) if isinstance(raw, str) else raw)


def finish(api: Api, onboarding_id: str) -> None:
    api.host.engine.raise_event(offboarding_instance_id(onboarding_id), FINISH_OFFBOARDING, json.dumps({}))
    api.host.idle()


@pytest.mark.parametrize("path", [f"{V1}/{UNKNOWN}", f"/api/onboardings/{UNKNOWN}"])
def test_delete_needs_a_valid_function_key(api: Api, path: str) -> None:
    assert api.anonymous.delete(path).status_code == 401
    refused = api.anonymous.delete(path, headers={"x-functions-key": "not-the-key"})
    assert refused.status_code == 401 and "function key" in refused.json()["detail"]


@pytest.mark.parametrize("onboarding_id", [UNKNOWN, "onb-not-an-id", "..%2F..%2Fadmin"])
def test_delete_of_an_unknown_onboarding_is_404_and_starts_nothing(api: Api, onboarding_id: str) -> None:
    response = api.client.delete(f"{V1}/{onboarding_id}")
    assert response.status_code == 404
    assert response.json()["title"] == "Onboarding not found"
    assert api.host.instances() == []


def test_a_purge_flag_other_than_true_or_false_is_400_naming_it(api: Api) -> None:
    onboarding_id = api.start()
    response = api.client.delete(f"{V1}/{onboarding_id}", params={"purge": "yes"})
    assert response.status_code == 400
    assert response.json()["errors"] == [{"field": "purge", "message": "must be 'true' or 'false'"}]
    assert api.host.get_status(offboarding_instance_id(onboarding_id)) is None


def test_delete_starts_one_offboarding_and_the_v1_status_polls_202_until_it_ends(api: Api) -> None:
    onboarding_id = api.start()
    assert api.client.post(f"{V1}/{onboarding_id}/cancel").status_code == 202
    api.host.idle()
    assert api.client.get(f"{V1}/{onboarding_id}").status_code == 200  # the onboarding is final ...
    started = api.client.delete(f"{V1}/{onboarding_id}")
    assert started.status_code == 202, started.text
    location = f"{PUBLIC}{V1}/{onboarding_id}"
    assert started.headers["Location"] == location and started.headers["Retry-After"] == "10"
    body = started.json()
    assert body["existing"] is False and body["statusUrl"] == location
    api.host.idle()
    stored = stored_input(api, onboarding_id)
    assert stored["purge"] is False and stored["requested_by"] == {"kind": "function-key"}

    again = api.client.delete(f"/api/onboardings/{onboarding_id}")  # the same, through the old path
    assert again.status_code == 202 and again.json()["existing"] is True
    polled = api.client.get(f"{V1}/{onboarding_id}")  # ... but not its offboarding
    assert polled.status_code == 202 and polled.headers["Location"] == location
    assert polled.json()["offboarding"]["status"] == "running"

    finish(api, onboarding_id)
    final = api.client.get(f"{V1}/{onboarding_id}")
    assert final.status_code == 200
    assert final.json()["offboarding"]["status"] == "succeeded"
    repeated = api.client.delete(f"{V1}/{onboarding_id}")
    assert repeated.status_code == 200 and repeated.json()["offboarding"] == final.json()["offboarding"]
    offboardings = [i for i in api.host.instances() if i["instanceId"].endswith(":offboarding")]
    assert len(offboardings) == 1


def test_delete_with_another_purge_flag_is_409_and_changes_nothing(api: Api) -> None:
    onboarding_id = api.start()
    assert api.client.delete(f"{V1}/{onboarding_id}", params={"purge": "true"}).status_code == 202
    conflict = api.client.delete(f"{V1}/{onboarding_id}")
    assert conflict.status_code == 409
    assert "purge=true" in conflict.json()["detail"]
    api.host.idle()
    assert stored_input(api, onboarding_id)["purge"] is True


def test_status_says_offboarding_null_until_a_delete(api: Api) -> None:
    onboarding_id = api.start()
    assert api.view(onboarding_id)["offboarding"] is None


def test_an_offboarding_started_again_after_it_was_terminated_is_told_what_its_earlier_run_reported(
    api: Api,
) -> None:
    # Its instance id is the onboarding's one offboarding: started again, it shows only the new run, so
    # the DELETE hands over the earlier run's count of webhook events, which it numbers on from.
    onboarding_id = api.start()
    assert api.client.post(f"{V1}/{onboarding_id}/cancel").status_code == 202
    api.host.idle()
    assert api.client.delete(f"{V1}/{onboarding_id}").status_code == 202
    api.host.idle()
    assert "events_reported" not in stored_input(api, onboarding_id)  # a first run's input as before
    api.host.engine.terminate(offboarding_instance_id(onboarding_id), "stopped by an operator")
    api.host.idle()
    again = api.client.delete(f"{V1}/{onboarding_id}")
    assert again.status_code == 202 and again.json()["existing"] is False
    api.host.idle()
    assert stored_input(api, onboarding_id)["events_reported"] == STAND_IN_EVENTS
