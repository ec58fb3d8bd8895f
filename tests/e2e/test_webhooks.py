"""Webhook events end to end: progress events, signed, with ids; delivered in order through a
receiver outage; redelivery; subscribe and unsubscribe as a Logic Apps HTTP Webhook action does."""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest

from onboarding.links import callback_key, verify_callback
from onboarding.webhooks import WORK_PER_EXECUTION, EventType, delivery_instance_id, envelope
from tests.e2e.conftest import Tenant
from tests.trust.receiver import CallbackReceiver, Delivery

CONSENT_FLOW = [
    EventType.ACCEPTED,
    EventType.WAITING_FOR_ADMIN,
    EventType.CONSENT_GRANTED,
    EventType.MAILBOX_PROGRESS,
    EventType.COMPLETED,
]


@pytest.fixture
def receiver() -> Iterator[CallbackReceiver]:
    with CallbackReceiver() as server:
        yield server


def onboarding_id(location: str) -> str:
    return location.rstrip("/").rsplit("/", 1)[-1]


def events(tenant: Tenant, deliveries: list[Delivery]) -> list[dict[str, Any]]:
    """The bodies, each checked against its signature; kept as evidence for the secret scan."""
    key = callback_key(tenant.sandbox.env["LINK_SIGNING_KEY"].encode())
    bodies = []
    for delivery in deliveries:
        signature = delivery.headers["X-Onboarding-Signature"]
        assert verify_callback(key, delivery.body, signature, now=int(signature.split(",")[0][2:]))
        body = json.loads(delivery.body)
        assert delivery.headers["X-Onboarding-Event-Id"] == body["id"]
        tenant.evidence.texts.append((f"webhook {body['id']}", delivery.body.decode()))
        bodies.append(body)
    return bodies


def delivery(tenant: Tenant, location: str) -> dict[str, Any]:
    return dict(tenant.status(location)["callbackDelivery"])


def wait_delivered(tenant: Tenant, location: str, events: int, timeout: float = 60) -> dict[str, Any]:
    give_up = time.monotonic() + timeout
    while True:
        view = delivery(tenant, location)
        if view["state"] == "delivered" and view["events"] == events:
            return view
        assert time.monotonic() < give_up, view
        time.sleep(0.1)


def advance_until(tenant: Tenant, done: Callable[[], bool], step: timedelta, limit: int = 400) -> None:
    """Move the host's clock on in steps, letting everything due run after each, until ``done()``."""
    assert tenant.clock is not None
    for _ in range(limit):
        tenant.host.idle(10)
        if done():
            return
        tenant.clock.advance(step)
    raise AssertionError("never happened")


def test_events_survive_a_receiver_down_for_two_hours_each_once_and_in_order(
    tenant_factory: Callable[..., Tenant], receiver: CallbackReceiver
) -> None:
    tenant = tenant_factory(manual_clock=True)
    assert tenant.clock is not None
    receiver.down = True
    location = tenant.submit(callbackUrl=receiver.url, externalReference="TICKET-7")
    tenant.wait_for_decision(location)
    tenant.consent()
    if tenant.drives_time:  # the realistic profile's minutes of propagation: the waits move the clock
        assert tenant.finished(location)["status"] == "succeeded"
    else:
        advance_until(tenant, lambda: tenant.status(location)["status"] == "succeeded", timedelta(seconds=5))
    outage_started = tenant.clock.now()
    # The onboarding finished without waiting for its callbacks; they keep being retried.
    advance_until(
        tenant, lambda: tenant.clock.now() - outage_started >= timedelta(hours=2), timedelta(minutes=5)
    )
    pending = delivery(tenant, location)
    assert pending["state"] == "pending", pending
    [sub] = pending["subscriptions"]
    assert sub["deliveredThrough"] == 0 and sub["failures"] >= 8 and "503" in sub["lastError"]
    assert receiver.refused == sub["failures"]  # one event at a time: nothing after the first is tried
    assert receiver.received() == []

    receiver.down = False
    advance_until(tenant, lambda: delivery(tenant, location)["state"] == "delivered", timedelta(minutes=10))
    received = events(tenant, receiver.received())
    assert [e["type"] for e in received] == CONSENT_FLOW
    assert [e["sequence"] for e in received] == [1, 2, 3, 4, 5]
    ids = [e["id"] for e in received]
    assert len(set(ids)) == len(ids) == 5
    assert all(e["onboardingId"] == onboarding_id(location) for e in received)
    assert received[0]["data"]["externalReference"] == "TICKET-7"
    assert received[3]["data"]["mailboxesDone"] == received[3]["data"]["mailboxesTotal"] == 3
    outcome = received[-1]["data"]
    assert outcome["outcome"] == "succeeded" and len(outcome["mailboxes"]) == 3
    # Event times come from the orchestration: the outcome is stamped when it happened, not when
    # the receiver came back two hours later.
    assert datetime.fromisoformat(received[-1]["occurredAt"]) <= outage_started
    [sub] = delivery(tenant, location)["subscriptions"]
    assert sub["deliveredThrough"] == 5 and sub["failures"] == 0


