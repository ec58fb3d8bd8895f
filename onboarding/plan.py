"""Pure decisions the orchestrators make. No I/O and no clock: times are passed in, so the
orchestrators stay deterministic and these rules are unit-tested on their own."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta

from onboarding.domain import (
    ConsentMode,
    Decision,
    DecisionEvent,
    MailboxState,
    Outcome,
)

# The real host splits longer timers into a chain and cannot cancel them cleanly
# (azure-functions-durable-python#573): no single timer is longer than this.
MAX_TIMER = timedelta(days=6)


def next_wake(now: datetime, deadline: datetime, reminder_every: timedelta) -> datetime:
    """When to wake next while waiting for the admin: the next reminder or the deadline."""
    return min(now + reminder_every, deadline, now + MAX_TIMER)


def backoff(attempt: int, initial_seconds: int, max_seconds: int) -> timedelta:
    """Exponential backoff for durable polling: initial, 2x, 4x ... capped."""
    return timedelta(seconds=min(initial_seconds * (2 ** min(attempt, 30)), max_seconds))


def expected_decisions(mode: ConsentMode) -> frozenset[Decision]:
    if mode is ConsentMode.CONSENT:
        return frozenset({Decision.CONSENTED, Decision.DECLINED})
    return frozenset({Decision.APPROVED, Decision.REJECTED})


def accepts(event: DecisionEvent, *, nonce: str, mode: ConsentMode, digest: str) -> bool:
    """Whether a decision answers the current wait: right link generation, right kind for the mode,
    made by a signed-in admin on exactly this mailbox list (``digest``)."""
    return (
        event.nonce == nonce
        and event.decision in expected_decisions(mode)
        and event.mailbox_digest == digest
        and bool(event.approver)
    )


def is_go_ahead(decision: Decision) -> bool:
    return decision in (Decision.CONSENTED, Decision.APPROVED)


def groups(count: int, fanout: int) -> list[tuple[int, int]]:
    """Split ``count`` batches into contiguous ``[start, stop)`` groups for a tree of orchestrations
    in which none starts more than ``fanout`` children: ``ceil(count / fanout)`` groups while that is
    at most ``fanout`` (two levels), else ``fanout`` groups that split again. Sizes differ by one at
    most. One group per batch (no grouping) when ``count <= fanout``."""
    if fanout < 2:
        raise ValueError("fanout must be at least 2")
    if count <= fanout:
        return [(i, i + 1) for i in range(count)]
    n = min(fanout, -(-count // fanout))
    size, extra = divmod(count, n)
    spans, start = [], 0
    for i in range(n):
        stop = start + size + (1 if i < extra else 0)
        spans.append((start, stop))
        start = stop
    return spans


def outcome_for(counts: Mapping[str, int]) -> Outcome:
    """All mailboxes verified is a success; anything else leaves a working app with work for an admin.

    Takes how many mailboxes ended in each state (``MailboxState`` values), which is what the
    orchestrator keeps: never one object per mailbox, which every replay would rebuild."""
    verified = counts.get(MailboxState.VERIFIED.value, 0)
    if verified and verified == sum(counts.values()):
        return Outcome.SUCCEEDED
    return Outcome.PARTIAL


def count_states(states: Iterable[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for state in states:
        counts[state] = counts.get(state, 0) + 1
    return counts


def merge_counts(parts: Iterable[Mapping[str, int]]) -> dict[str, int]:
    merged: dict[str, int] = {}
    for part in parts:
        for state, n in part.items():
            merged[state] = merged.get(state, 0) + n
    return merged
