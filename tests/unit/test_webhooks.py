"""The delivery state of webhook events: ids, order, backoff, giving up, subscribe/unsubscribe/redeliver."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from onboarding.webhooks import (
    GIVE_UP_AFTER,
    Channel,
    DeliveryState,
    DeliveryStatus,
    EventType,
    envelope,
    event_id,
    event_name,
    retry_delay,
    subscription_id,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)
OID = "onb-" + "a" * 32


def event(sequence: int, type_: EventType = EventType.MAILBOX_PROGRESS) -> dict:
    return envelope(OID, sequence, type_.value, T0.isoformat(), {})


def subscribed(*urls: str) -> DeliveryState:
    state = DeliveryState(OID)
    for url in urls:
        state.subscribe(url, subscription_id(OID, url))
    return state


def test_event_ids_depend_only_on_the_onboarding_and_the_sequence() -> None:
    assert event_id(OID, 3) == event(3)["id"] == envelope(OID, 3, "other", "later", {"x": 1})["id"]
    assert event_id(OID, 3) != event_id(OID, 4) != event_id("onb-" + "b" * 32, 4)


def test_a_duplicate_or_out_of_order_event_is_ignored() -> None:
    state = subscribed("https://a.example/")
    state.add_event(event(1))
    state.add_event(event(1))  # a re-run activity raised it again
    state.add_event(event(3))  # cannot happen (names are per sequence), and is not taken
    assert [e["sequence"] for e in state.events] == [1]


def test_the_retry_schedule_doubles_from_30_seconds_to_at_most_an_hour() -> None:
    delays = [retry_delay(n) for n in range(1, 12)]
    assert delays[:4] == [timedelta(seconds=s) for s in (30, 60, 120, 240)]
    assert max(delays) == delays[-1] == timedelta(hours=1)


def test_a_receiver_failing_for_24_hours_is_given_up_not_before() -> None:
    state = subscribed("https://a.example/")
    state.add_event(event(1))
    [sub] = state.subscriptions
    now = T0
    while sub.state == "active":
        assert state.due(now) == [sub]
        state.failed(sub, "The callback receiver answered HTTP 503.", now)
        if sub.retry_at:
            now = datetime.fromisoformat(sub.retry_at)
    assert now - T0 >= GIVE_UP_AFTER
    assert sub.gave_up_at == now.isoformat() and "503" in sub.last_error
    assert state.status() is DeliveryStatus.GIVEN_UP
    assert state.due(now + timedelta(days=1)) == []
    # Redelivery asks again, from the start.
    state.redeliver(1)
    assert sub.state == "active" and sub.failures == 0 and state.due(now) == [sub]


def test_a_success_resets_the_backoff_and_moves_to_the_next_event() -> None:
    state = subscribed("https://a.example/")
    state.add_event(event(1))
    state.add_event(event(2))
    [sub] = state.subscriptions
    state.failed(sub, "down", T0)
    assert state.due(T0) == [] and state.next_wake() == T0 + timedelta(seconds=30)
    state.delivered(sub)
    assert sub.next == 2 and sub.failures == 0 and state.due(T0) == [sub]


def test_delivery_is_done_once_the_outcome_reached_every_live_subscription() -> None:
    state = subscribed("https://a.example/", "https://b.example/")
    a, b = state.subscriptions
    state.add_event(event(1, EventType.COMPLETED))
    assert not state.done() and state.status() is DeliveryStatus.PENDING
    state.delivered(a)
    state.unsubscribe(b.id)
    assert state.done() and state.status() is DeliveryStatus.DELIVERED


def test_a_late_subscriber_gets_the_outcome_and_an_early_one_everything() -> None:
    state = subscribed("https://early.example/")
    for n in (1, 2):
        state.add_event(event(n))
    state.add_event(event(3, EventType.COMPLETED))
    state.subscribe("https://late.example/", subscription_id(OID, "https://late.example/"))
    early, late = state.subscriptions
    assert (early.next, late.next) == (1, 3)


def test_subscribing_the_same_url_twice_is_one_subscription_and_unsubscribed_stays_off() -> None:
    state = subscribed("https://a.example/", "https://a.example/")
    assert len(state.subscriptions) == 1
    [sub] = state.subscriptions
    state.add_event(event(1))
    state.apply_control({"op": "unsubscribe", "subscriptionId": sub.id})
    state.apply_control({"op": "redeliver", "fromSequence": 1})
    assert state.due(T0) == [] and state.next_control == 2
    assert state.status() is DeliveryStatus.NONE


def test_the_summary_never_shows_a_callback_url() -> None:
    url = "https://hooks.example/workflows/1/triggers/manual/paths/invoke?sig=SECRETSIG"
    state = subscribed(url)
    state.add_event(event(1))
    state.failed(state.subscriptions[0], "down", T0)
    assert "SECRETSIG" not in str(state.summary()) and "hooks.example" not in str(state.summary())


def test_a_control_given_at_a_restart_keeps_the_number_senders_read() -> None:
    """A finished delivery orchestration started again with a subscribe in its input still waits for
    the control number its last status showed, so a control raised meanwhile is not lost."""
    state = subscribed("https://a.example/")
    state.apply_control({"op": "redeliver", "fromSequence": 1})
    shown = state.summary()["nextControl"]
    state.apply_control(
        {"op": "subscribe", "subscriptionId": "sub-x", "url": "https://b.example/"}, raised=False
    )
    assert state.next_control == shown == 1 and len(state.subscriptions) == 2


def test_a_drift_event_after_the_outcome_is_delivered_and_the_delivery_then_ends() -> None:
    """Events may follow the outcome (``onboarding.drift_detected``): the delivery still counts as
    final, delivers them in order and ends once they are delivered; a late subscriber starts at the
    outcome and gets what came after it."""
    state = subscribed("https://a.example/")
    for sequence in (1, 2):
        state.add_event(event(sequence))
    state.add_event(event(3, EventType.COMPLETED))
    state.add_event(event(4, EventType.DRIFT_DETECTED))
    assert state.final and state.completed_sequence == 3
    [sub] = state.due(T0)
    while sub.next <= len(state.events):
        state.delivered(sub)
    assert state.done() and state.status() is DeliveryStatus.DELIVERED
    state.subscribe("https://late.example/", subscription_id(OID, "https://late.example/"))
    late = state.subscriptions[-1]
    assert [state.events[i - 1]["type"] for i in range(late.next, len(state.events) + 1)] == [
        EventType.COMPLETED.value,
        EventType.DRIFT_DETECTED.value,
    ]


def test_two_writers_numbering_their_own_events_from_one_get_one_stream_without_a_loss() -> None:
    # A rotation and a mailbox operation each hand over events 1 and 2 of their channel, interleaved.
    state = DeliveryState(OID)
    for n in range(1, 6):
        state.add_event(event(n, EventType.COMPLETED if n == 5 else EventType.MAILBOX_PROGRESS))
    arrivals = [
        (Channel.ROTATION, 1, EventType.CREDENTIAL_ROTATION_STARTED),
        (Channel.MAILBOXES, 1, EventType.MAILBOXES_ADD_STARTED),
        (Channel.MAILBOXES, 2, EventType.MAILBOXES_ADDED),
        (Channel.ROTATION, 2, EventType.CREDENTIAL_ROTATED),
    ]
    for channel, number, type_ in arrivals:
        assert state.take(channel, number, envelope(OID, 0, type_.value, T0.isoformat(), {}))
    assert [e["sequence"] for e in state.events] == [1, 2, 3, 4, 5, 6, 7, 8, 9]
    assert [e["id"] for e in state.events[5:]] == [event_id(OID, n) for n in (6, 7, 8, 9)]
    assert [e["type"] for e in state.events[5:]] == [t.value for _, _, t in arrivals]
    assert state.summary()["channels"] == {"rotation": 2, "mailboxes": 2}


def test_a_writers_event_again_or_past_a_missing_one_is_not_taken() -> None:
    state = DeliveryState(OID)
    started = envelope(OID, 0, EventType.CREDENTIAL_ROTATION_STARTED.value, T0.isoformat(), {})
    assert state.take(Channel.ROTATION, 1, started)
    assert not state.take(Channel.ROTATION, 1, started)  # a re-run activity
    assert not state.take(Channel.ROTATION, 3, started)  # 2 never arrived
    assert len(state.events) == 1 and state.taken(Channel.ROTATION) == 1


def test_a_stream_kept_before_channels_counts_each_writers_events_by_their_type() -> None:
    types = [
        EventType.ACCEPTED,
        EventType.COMPLETED,
        EventType.CREDENTIAL_ROTATION_STARTED,
        EventType.DRIFT_DETECTED,
        EventType.CREDENTIAL_ROTATED,
        EventType.OFFBOARDING_STARTED,
    ]
    kept = DeliveryState(OID, events=[event(n, t) for n, t in enumerate(types, start=1)]).to_json()
    del kept["channels"]
    state = DeliveryState.from_json(kept)
    assert state.channels == {"rotation": 2, "drift": 1, "offboarding": 1}
    # The next of each writer's events is the one after those, and the onboarding's names are unchanged.
    assert event_name(Channel.ROTATION, state.taken(Channel.ROTATION) + 1) == "WebhookEvent-rotation-3"
    assert event_name(Channel.ONBOARDING, state.next_event) == "WebhookEvent-7"
