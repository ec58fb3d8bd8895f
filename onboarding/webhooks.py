"""Webhook events of one onboarding and the state of their delivery (pure: no I/O, no clock).

Several writers add to an onboarding's stream: the onboarding itself, and after it the day-2
operations (rotation, mailbox operations, offboarding) and the daily drift check, which may run at
the same time (a rotation waits a day in its overlap window while a mailbox operation or a drift
report comes and goes). So each writer numbers only its own events, on a channel of its own, and
the delivery orchestration ``<id>:webhook`` gives each event its place in the stream as it takes it:

- the onboarding raises its event ``n`` as ``WebhookEvent-<n>``; it writes before anyone else, so
  its ``n`` is the stream's sequence too (and the name is the one deliveries always waited for);
- a day-2 writer raises its channel's ``k``-th event as ``WebhookEvent-<channel>-<k>`` (``Channel``),
  ``k`` counted over every run of that writer (``webhook_hub.writer_position``); the delivery stamps
  the next sequence and id on it.

Two writers therefore never raise under one name. Requester controls (subscribe, unsubscribe,
redeliver) arrive as ``WebhookControl-<k>``, ``k`` read from the delivery orchestration's custom
status. Every name is raised once: the Durable Python SDK keeps one buffered event per name, and
several buffered events of one name break its replay, so names are never reused.

The event id is ``<onboarding id>:<sequence>``: once the delivery has taken an event its number never
changes, and a replay or a re-run activity raises the same name again, which is not taken twice; so
receivers can de-duplicate on it.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from onboarding.durable_status import json_object

DELIVERY_ORCHESTRATOR = "webhook_delivery_orchestrator"
EVENT_PREFIX = "WebhookEvent-"
CONTROL_PREFIX = "WebhookControl-"
# Where a writer reports how many events it has handed over: in its output, and a day-2 operation
# also in its custom status while it runs. For the onboarding this is its last sequence; for a day-2
# writer (``CHANNEL_EVENTS_REPORTED``) the count on its channel, over all its runs
# (``webhook_hub.writer_position``). A day-2 operation that started before channels existed numbers
# on from the whole stream and reports its last sequence under ``EVENTS_REPORTED``, which only that
# numbering reads (``webhook_hub.last_event_number``).
EVENTS_REPORTED = "webhook_events"
CHANNEL_EVENTS_REPORTED = "webhook_channel_events"

# Retry schedule of a failing receiver: 30 s, 1 min, 2 min ... capped at 1 h between attempts; a
# subscription is given up once its receiver has failed without a success for 24 h (about 30 attempts).
FIRST_RETRY = timedelta(seconds=30)
MAX_RETRY = timedelta(hours=1)
GIVE_UP_AFTER = timedelta(hours=24)
# Attempts and waits one execution of the delivery orchestration takes before it continues as new,
# so a long outage with many events never grows a history without bound.
WORK_PER_EXECUTION = 40
# Live subscriptions per onboarding: each is POSTed every event, so a key holder may not add without end.
MAX_SUBSCRIPTIONS = 10
# Control ids a delivery remembers: more than the senders that could race for one number.
APPLIED_KEPT = 32


class EventType(StrEnum):
    ACCEPTED = "onboarding.accepted"
    WAITING_FOR_ADMIN = "onboarding.waiting_for_admin"
    CONSENT_GRANTED = "onboarding.consent_granted"
    APPROVED = "onboarding.approved"
    MAILBOX_PROGRESS = "onboarding.mailbox_progress"
    COMPLETED = "onboarding.completed"
    # After completion: the daily drift check found a link of the chain newly broken
    # (``onboarding.diagnosis``); data names the link, what is wrong and the fix.
    DRIFT_DETECTED = "onboarding.drift_detected"
    # DELETE on an onboarding (onboarding/offboarding.py): numbered on from the onboarding's events.
    OFFBOARDING_STARTED = "offboarding.started"
    OFFBOARDING_COMPLETED = "offboarding.completed"
    OFFBOARDING_FAILED = "offboarding.failed"
    # POST .../rotate (onboarding/rotation.py): numbered on from the onboarding's events as well.
    CREDENTIAL_ROTATION_STARTED = "credential.rotation_started"
    CREDENTIAL_ROTATED = "credential.rotated"
    CREDENTIAL_ROTATION_FAILED = "credential.rotation_failed"
    # POST .../retry (onboarding/mailbox_ops.py): numbered on from the onboarding's events too.
    MAILBOXES_RETRY_STARTED = "mailboxes.retry_started"
    MAILBOXES_RETRIED = "mailboxes.retried"
    MAILBOXES_ADD_STARTED = "mailboxes.add_started"
    MAILBOXES_ADDED = "mailboxes.added"
    MAILBOXES_REMOVE_STARTED = "mailboxes.remove_started"
    MAILBOXES_REMOVED = "mailboxes.removed"


class Channel(StrEnum):
    """The writers of an onboarding's stream, each numbering its own events (the module's docstring)."""

    ONBOARDING = "onboarding"
    ROTATION = "rotation"
    MAILBOXES = "mailboxes"
    OFFBOARDING = "offboarding"
    DRIFT = "drift"


# The writers after the onboarding, in the order the delivery waits for them.
DAY2_CHANNELS = (Channel.ROTATION, Channel.MAILBOXES, Channel.OFFBOARDING, Channel.DRIFT)


def channel_of(event_type: str) -> Channel:
    """The writer of an event type; for a stream kept before channels existed."""
    if event_type == EventType.DRIFT_DETECTED.value:
        return Channel.DRIFT
    family = event_type.split(".", 1)[0]
    return {
        "offboarding": Channel.OFFBOARDING,
        "credential": Channel.ROTATION,
        "mailboxes": Channel.MAILBOXES,
    }.get(family, Channel.ONBOARDING)


def event_name(channel: Channel, number: int) -> str:
    """The name event ``number`` of ``channel`` is raised under (the onboarding's: its sequence)."""
    if channel is Channel.ONBOARDING:
        return f"{EVENT_PREFIX}{number}"
    return f"{EVENT_PREFIX}{channel.value}-{number}"


@dataclass(frozen=True)
class StreamPosition:
    """Where a writer stands: ``sent`` of its events handed over on ``channel``. A day-2 writer that
    started before channels existed (``channel`` None) numbers on from the stream's last sequence,
    ``sent``, as every writer did then."""

    channel: Channel | None
    sent: int = 0

    @classmethod
    def of(cls, channel: str | None, sent: int) -> StreamPosition:
        """From a job's JSON fields (``webhook_channel``, ``events_sent``)."""
        return cls(Channel(channel) if channel else None, sent)

    @property
    def channel_name(self) -> str | None:
        return self.channel.value if self.channel else None

    def after_one(self) -> StreamPosition:
        return replace(self, sent=self.sent + 1)

    def reported(self) -> dict[str, int]:
        """What the writer shows in its custom status and output (``CHANNEL_EVENTS_REPORTED``)."""
        return {CHANNEL_EVENTS_REPORTED if self.channel else EVENTS_REPORTED: self.sent}


def reported_count(key: str, *shown: object) -> int:
    """The highest count under ``key`` (``StreamPosition.reported``) in a writer run's output and
    custom status, as Durable returns them (decoded or JSON text); 0 when none shows one."""
    counts = (json_object(value).get(key) for value in shown)
    return max((c for c in counts if isinstance(c, int) and not isinstance(c, bool)), default=0)


class SubscriptionState(StrEnum):
    ACTIVE = "active"
    UNSUBSCRIBED = "unsubscribed"
    GIVEN_UP = "given_up"


class DeliveryStatus(StrEnum):
    """The ``callbackDelivery`` of the status view."""

    NONE = "none"  # nobody subscribed
    PENDING = "pending"
    DELIVERED = "delivered"
    GIVEN_UP = "given_up"


def delivery_instance_id(onboarding_id: str) -> str:
    return f"{onboarding_id}:webhook"


def event_id(onboarding_id: str, sequence: int) -> str:
    return f"{onboarding_id}:{sequence}"


def subscription_id(onboarding_id: str, url: str) -> str:
    """The same URL subscribed twice is one subscription (a retried subscribe call changes nothing)."""
    return "sub-" + hashlib.sha256(f"{onboarding_id}\n{url}".encode()).hexdigest()[:32]


def envelope(onboarding_id: str, sequence: int, type_: str, occurred_at: str, data: Any) -> dict[str, Any]:
    """The JSON body a receiver gets (signed as a whole)."""
    return {
        "id": event_id(onboarding_id, sequence),
        "type": type_,
        "sequence": sequence,
        "onboardingId": onboarding_id,
        "occurredAt": occurred_at,
        "data": data,
    }


def retry_delay(failures: int) -> timedelta:
    """Wait after the ``failures``-th failure in a row (1-based): 30 s, 1 min, 2 min ... at most 1 h."""
    return min(FIRST_RETRY * (2 ** min(max(failures - 1, 0), 20)), MAX_RETRY)


@dataclass
class Subscription:
    id: str
    url: str
    next: int  # sequence of the next event to deliver
    state: str = SubscriptionState.ACTIVE.value
    failures: int = 0  # in a row, since ``failing_since``
    failing_since: str | None = None
    retry_at: str | None = None
    gave_up_at: str | None = None
    last_error: str = ""

    def public(self) -> dict[str, Any]:
        """What the status view shows: never the URL (it may carry a signature, e.g. Logic Apps')."""
        return {
            "id": self.id,
            "state": self.state,
            "deliveredThrough": self.next - 1,
            "failures": self.failures,
            "failingSince": self.failing_since,
            "nextAttemptAt": self.retry_at,
            "gaveUpAt": self.gave_up_at,
            "lastError": self.last_error,
        }


@dataclass
class DeliveryState:
    onboarding_id: str
    events: list[dict[str, Any]] = field(default_factory=list)  # envelopes, events[i] has sequence i+1
    subscriptions: list[Subscription] = field(default_factory=list)
    next_control: int = 0
    inbox: list[dict[str, Any]] = field(default_factory=list)  # controls given when (re)starting
    # Events taken from each day-2 writer's channel (by ``Channel`` value); the onboarding's count is
    # its events' own numbering.
    channels: dict[str, int] = field(default_factory=dict)
    # The ids of the last controls applied, so a sender can tell its own from one raised under the
    # same number at the same moment (``webhook_hub.send_control``).
    applied: list[str] = field(default_factory=list)

    # -- JSON (the orchestration's input, continue-as-new input and output) ----------------------
    def to_json(self) -> dict[str, Any]:
        return {
            "onboarding_id": self.onboarding_id,
            "events": self.events,
            "subscriptions": [asdict(s) for s in self.subscriptions],
            "next_control": self.next_control,
            "inbox": self.inbox,
            "channels": self.channels,
            "applied": self.applied,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DeliveryState:
        events = list(data.get("events", []))
        channels = data.get("channels")
        if not isinstance(channels, dict):  # kept before channels existed: count each writer's events
            channels = {}
            for event in events:
                channel = channel_of(str(event.get("type", "")))
                if channel is not Channel.ONBOARDING:
                    channels[channel.value] = channels.get(channel.value, 0) + 1
        return cls(
            onboarding_id=data["onboarding_id"],
            events=events,
            subscriptions=[Subscription(**s) for s in data.get("subscriptions", [])],
            next_control=int(data.get("next_control", 0)),
            inbox=list(data.get("inbox", [])),
            channels={str(k): int(v) for k, v in channels.items()},
            applied=[str(a) for a in data.get("applied") or []],
        )

    # -- incoming --------------------------------------------------------------------------------
    @property
    def next_event(self) -> int:
        return len(self.events) + 1

    @property
    def completed_sequence(self) -> int | None:
        """The sequence of the outcome event; events after it (drift reports) may follow."""
        return next(
            (i + 1 for i, e in enumerate(self.events) if e["type"] == EventType.COMPLETED.value), None
        )

    @property
    def final(self) -> bool:
        return self.completed_sequence is not None

    def add_event(self, event: dict[str, Any]) -> None:
        """An event numbered in the stream (the onboarding's, or a writer's from before channels)."""
        self.take(Channel.ONBOARDING, int(event.get("sequence") or 0), event)

    def taken(self, channel: Channel) -> int:
        """How many events of a day-2 writer's channel the delivery holds."""
        return self.channels.get(channel.value, 0)

    def next_number(self, channel: Channel) -> int:
        """The number the delivery takes next on ``channel`` (the onboarding's: the stream's sequence)."""
        return self.next_event if channel is Channel.ONBOARDING else self.taken(channel) + 1

    def take(self, channel: Channel, number: int, event: dict[str, Any]) -> bool:
        """Take event ``number`` of ``channel`` if it is the next there: the onboarding's as numbered,
        a day-2 writer's stamped with the stream's next sequence and id. A lower number is a duplicate
        (a re-run activity), a higher one follows an event that never arrived. Answers whether it
        was taken."""
        if number != self.next_number(channel):
            return False
        if channel is Channel.ONBOARDING:
            if event.get("sequence") != number:
                return False
        else:
            self.channels[channel.value] = number
            event = {
                **event,
                "id": event_id(self.onboarding_id, self.next_event),
                "sequence": self.next_event,
            }
        self.events.append(event)
        return True

    def subscribe(self, url: str, sub_id: str, from_sequence: int | None = None) -> None:
        # A late subscriber (a Logic Apps HTTP Webhook action subscribing after the end) still gets
        # the outcome; otherwise it starts with the next event, or where it asked.
        start = self.completed_sequence or self.next_event
        if from_sequence is not None:
            start = max(1, min(from_sequence, start))
        for sub in self.subscriptions:
            if sub.id == sub_id:
                if sub.state != SubscriptionState.ACTIVE.value:
                    sub.state, sub.next = SubscriptionState.ACTIVE.value, start
                    self._reset(sub)
                return
        self.subscriptions.append(Subscription(id=sub_id, url=url, next=start))

    def unsubscribe(self, sub_id: str) -> None:
        for sub in self.subscriptions:
            if sub.id == sub_id:
                sub.state = SubscriptionState.UNSUBSCRIBED.value
                sub.retry_at = None

    def redeliver(self, from_sequence: int, sub_id: str | None = None) -> None:
        for sub in self.subscriptions:
            if sub.state == SubscriptionState.UNSUBSCRIBED.value or (sub_id and sub.id != sub_id):
                continue
            sub.state, sub.next = SubscriptionState.ACTIVE.value, max(1, from_sequence)
            sub.gave_up_at = None
            self._reset(sub)

    def apply_control(self, control: dict[str, Any], *, raised: bool = True) -> None:
        """Apply a subscribe, unsubscribe or redeliver. A raised control moves the number on; one given
        in the input (a start or restart) does not, so senders that read the number before the new
        execution published it still use the number it waits for."""
        if raised:
            self.next_control += 1
        if control.get("controlId"):
            self.applied = [*self.applied, str(control["controlId"])][-APPLIED_KEPT:]
        kind = control.get("op")
        if kind == "subscribe":
            self.subscribe(control["url"], control["subscriptionId"], control.get("fromSequence"))
        elif kind == "unsubscribe":
            self.unsubscribe(control["subscriptionId"])
        elif kind == "redeliver":
            self.redeliver(int(control.get("fromSequence") or 1), control.get("subscriptionId"))

    # -- delivering ------------------------------------------------------------------------------
    def due(self, now: datetime) -> list[Subscription]:
        return [
            s
            for s in self.subscriptions
            if s.state == SubscriptionState.ACTIVE.value
            and s.next <= len(self.events)
            and (s.retry_at is None or datetime.fromisoformat(s.retry_at) <= now)
        ]

    def event_for(self, sub: Subscription) -> dict[str, Any]:
        return self.events[sub.next - 1]

    def delivered(self, sub: Subscription) -> None:
        sub.next += 1
        self._reset(sub)

    def failed(self, sub: Subscription, error: str, now: datetime) -> None:
        sub.failures += 1
        sub.last_error = error[:300]
        if sub.failing_since is None:
            sub.failing_since = now.isoformat()
        if now - datetime.fromisoformat(sub.failing_since) >= GIVE_UP_AFTER:
            sub.state, sub.gave_up_at, sub.retry_at = SubscriptionState.GIVEN_UP.value, now.isoformat(), None
        else:
            sub.retry_at = (now + retry_delay(sub.failures)).isoformat()

    def next_wake(self) -> datetime | None:
        """When the earliest waiting retry is due (None: nothing to retry, wait for news only)."""
        times = [
            datetime.fromisoformat(s.retry_at)
            for s in self.subscriptions
            if s.state == SubscriptionState.ACTIVE.value and s.retry_at and s.next <= len(self.events)
        ]
        return min(times) if times else None

    def done(self) -> bool:
        """The outcome is known and no active subscription has anything left to deliver."""
        return self.final and all(
            s.state != SubscriptionState.ACTIVE.value or s.next > len(self.events) for s in self.subscriptions
        )

    def summary(self) -> dict[str, Any]:
        """The custom status: what the status view shows as ``callbackDelivery`` (no URL)."""
        return {
            "state": self.status().value,
            "events": len(self.events),
            "final": self.final,
            "nextControl": self.next_control,
            "subscriptions": [s.public() for s in self.subscriptions],
            "channels": dict(self.channels),
            "applied": list(self.applied),
        }

    def status(self) -> DeliveryStatus:
        live = [s for s in self.subscriptions if s.state != SubscriptionState.UNSUBSCRIBED.value]
        if not live:
            return DeliveryStatus.NONE
        if any(s.state == SubscriptionState.GIVEN_UP.value for s in live):
            return DeliveryStatus.GIVEN_UP
        if any(s.next <= len(self.events) for s in live) or not self.final:
            return DeliveryStatus.PENDING
        return DeliveryStatus.DELIVERED

    @staticmethod
    def _reset(sub: Subscription) -> None:
        sub.failures, sub.failing_since, sub.retry_at, sub.last_error = 0, None, None, ""