def test_redelivery_sends_the_same_events_with_the_same_ids_from_the_sequence_asked(
    tenant: Tenant, receiver: CallbackReceiver
) -> None:
    location = tenant.submit(callbackUrl=receiver.url)
    tenant.wait_for_decision(location)
    tenant.consent()
    assert tenant.finished(location)["status"] == "succeeded"
    wait_delivered(tenant, location, 5)
    first = events(tenant, receiver.received())

    response = tenant.http.post(f"{location}/callbacks/redeliver", json={"fromSequence": 4})
    assert response.status_code == 202, response.text
    give_up = time.monotonic() + 60
    while len(receiver.received()) < 7:
        assert time.monotonic() < give_up, receiver.received()
        time.sleep(0.1)
    again = events(tenant, receiver.received()[5:])
    assert [(e["id"], e["sequence"]) for e in again] == [(e["id"], e["sequence"]) for e in first[3:]]
    assert again == first[3:]

    bad = tenant.http.post(f"{location}/callbacks/redeliver", json={"fromSequence": 0})
    assert bad.status_code == 400 and "/fromSequence" in bad.text


def test_a_logic_apps_webhook_subscriber_gets_events_until_it_unsubscribes(
    tenant: Tenant, receiver: CallbackReceiver
) -> None:
    with CallbackReceiver() as logic_app:
        callback = logic_app.url + "?api-version=2016-10-01&sp=%2Ftriggers%2Fmanual%2Frun&sig=abc123"
        location = tenant.submit()  # no callbackUrl: the Logic App subscribes itself, from the start
        subscribed = tenant.http.post(
            f"{location}/subscriptions", json={"callbackUrl": callback, "fromSequence": 1}
        )
        assert subscribed.status_code == 201, subscribed.text
        sub_id = subscribed.json()["id"]
        assert "sig=" not in subscribed.text
        # Subscribing again (a retried call) is the same subscription.
        assert (
            tenant.http.post(f"{location}/subscriptions", json={"callbackUrl": callback}).json()["id"]
            == sub_id
        )
        tenant.wait_for_decision(location)
        give_up = time.monotonic() + 30
        while len(logic_app.received()) < 2:  # accepted, waiting for the admin
            assert time.monotonic() < give_up, logic_app.received()
            time.sleep(0.1)

        # The run is cancelled: Logic Apps calls the unsubscribe request with the same callback URL.
        gone = tenant.http.post(f"{location}/subscriptions/unsubscribe", json={"callbackUrl": callback})
        assert gone.status_code == 204, gone.text
        tenant.consent()
        assert tenant.finished(location)["status"] == "succeeded"
        view = delivery(tenant, location)
        assert [(s["id"], s["state"]) for s in view["subscriptions"]] == [(sub_id, "unsubscribed")]
        assert [e["type"] for e in events(tenant, logic_app.received())] == CONSENT_FLOW[:2]

        # A subscriber that comes after the end still gets the outcome (and only that).
        late = tenant.http.post(f"{location}/subscriptions", json={"callbackUrl": receiver.url})
        assert late.status_code == 201
        give_up = time.monotonic() + 30
        while not receiver.received():
            assert time.monotonic() < give_up
            time.sleep(0.1)
        [outcome] = events(tenant, receiver.received())
        assert outcome["type"] == EventType.COMPLETED and outcome["sequence"] == 5
        wait_delivered(tenant, location, 5)
        # DELETE by id; then it is unknown.
        late_id = late.json()["id"]
        assert tenant.http.delete(f"{location}/subscriptions/{late_id}").status_code == 204
        assert len(logic_app.received()) == 2
        # The callback URL's signature is a capability (it runs the workflow): never in a log line.
        logged = [text for where, text in tenant.evidence.texts if where.startswith("log")]
        assert any("/hooks/onboarding" in text for text in logged)
        assert not any("abc123" in text for text in logged)


def test_subscribing_refuses_a_bad_callback_url_and_an_unknown_onboarding(tenant: Tenant) -> None:
    location = tenant.submit()
    tenant.wait_for_decision(location)  # the workflow has used the tenant (the secret scan needs that)
    bad = tenant.http.post(f"{location}/subscriptions", json={"callbackUrl": "ftp://example.com/x"})
    assert bad.status_code == 400 and "/callbackUrl" in bad.text
    unknown = tenant.http.post(
        "/api/onboardings/onb-" + "0" * 32 + "/subscriptions", json={"callbackUrl": "https://example.com/"}
    )
    assert unknown.status_code == 404
    missing = tenant.http.delete(f"{location}/subscriptions/sub-" + "1" * 32)
    assert missing.status_code == 404


def test_a_day_long_outage_with_many_events_keeps_the_history_short_then_gives_up_with_a_record(
    tenant_factory: Callable[..., Tenant], receiver: CallbackReceiver
) -> None:
    tenant = tenant_factory(manual_clock=True)
    assert tenant.clock is not None
    receiver.down = True
    location = tenant.submit()
    tenant.wait_for_decision(location)  # events 1 and 2 are out, to nobody
    oid = onboarding_id(location)
    subscribe = {"callbackUrl": receiver.url, "fromSequence": 1}
    assert tenant.http.post(f"{location}/subscriptions", json=subscribe).status_code == 201
    instance = delivery_instance_id(oid)
    lengths = []

    def history_length() -> int:
        status = tenant.host.get_status(instance, show_history=True)
        assert status is not None
        return len(status["historyEvents"])

    # 40 more events while the receiver stays down (raised as the onboarding raises them).
    for sequence in range(3, 43):
        data = envelope(oid, sequence, EventType.MAILBOX_PROGRESS.value, tenant.clock.now().isoformat(), {})
        assert tenant.host.engine.raise_event(instance, f"WebhookEvent-{sequence}", json.dumps(data)) == "ok"
        tenant.host.idle(10)
        tenant.clock.advance(timedelta(minutes=10))
        lengths.append(history_length())
    advance_until(
        tenant,
        lambda: (lengths.append(history_length()), delivery(tenant, location)["state"] == "given_up")[1],
        timedelta(minutes=30),
    )
    # Continued as new along the way: the history never held the whole outage.
    assert max(lengths) < 4 * WORK_PER_EXECUTION
    assert any(later < earlier for earlier, later in itertools.pairwise(lengths))
    [sub] = delivery(tenant, location)["subscriptions"]
    assert sub["state"] == "given_up" and sub["deliveredThrough"] == 0 and "503" in sub["lastError"]
    outage = datetime.fromisoformat(sub["gaveUpAt"]) - datetime.fromisoformat(sub["failingSince"])
    assert timedelta(hours=24) <= outage < timedelta(hours=26)
    assert receiver.received() == []

    # The receiver is back; the requester asks for redelivery: every event, once, in order.
    receiver.down = False
    assert tenant.http.post(f"{location}/callbacks/redeliver").status_code == 202
    advance_until(
        tenant,
        lambda: delivery(tenant, location)["subscriptions"][0]["deliveredThrough"] == 42,
        timedelta(minutes=1),
    )
    received = events(tenant, receiver.received())
    assert [e["sequence"] for e in received] == list(range(1, 43))
    assert len({e["id"] for e in received}) == 42
